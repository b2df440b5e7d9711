package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const pebbleVersion = "v2.10.3"

// installPebble builds the commands of pebble (Let's Encrypt's test CA)
// named (pebble, pebble-challtestsrv) at pebbleVersion into a temporary
// directory and returns it. It skips the test when pebble cannot be built
// here.
func installPebble(t *testing.T, cmds ...string) (bin string) {
	t.Helper()
	bin = t.TempDir()
	args := []string{"install"}
	for _, c := range cmds {
		args = append(args, "github.com/letsencrypt/pebble/v2/cmd/"+c+"@"+pebbleVersion)
	}
	install := exec.Command("go", args...)
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		t.Skipf("pebble %s cannot be built here: %v\n%s", pebbleVersion, err, out)
	}
	return bin
}

// pebbleOptions are how startPebbleWith runs pebble. The zero value is
// startPebble's: PEBBLE_VA_ALWAYS_VALID=1, every challenge is valid without
// a request.
type pebbleOptions struct {
	// dnsServer (host:port) turns real validation on: pebble's VA resolves
	// the names it validates there and connects to them on httpPort
	// (HTTP-01) and tlsPort (TLS-ALPN-01).
	dnsServer         string
	httpPort, tlsPort int
}

// pebbleCA is a running pebble.
type pebbleCA struct {
	dirURL    string            // the ACME directory
	httpsRoot string            // the file of the root of pebble's own https (for the ACME client)
	issued    *x509.CertPool    // the root it issues under (for clients of the certificates it issues)
	root      *x509.Certificate // that root
	log       *syncBuffer       // its output
}

// startPebble builds and runs pebble on loopback with
// PEBBLE_VA_ALWAYS_VALID=1 (it issues without reaching the names asked
// for). It returns the directory URL, the file of the root of pebble's own
// https (for the ACME client) and a pool of the roots it issues under (for
// clients of the certificates it issues). It skips the test when pebble
// cannot be built here.
func startPebble(t *testing.T) (dirURL, httpsRoot string, issued *x509.CertPool) {
	t.Helper()
	ca := startPebbleWith(t, installPebble(t, "pebble"), pebbleOptions{})
	return ca.dirURL, ca.httpsRoot, ca.issued
}

