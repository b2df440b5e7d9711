package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/testkit/testcert"
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

// TestCheckConfig: -check-config FILE runs the checks of a start without
// starting anything: ok and exit 0 for a good file, the file, the key and
// the reason and exit 1 for a bad one.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cert, err := testcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	def := write("default.yaml", string(configs.DefaultYAML()))
	// A port in use does not matter: nothing is bound.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	type checkCase struct {
		name, yaml string
		code       int
		err        string // what stderr holds when code is 1
	}
	cases := []checkCase{
		{"default", "", 0, ""},
		{"busy-port", "listen: " + busy.Addr().String() + "\nlog_format: json\n", 0, ""},
		{"tls", "tls_cert: " + cert.CertFile + "\ntls_key: " + cert.KeyFile + "\n", 0, ""},
		{"unknown-key", "webrtc:\n  udp_prot: 1\n", 1, "unknown-key.yaml: yaml: unmarshal errors:   line 2: field udp_prot not found"},
		{"bad-value", "log_format: xml\n", 1, `bad-value.yaml: log_format: "xml" is not text or json`},
		{"tls-missing", "tls_cert: " + filepath.Join(dir, "nope.pem") + "\ntls_key: " + cert.KeyFile + "\n", 1, "nope.pem: no such file"},
		{"tls-mismatch", "tls_cert: " + cert.CAFile + "\ntls_key: " + cert.KeyFile + "\n", 1, "tls_cert " + cert.CAFile},
		{"nkey", "cluster:\n  nats_urls: [nats://127.0.0.1:4222]\n  nkey_file: " + write("seed.nk", "not a seed\n") + "\n", 1, "cluster.nkey_file"},
		{"creds", "cluster:\n  nats_urls: [nats://127.0.0.1:4222]\n  creds_file: " + filepath.Join(dir, "none.creds") + "\n", 1, "cluster.creds_file"},
		{"cluster-ca", "cluster:\n  nats_urls: [tls://127.0.0.1:4222]\n  tls_ca: " + cert.KeyFile + "\n", 1, "cluster.tls_ca: " + cert.KeyFile + " holds no PEM certificate"},
	}
	noEncoder := errors.Is((&devices.Config{Video: devices.None}).CheckBuild(), devices.ErrNoEncoder)
	if !noEncoder { // without cgo, sources are skipped before their devices are looked up
		cases = append(cases, checkCase{"source-device", "sources:\n  cam:\n    video: no-such-camera\n    audio: none\n", 1, "sources.cam"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := def
			if tc.yaml != "" {
				path = write(tc.name+".yaml", tc.yaml)
			}
			var out, errOut bytes.Buffer
			code := run([]string{"-check-config", path}, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, out.String(), errOut.String())
			}
			if tc.code == 0 {
				if strings.TrimSpace(out.String()) != "ok" {
					t.Fatalf("stdout %q, want ok", out.String())
				}
				return
			}
			if out.Len() != 0 || !strings.Contains(errOut.String(), tc.err) {
				t.Fatalf("stdout %q, stderr %q; want nothing on stdout and %q on stderr", out.String(), errOut.String(), tc.err)
			}
		})
	}
	// A config that is fine for a start but names a source this build
	// cannot encode: ok, with the warning a start logs.
	if noEncoder {
		var out, errOut bytes.Buffer
		if code := run([]string{"-check-config", def}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "warning: sources.testpattern: skipped at start") {
			t.Fatalf("exit %d, stderr %q; want 0 and a warning about the test pattern source", code, errOut.String())
		}
	}
}

// TestVersion: -version prints the build; formatBuildInfo names every
// field of a build that records them.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"module: github.com/mseway/mseway", "vcs.revision: ", "go: " + runtime.Version(), "cgo: ", "capture encoders: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-version output lacks %q:\n%s", want, out.String())
		}
	}
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/mseway/mseway", Version: "v0.0.0-20260101000000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-tags", Value: "x264,screen"}, {Key: "CGO_ENABLED", Value: "1"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-01-01T00:00:00Z"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	got := formatBuildInfo(bi, "h264 x264, opus, vp9 none")
	want := `gateway v0.0.0-20260101000000-0123456789ab+dirty
module: github.com/mseway/mseway v0.0.0-20260101000000-0123456789ab+dirty
vcs.revision: 0123456789abcdef
vcs.time: 2026-01-01T00:00:00Z
vcs.modified: true
go: go1.26.8 linux/arm64
cgo: true
tags: x264,screen
capture encoders: h264 x264, opus, vp9 none
`
	if got != want {
		t.Fatalf("formatBuildInfo:\n%s\nwant:\n%s", got, want)
	}
}

// startListening starts cmd (a gateway serving), waits for its "listening
// on" line and returns its base URL and its captured stderr. The process is
// killed at the end of the test if it still runs.
func startListening(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (string, *syncBuffer) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select { // the first one; keep draining stdout after it
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a, stderr
	case <-time.After(timeout):
		t.Fatalf("not listening:\n%s", stderr.String())
		return "", nil
	}
}
