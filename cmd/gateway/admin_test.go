package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminPortInUse: an admin.listen that cannot be bound stops the start
// with the key, the address and the reason.
func TestAdminPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := filepath.Join(t.TempDir(), "admin.yaml")
	yaml := "listen: 127.0.0.1:0\nadmin:\n  listen: " + busy.Addr().String() + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"-config", cfg}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "admin.listen "+busy.Addr().String()) || !strings.Contains(errOut.String(), "address already in use") {
		t.Fatalf("exit %d, stderr %q; want 1 naming admin.listen, the address and the reason", code, errOut.String())
	}
}