// startPebbleWith runs the pebble of bin (installPebble) on loopback as
// opts says, until the end of the test.
func startPebbleWith(t *testing.T, bin string, opts pebbleOptions) *pebbleCA {
	t.Helper()
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(strings.TrimSpace(string(modcache)), "github.com", "letsencrypt", "pebble", "v2@"+pebbleVersion)
	ca := &pebbleCA{httpsRoot: filepath.Join(src, "test", "certs", "pebble.minica.pem"), log: new(syncBuffer)}
	httpPort, tlsPort := 5002, 5001
	if opts.httpPort != 0 {
		httpPort = opts.httpPort
	}
	if opts.tlsPort != 0 {
		tlsPort = opts.tlsPort
	}
	listen, mgmt := freeAddr(t), freeAddr(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": filepath.Join(src, "test", "certs", "localhost", "cert.pem"),
		"privateKey":  filepath.Join(src, "test", "certs", "localhost", "key.pem"),
		"httpPort":    httpPort, "tlsPort": tlsPort, "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	data, _ := json.Marshal(conf)
	if err := os.WriteFile(confFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", confFile}
	env := append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	if opts.dnsServer != "" {
		args = append(args, "-dnsserver", opts.dnsServer)
	} else {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	cmd := exec.Command(filepath.Join(bin, "pebble"), args...)
	cmd.Env = env
	startForTest(t, "pebble", cmd, ca.log)
	httpsRoot, err := os.ReadFile(ca.httpsRoot)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(httpsRoot)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(u string) ([]byte, error) {
		resp, err := client.Get(u)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, &url404{resp.Status}
		}
		return io.ReadAll(resp.Body)
	}
	ca.dirURL = "https://" + listen + "/dir"
	waitFor(t, "pebble's directory", 20*time.Second, func() bool { _, err := get(ca.dirURL); return err == nil })
	root, err := get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(root)
	if block == nil {
		t.Fatalf("pebble's root: %q", root)
	}
	if ca.root, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatalf("pebble's root: %v", err)
	}
	ca.issued = x509.NewCertPool()
	ca.issued.AddCert(ca.root)
	return ca
}

type url404 struct{ status string }

func (e *url404) Error() string { return e.status }

// checkCertmagicStops registers a cleanup that fails the test if
// certmagic goroutines are left once the test's gateways are closed:
// register it before starting them (cleanups run last first). Close
// leaves no certmagic goroutine behind (its cache's maintenance, the
// obtaining) but its process-wide rate limiter.
func checkCertmagicStops(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			var left []string
			for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
				// certmagic keeps one rate limiter goroutine per CA and
				// account for the process's life (a package-level map it
				// never stops): not ours to stop, and bounded.
				if strings.Contains(g, "caddyserver/certmagic") && !strings.Contains(g, "certmagic.NewRateLimiter") {
					left = append(left, g)
				}
			}
			stacks := strings.Join(left, "\n\n")
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("certmagic goroutines left after Close:\n%s", stacks)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestACMEPebble: with tls.acme_domains the gateway obtains a certificate
// from an ACME CA (pebble, which validates every challenge without reaching
// the gateway) and serves it on its main listener; pages and the API are
// served over it; the account and certificate are kept in acme_storage.
// The challenges themselves (TLS-ALPN on the main listener, HTTP-01 on the
// redirect listener) are validated for real in TestACMEChallenges.
func TestACMEPebble(t *testing.T) {
	const domain = "gateway.example.com"
	dirURL, caRoot, issued := startPebble(t)
	storage := t.TempDir()
	// Registered before the gateway's own cleanup, so run after it.
	checkCertmagicStops(t)
	var logs syncBuffer
	cfg := loopbackConfig()
	cfg.TLS.ACMEDomains = []string{domain}
	cfg.TLS.ACMECA = dirURL
	cfg.TLS.ACMECARoot = caRoot
	cfg.TLS.ACMEEmail = "ops@example.com"
	cfg.TLS.ACMEStorage = storage
	gw := startGatewayLogged(t, cfg, &logs)
	if !strings.HasPrefix(gw.base, "https://") {
		t.Fatalf("base %s: want https", gw.base)
	}
	addr := strings.TrimPrefix(gw.base, "https://")
	client := &tls.Config{RootCAs: issued, ServerName: domain, MinVersion: tls.VersionTLS12}
	var leaf *x509.Certificate
	waitFor(t, "a certificate from pebble (log:\n"+logs.String()+")", 60*time.Second, func() bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, client)
		if err != nil {
			return false
		}
		defer c.Close()
		leaf = c.ConnectionState().PeerCertificates[0]
		return true
	})
	if !slices.Contains(leaf.DNSNames, domain) {
		t.Fatalf("served certificate names %v, want %s", leaf.DNSNames, domain)
	}
	if os.Getenv("ACME_TEST_LOG") != "" {
		t.Log(logs.String())
	}
	if !strings.Contains(logs.String(), "certificate obtained") {
		t.Errorf("no certificate obtained line:\n%s", logs.String())
	}
	// The API over it.
	tr := &http.Transport{TLSClientConfig: client}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz over the obtained certificate: %d", resp.StatusCode)
	}
	// Kept in storage, for the next start.
	var files []string
	_ = filepath.WalkDir(storage, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.Base(p))
		}
		return nil
	})
	if !slices.Contains(files, domain+".crt") || !slices.Contains(files, domain+".key") {
		t.Fatalf("acme_storage holds %v; want %s.crt and .key", files, domain)
	}
}

// startForTest starts cmd with its output into out, and kills it at the
// end of the test, logging that output when the test failed.
func startForTest(t *testing.T, name string, cmd *exec.Cmd, out *syncBuffer) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", name, out.String())
		}
	})
}
