package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childArgsEnv, when set, makes TestSIGHUPChild run the gateway with these
// arguments (one per line) in this process: the child of TestSIGHUPReload.
const childArgsEnv = "MSEWAY_TEST_GATEWAY_ARGS"

func TestSIGHUPChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		t.Skip("the child of TestSIGHUPReload")
	}
	os.Exit(run(strings.Split(args, "\n"), os.Stdout, os.Stderr))
}

// viewAllowed is the status of a viewer request that passed access control.
const viewAllowed = http.StatusBadRequest

// TestSIGHUPReload: a gateway process reloads its config file on SIGHUP: a
// new view token applies (the old one is refused after it); a config that
// does not validate is logged with the file and the key, and the token in
// effect still works; the process lives on and exits 0 on SIGTERM.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gateway.yaml")
	write := func(viewToken, extra string) {
		t.Helper()
		text := "listen: 127.0.0.1:0\nwebrtc:\n  udp_port: 0\n  udp_address: 127.0.0.1\nsources: {}\n" +
			"auth:\n  publish_token: publish-0123456789abcdef\n  view_token: " + viewToken + "\n" + extra
		if err := os.WriteFile(cfgFile+".new", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgFile+".new", cfgFile); err != nil {
			t.Fatal(err)
		}
	}
	write("view-old-0123456789", "")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGHUPChild$")
	cmd.Env = append(os.Environ(), childArgsEnv+"=-config\n"+cfgFile)
	base, stderr := startListening(t, cmd, 30*time.Second)
	status := func(token string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The viewer socket's door: its token is decided before the
		// upgrade (401/403), and a plain GET that passes gets 400.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ws/watch/demo", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /ws/watch/demo: %v\n%s", err, stderr.String())
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitStatus := func(what, token string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := status(token)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d, want %d\n%s", what, got, want, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus("old token at start", "view-old-0123456789", viewAllowed)

	write("view-new-0123456789", "")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitStatus("new token after SIGHUP", "view-new-0123456789", viewAllowed)
	if code := status("view-old-0123456789"); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Fatalf("old token after SIGHUP: %d, want 401 or 403", code)
	}

	write("view-bad-0123456789", "limits:\n  max_viewrs: 3\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "config reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for l := range strings.Lines(stderr.String()) {
		if strings.Contains(l, "config reload refused") {
			line = l
		}
	}
	for _, want := range []string{cfgFile, "max_viewrs"} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal line lacks %q: %s", want, line)
		}
	}
	if code := status("view-new-0123456789"); code != viewAllowed {
		t.Fatalf("the token in effect after a refused reload: %d", code)
	}
	if code := status("view-bad-0123456789"); code == viewAllowed {
		t.Fatal("the refused config's token works")
	}
	if strings.Contains(stderr.String(), "view-new-0123456789") || strings.Contains(stderr.String(), "view-old-0123456789") {
		t.Error("a token reached the log")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
