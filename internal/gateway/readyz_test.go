package gateway_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/apitest"
)

// TestReadyzUntilICEBound: /readyz answers 503 "starting" while the
// gateway has no ICE UDP socket, and 200 "ready" once one is bound, without
// a restart. In a network namespace of its own (as
// TestStartsWhileAnAddressIsTentative) the only address ICE may use (every
// interface, no loopback) is an IPv6 address on a veth whose peer is down:
// without a carrier, duplicate address detection does not begin and the
// address stays tentative (not bindable) for as long as the test wants.
// Bringing the peer up lets it become usable, and the rescan binds it.
// (503 "draining" from the start of Close: TestDrain and TestAdminListener.)
func TestReadyzUntilICEBound(t *testing.T) {
	if os.Getenv(netnsEnv) != "1" {
		runInNetns(t)
		return
	}
	ip := func(args ...string) string { t.Helper(); return runIP(t, args...) }
	ip("link", "set", "lo", "up")
	ip("link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
	for f, val := range map[string]string{"accept_dad": "1", "dad_transmits": "1"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/mv0/"+f, []byte(val), 0o644); err != nil {
			t.Fatalf("sysctl %s: %v", f, err)
		}
	}
	ip("link", "set", "mv0", "up") // mv1 stays down: mv0 has no carrier
	ip("-6", "addr", "add", "fd00:99::1/64", "dev", "mv0")
	if show := ip("-6", "addr", "show", "dev", "mv0"); !strings.Contains(show, "tentative") {
		t.Fatalf("the address is not tentative: the test would prove nothing\n%s", show)
	}

	cfg := configs.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = ""
	cfg.WebRTC.IncludeLoopback = false
	cfg.Sources = nil
	gw := startGatewayConfig(t, cfg, gateway.Options{InterfaceRescan: 100 * time.Millisecond})
	readyz := func() (int, map[string]string) {
		t.Helper()
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/readyz", "", "", nil)
		var body map[string]string
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatalf("/readyz: %d %q: %v", r.Status, r.Body, err)
		}
		return r.Status, body
	}

	if addrs := gw.g.ICEAddrs(); len(addrs) != 0 {
		t.Fatalf("ICE bound %v before any address was usable: the test would prove nothing\n%s", addrs, ip("addr", "show"))
	}
	// Starting, and still starting after rescans found nothing to bind.
	for range 3 {
		if status, body := readyz(); status != 503 || body["status"] != "starting" {
			t.Fatalf("/readyz with no ICE socket: %d %v, want 503 starting", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if addrs := gw.g.ICEAddrs(); len(addrs) != 0 {
		t.Fatalf("ICE bound %v while the address is tentative\n%s", addrs, ip("addr", "show"))
	}

	ip("link", "set", "mv1", "up")
	var status int
	var body map[string]string
	waitFor(t, "/readyz 200 once the address is usable", 60*time.Second, func() bool {
		status, body = readyz()
		return status == 200
	})
	if body["status"] != "ready" {
		t.Errorf("/readyz: %d %v, want status ready", status, body)
	}
	if len(gw.g.ICEAddrs()) == 0 {
		t.Errorf("/readyz is ready with no ICE socket")
	}
	t.Logf("ICE on %v", gw.g.ICEAddrs())
}
