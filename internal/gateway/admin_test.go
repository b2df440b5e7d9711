package gateway_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/apitest"
)

// TestAdminListener: with admin.listen, /metrics, /debug/pprof/ and /readyz
// are served there without a credential, /metrics leaves the main listener
// (404) while /healthz and /readyz stay; both /readyz answer 503 while the
// gateway drains, and Close stops the admin listener too.
func TestAdminListener(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) {
		c.Admin.Listen = "127.0.0.1:0"
		c.Auth.PublishToken = "pub-token-0123456789"
		c.DrainDelay = 2 * time.Second
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.g.ServeAdmin(ln) }()
	admin := "http://" + ln.Addr().String()

	series, _ := scrape(t, admin+"/metrics", nil)
	if _, ok := series["gateway_viewers"]; !ok {
		t.Errorf("admin /metrics has no gateway_viewers")
	}
	if _, ok := series["go_goroutines"]; !ok {
		t.Errorf("admin /metrics has no go_goroutines")
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/readyz"} {
		if r := apitest.Do(t, testHTTP, "GET", admin+path, "", "", nil); r.Status != 200 {
			t.Errorf("admin %s: %d %s", path, r.Status, r.Body)
		}
	}
	hardJSONError(t, "main /metrics with admin.listen set", apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", bearer(gw.token)), 404, "not found")
	if r := apitest.Do(t, testHTTP, "GET", gw.base+"/debug/pprof/", "", "", nil); r.Status != 404 {
		t.Errorf("main /debug/pprof/: %d", r.Status)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := apitest.Do(t, testHTTP, "GET", gw.base+path, "", "", nil); r.Status != 200 {
			t.Errorf("main %s: %d %s", path, r.Status, r.Body)
		}
	}

	closed := make(chan error, 1)
	go func() { closed <- gw.stop() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := apitest.Do(t, testHTTP, "GET", admin+"/readyz", "", "", nil)
		m := apitest.Do(t, testHTTP, "GET", gw.base+"/readyz", "", "", nil)
		if a.Status == 503 && m.Status == 503 {
			if !strings.Contains(a.Body, "draining") {
				t.Errorf("admin /readyz while draining: %s", a.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz while draining: admin %d, main %d", a.Status, m.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeAdmin: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the admin listener still serves after Close")
	}
}

// TestMetricsOnMainListener: without admin.listen, /metrics stays on the
// main listener, for the admin grant when access control is on.
func TestMetricsOnMainListener(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) { c.Auth.PublishToken = "pub-token-0123456789" })
	hardJSONError(t, "/metrics without a token", apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", nil), 401, "")
	series, _ := scrape(t, gw.base+"/metrics", bearer(gw.token))
	if _, ok := series["gateway_publishers_pending"]; !ok {
		t.Error("no gateway_publishers_pending")
	}
}
