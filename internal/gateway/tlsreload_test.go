package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/testcert"
)

// startGatewayLogged is startGatewayConfig with the gateway's log lines
// (info and up) in logs.
func startGatewayLogged(t *testing.T, cfg *configs.Config, logs *syncBuffer) *testGateway {
	t.Helper()
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), gateway.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ln.Addr().String()
	tg := &testGateway{g: g, base: "http://" + addr, ws: "ws://" + addr, token: cfg.Auth.PublishToken}
	if cfg.TLSEnabled() {
		tg.base, tg.ws = "https://"+addr, "wss://"+addr
	}
	return tg
}

// servedSerial is the serial of the certificate a new TLS handshake with
// addr gets, trusting pool.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// installPair puts a pair's files at certFile and keyFile as a renewal
// tool does (a new file renamed over the old one).
func installPair(t *testing.T, fromCert, fromKey, certFile, keyFile string) {
	t.Helper()
	for _, f := range [][2]string{{fromCert, certFile}, {fromKey, keyFile}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		tmp := f[1] + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCertificateSwap: the certificate files replaced on disk are served
// without a restart (a new TLS client sees the new serial) while a wss
// viewer keeps playing; a broken pair written over them (a key that is not
// the certificate's, then an expired certificate) is refused with a log
// line naming the files and the reason, and the last good one is still
// served.
func TestCertificateSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, o testcert.Options) *testcert.Cert {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		c, err := testcert.WriteWith(d, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := mk("first", testcert.Options{Serial: 1001}), mk("second", testcert.Options{Serial: 2002})
	expired := mk("expired", testcert.Options{Serial: 3003, Expired: true})
	pool := x509.NewCertPool()
	for _, c := range []*testcert.Cert{first, second, expired} {
		ca, err := os.ReadFile(c.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(ca)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	installPair(t, first.CertFile, first.KeyFile, certFile, keyFile)

	var logs syncBuffer
	cfg := loopbackConfig()
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.TLS.ReloadInterval = 100 * time.Millisecond
	gw := startGatewayLogged(t, cfg, &logs)
	gw.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	addr := strings.TrimPrefix(gw.base, "https://")
	if got := servedSerial(t, addr, pool); got != "1001" {
		t.Fatalf("serial %s served at start, want 1001", got)
	}

	video, audio := testMedia(t)
	publish(t, gw, "swap", video, audio)
	v := watch(t, gw, "swap")
	v.expectInit(10 * time.Second)
	if segs, stop := v.collect(500 * time.Millisecond); len(segs) == 0 || stop != nil {
		t.Fatalf("viewer before the swap: %d segments, %+v", len(segs), stop)
	}

	installPair(t, second.CertFile, second.KeyFile, certFile, keyFile)
	waitFor(t, "the new serial", 5*time.Second, func() bool { return servedSerial(t, addr, pool) == "2002" })
	if segs, stop := v.collect(time.Second); len(segs) < 10 || stop != nil {
		t.Fatalf("viewer across the swap: %d segments in 1 s, %+v", len(segs), stop)
	}

	for _, bad := range []struct {
		name, cert, key, reason string
	}{
		{"mismatched", first.CertFile, second.KeyFile, "private key does not match public key"},
		{"expired", expired.CertFile, expired.KeyFile, "certificate serial 3003 expired at"},
	} {
		before := strings.Count(logs.String(), "new certificate refused")
		installPair(t, bad.cert, bad.key, certFile, keyFile)
		waitFor(t, bad.name+": the refusal's log line", 5*time.Second, func() bool {
			return strings.Count(logs.String(), "new certificate refused") > before
		})
		var line string
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "new certificate refused") {
				line = l
			}
		}
		for _, want := range []string{"tls_cert=" + certFile, "tls_key=" + keyFile, bad.reason, "serving_serial=2002"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: refusal line lacks %q: %s", bad.name, want, line)
			}
		}
		if got := servedSerial(t, addr, pool); got != "2002" {
			t.Fatalf("%s pair on disk: serial %s served, want the old 2002", bad.name, got)
		}
	}
	// A good pair again is taken.
	installPair(t, first.CertFile, first.KeyFile, certFile, keyFile)
	waitFor(t, "the first serial again", 5*time.Second, func() bool { return servedSerial(t, addr, pool) == "1001" })
	if segs, stop := v.collect(500 * time.Millisecond); len(segs) == 0 || stop != nil {
		t.Fatalf("viewer after the swaps: %d segments, %+v", len(segs), stop)
	}

	// A config reload (SIGHUP) re-reads the pair at once, before the poll
	// would; one naming a file that does not load is refused whole.
	installPair(t, second.CertFile, second.KeyFile, certFile, keyFile)
	changed, err := gw.g.Reload(cfg)
	if err != nil || !slices.Contains(changed, "tls_cert") {
		t.Fatalf("reload: %v, changed %v", err, changed)
	}
	if got := servedSerial(t, addr, pool); got != "2002" {
		t.Fatalf("after a reload: serial %s, want 2002", got)
	}
	missing := *cfg
	missing.TLSCert = filepath.Join(dir, "missing.crt")
	missing.Auth.ViewToken = "a-token-that-must-not-apply"
	if _, err := gw.g.Reload(&missing); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("reload naming a missing certificate: %v", err)
	}
	if got := servedSerial(t, addr, pool); got != "2002" {
		t.Fatalf("after a refused reload: serial %s, want 2002", got)
	}
	if _, code := dialViewer(t, gw, "swap", ""); code != http.StatusSwitchingProtocols {
		t.Fatalf("a refused reload's view token applied: a viewer without one gets %d", code)
	}
}
