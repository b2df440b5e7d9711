package gateway_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
)

// TestRedirectHTTP: the redirect listener (tls.redirect_http) answers 308
// to https on the host asked for, with the main listener's port (or
// tls.https_port, left out when 443) and the same path and query; the URL
// it names is served.
func TestRedirectHTTP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		httpsPort int
		host      string // the Host header sent; "" = the redirect listener's address
		want      string // Location; MAIN is the main listener's port
	}{
		{"main-port", 0, "", "https://127.0.0.1:MAIN/watch.html?stream=demo&x=%20y"},
		{"named-host", 0, "media.example:80", "https://media.example:MAIN/watch.html?stream=demo&x=%20y"},
		{"port-443", 443, "media.example", "https://media.example/watch.html?stream=demo&x=%20y"},
		{"port-8443-ipv6", 8443, "[2001:db8::1]:80", "https://[2001:db8::1]:8443/watch.html?stream=demo&x=%20y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loopbackConfig()
			cfg.TLSCert, cfg.TLSKey = testCert.CertFile, testCert.KeyFile
			cfg.TLS.RedirectHTTP = "127.0.0.1:0"
			cfg.TLS.HTTPSPort = tc.httpsPort
			gw := startGatewayConfig(t, cfg, gateway.Options{LoopbackOnly: true})
			rln, err := net.Listen("tcp", cfg.TLS.RedirectHTTP)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- gw.g.ServeRedirect(rln) }()
			t.Cleanup(func() {
				if err := gw.stop(); err != nil {
					t.Error(err)
				}
				if err := <-done; err != nil {
					t.Errorf("ServeRedirect: %v", err)
				}
			})
			// The main listener's port is known once Serve runs (it serves
			// in a goroutine): an answer on it says it does.
			if resp, err := testHTTP.Get(gw.base + "/healthz"); err != nil {
				t.Fatal(err)
			} else {
				resp.Body.Close()
			}
			_, mainPort, _ := net.SplitHostPort(strings.TrimPrefix(gw.base, "https://"))
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+rln.Addr().String()+"/watch.html?stream=demo&x=%20y", nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := strings.Replace(tc.want, "MAIN", mainPort, 1)
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Fatalf("%d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}
			if tc.host == "" { // follow it
				resp, err := testHTTP.Get(want)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d", want, resp.StatusCode)
				}
			}
		})
	}
}

// TestRedirectNeedsTLS: a redirect listener without TLS is a config error.
func TestRedirectNeedsTLS(t *testing.T) {
	_, err := configs.Parse("r.yaml", []byte("tls:\n  redirect_http: \":80\"\n"))
	if err == nil || !strings.Contains(err.Error(), "tls.redirect_http") {
		t.Fatalf("err %v, want tls.redirect_http named", err)
	}
}
