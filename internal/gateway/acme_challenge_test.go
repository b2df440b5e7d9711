package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/gateway"
)

// TestACMEChallenges: pebble validates the gateway's challenges for real
// (no PEBBLE_VA_ALWAYS_VALID): it resolves gw.mseway.test through a DNS
// server of the test (pebble-challtestsrv, every A query answered
// 127.0.0.1) and connects to the gateway's own listeners, the main one for
// TLS-ALPN-01 and the redirect one (tls.redirect_http) for HTTP-01. Which
// challenges the gateway offers cannot be set by config: TLS-ALPN-01
// always, HTTP-01 when there is a redirect listener. So the TLS-ALPN-01
// case runs without a redirect listener, and the HTTP-01 case points
// pebble's TLS-ALPN port at a closed port: whichever the ACME client tries
// first, only HTTP-01 can succeed.
func TestACMEChallenges(t *testing.T) {
	const domain = "gw.mseway.test"
	bin := installPebble(t, "pebble", "pebble-challtestsrv")
	dns := startChallTestSrv(t, bin, domain)

	t.Run("tls-alpn-01", func(t *testing.T) {
		dns.clearHistory(t, domain)
		main := listenRecording(t)
		ca := startPebbleWith(t, bin, pebbleOptions{dnsServer: dns.addr, tlsPort: portOf(t, main), httpPort: freePortNum(t)})
		checkCertmagicStops(t)
		logs := serveACMEGateway(t, ca, domain, main, nil)

		cs := waitForACMECert(t, main.Addr().String(), domain, ca, logs)
		checkIssued(t, cs, domain, ca)
		checkRealValidation(t, ca, dns, domain)
		if strings.Contains(ca.log.String(), "validate w/ HTTP") {
			t.Errorf("pebble tried HTTP-01 though the gateway has no redirect listener:\n%s", ca.log.String())
		}
		// pebble's validation reached the main listener: a ClientHello for
		// the name offering only the ACME protocol.
		if !main.saw(func(first []byte) bool {
			return bytes.Contains(first, []byte(domain)) && bytes.Contains(first, []byte("acme-tls/1"))
		}) {
			t.Errorf("no TLS-ALPN-01 ClientHello (%s, acme-tls/1) reached the main listener", domain)
		}
	})

	t.Run("http-01", func(t *testing.T) {
		dns.clearHistory(t, domain)
		main, redirect := listenRecording(t), listenRecording(t)
		httpPort := portOf(t, redirect)
		ca := startPebbleWith(t, bin, pebbleOptions{dnsServer: dns.addr, httpPort: httpPort, tlsPort: freePortNum(t)})
		checkCertmagicStops(t)
		logs := serveACMEGateway(t, ca, domain, main, redirect)

		cs := waitForACMECert(t, main.Addr().String(), domain, ca, logs)
		checkIssued(t, cs, domain, ca)
		checkRealValidation(t, ca, dns, domain)
		want := fmt.Sprintf("Attempting to validate w/ HTTP: http://%s/.well-known/acme-challenge/", net.JoinHostPort(domain, strconv.Itoa(httpPort)))
		if !strings.Contains(ca.log.String(), want) {
			t.Errorf("pebble's log has no %q:\n%s", want, ca.log.String())
		}
		if !redirect.saw(func(first []byte) bool {
			return bytes.HasPrefix(first, []byte("GET /.well-known/acme-challenge/")) && bytes.Contains(first, []byte("Host: "+domain))
		}) {
			t.Errorf("no HTTP-01 request for %s reached the redirect listener", domain)
		}
		// The redirect listener still redirects everything else.
		c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get("http://" + redirect.Addr().String() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("redirect listener, /x: %d, want 308", resp.StatusCode)
		}
	})
}

// challTestSrv is a running pebble-challtestsrv serving DNS only.
type challTestSrv struct {
	addr string // its DNS server, host:port
	mgmt string // its management API, http://host:port
}

// startChallTestSrv runs the pebble-challtestsrv of bin (installPebble) on
// loopback as a DNS server answering every A query with 127.0.0.1 and no
// AAAA query, its challenge servers off, until the end of the test; it
// checks that name resolves to 127.0.0.1 through it.
func startChallTestSrv(t *testing.T, bin, name string) *challTestSrv {
	t.Helper()
	s := &challTestSrv{addr: freeAddr(t), mgmt: "http://" + freeAddr(t)}
	cmd := exec.Command(filepath.Join(bin, "pebble-challtestsrv"),
		"-dnsserver", s.addr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", strings.TrimPrefix(s.mgmt, "http://"))
	out := &syncBuffer{}
	startForTest(t, "pebble-challtestsrv", cmd, out)
	// pebble asks over TCP; so does this resolver.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", s.addr)
	}}
	var got []string
	waitFor(t, "pebble-challtestsrv's DNS (output:\n"+out.String()+")", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(ctx, name)
		got = addrs
		return err == nil
	})
	if !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Fatalf("%s resolves to %v through pebble-challtestsrv, want [127.0.0.1]", name, got)
	}
	return s
}

// post posts body as JSON to the management API's path.
func (s *challTestSrv) post(path string, body any) (*http.Response, error) {
	data, _ := json.Marshal(body)
	return (&http.Client{Timeout: 5 * time.Second}).Post(s.mgmt+path, "application/json", bytes.NewReader(data))
}

