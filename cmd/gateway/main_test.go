package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("webrtc:\n  udp_prot: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-listen", "nonsense"}, 2, "-listen"},
		{[]string{"-config", bad}, 1, "bad.yaml"},
		{[]string{"-config", bad}, 1, "udp_prot"},
		{[]string{"-config", "/does/not/exist.yaml"}, 1, "no such file"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.has) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, errOut.String(), tc.code, tc.has)
		}
		if strings.Contains(errOut.String(), "goroutine ") {
			t.Errorf("%v: stack trace printed", tc.args)
		}
	}
}

func TestPrintConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-print-config"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "udp_port: 8189") {
		t.Fatalf("printed config: %s", out.String())
	}
}