// clearHistory forgets the DNS questions asked about host so far.
func (s *challTestSrv) clearHistory(t *testing.T, host string) {
	t.Helper()
	waitFor(t, "pebble-challtestsrv's management API", 20*time.Second, func() bool {
		resp, err := s.post("/clear-request-history", map[string]string{"host": host, "type": "dns"})
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// dnsQuestions counts the DNS questions asked about host since clearHistory.
func (s *challTestSrv) dnsQuestions(t *testing.T, host string) int {
	t.Helper()
	resp, err := s.post("/dns-request-history", map[string]string{"host": host})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&events); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("dns-request-history: %d, %v", resp.StatusCode, err)
	}
	return len(events)
}

// recordingListener keeps the first bytes each connection it accepts sends
// (a TLS ClientHello, an HTTP request's head).
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordingConn
}

const recordedBytes = 4 << 10

type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
}

func listenRecording(t *testing.T) *recordingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &recordingListener{Listener: ln}
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if room := recordedBytes - len(c.first); room > 0 {
		c.first = append(c.first, p[:min(n, room)]...)
	}
	c.mu.Unlock()
	return n, err
}

// saw reports whether the first bytes of a connection accepted so far match.
func (l *recordingListener) saw(match func(first []byte) bool) bool {
	l.mu.Lock()
	conns := slices.Clone(l.conns)
	l.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		ok := match(c.first)
		c.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

func portOf(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveACMEGateway starts a gateway with automatic certificates for domain
// from ca, serving on main and, when redirect is not nil, its redirect
// listener (and HTTP-01) on redirect, until the end of the test. It
// returns the gateway's log.
func serveACMEGateway(t *testing.T, ca *pebbleCA, domain string, main, redirect net.Listener) *syncBuffer {
	t.Helper()
	cfg := loopbackConfig()
	cfg.Listen = main.Addr().String()
	cfg.TLS.ACMEDomains = []string{domain}
	cfg.TLS.ACMECA = ca.dirURL
	cfg.TLS.ACMECARoot = ca.httpsRoot
	cfg.TLS.ACMEEmail = "ops@mseway.test"
	cfg.TLS.ACMEStorage = t.TempDir()
	if redirect != nil {
		cfg.TLS.RedirectHTTP = redirect.Addr().String()
	}
	logs := new(syncBuffer)
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), gateway.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	served := make(chan error, 2)
	n := 1
	go func() { served <- g.Serve(main) }()
	if redirect != nil {
		n++
		go func() { served <- g.ServeRedirect(redirect) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		for range n {
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		if t.Failed() || os.Getenv("ACME_TEST_LOG") != "" {
			t.Logf("gateway:\n%s", logs.String())
		}
	})
	return logs
}

// waitForACMECert waits for the gateway at addr to serve a certificate for
// domain that verifies with ca's issuing root, and returns the connection's
// state.
func waitForACMECert(t *testing.T, addr, domain string, ca *pebbleCA, logs *syncBuffer) tls.ConnectionState {
	t.Helper()
	client := &tls.Config{RootCAs: ca.issued, ServerName: domain, MinVersion: tls.VersionTLS12}
	var cs tls.ConnectionState
	waitFor(t, "a certificate from pebble", 90*time.Second, func() bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, client)
		if err != nil {
			return false
		}
		defer c.Close()
		cs = c.ConnectionState()
		return true
	})
	if !strings.Contains(logs.String(), "certificate obtained") {
		t.Errorf("no certificate obtained line in the gateway's log")
	}
	return cs
}

// checkIssued checks that the certificate of cs is for domain and chains
// to the issuing root of this pebble (each pebble makes its own).
func checkIssued(t *testing.T, cs tls.ConnectionState, domain string, ca *pebbleCA) {
	t.Helper()
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.DNSNames, domain) {
		t.Errorf("served certificate names %v, want %s", leaf.DNSNames, domain)
	}
	if len(cs.VerifiedChains) == 0 {
		t.Fatal("no verified chain")
	}
	chain := cs.VerifiedChains[0]
	if root := chain[len(chain)-1]; !root.Equal(ca.root) {
		t.Errorf("the chain ends at %q, want pebble's root %q", root.Subject, ca.root.Subject)
	}
	if len(chain) < 3 {
		t.Errorf("chain of %d certificates, want leaf, pebble's intermediate and root", len(chain))
	}
}

// checkRealValidation checks that pebble validated for real: it asked the
// DNS server of the test for domain, validated an authorization, and did
// not skip validation.
func checkRealValidation(t *testing.T, ca *pebbleCA, dns *challTestSrv, domain string) {
	t.Helper()
	log := ca.log.String()
	if strings.Contains(log, "Skipping real validation") || strings.Contains(log, "VA always returns valid") {
		t.Errorf("pebble did not validate for real:\n%s", log)
	}
	if !strings.Contains(log, "Using custom DNS resolver for ACME challenges: "+dns.addr) {
		t.Errorf("pebble does not resolve through %s:\n%s", dns.addr, log)
	}
	if !strings.Contains(log, "set VALID by completed challenge") {
		t.Errorf("no authorization set VALID by a challenge in pebble's log:\n%s", log)
	}
	if n := dns.dnsQuestions(t, domain); n == 0 {
		t.Errorf("pebble never asked the DNS server for %s", domain)
	}
}
