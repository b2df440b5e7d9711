package gateway_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
)

// TestStartsWhileAnAddressIsTentative: in a network namespace where an IPv6
// address is still tentative (duplicate address detection, as in containers,
// at boot, on a new veth), a gateway with the default ICE settings (every
// interface) starts and serves, and binds the address once it is usable,
// without a restart. It used to exit with "bind: cannot assign requested
// address".
func TestStartsWhileAnAddressIsTentative(t *testing.T) {
	for _, bin := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI (apt-get install util-linux iproute2)", bin)
			}
			t.Skipf("%s not available", bin)
		}
	}
	if os.Getenv(netnsEnv) != "1" {
		runInNetns(t)
		return
	}
	ip := func(args ...string) string { t.Helper(); return runIP(t, args...) }
	ip("link", "set", "lo", "up")
	ip("link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
	// Duplicate address detection on, and slow: 5 probes, about 5 s.
	for _, f := range []string{"accept_dad", "dad_transmits"} {
		val := "1"
		if f == "dad_transmits" {
			val = "5"
		}
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/mv0/"+f, []byte(val), 0o644); err != nil {
			t.Fatalf("sysctl %s: %v", f, err)
		}
	}
	ip("link", "set", "mv1", "up")
	ip("link", "set", "mv0", "up")
	ip("-6", "addr", "add", "fd00:99::1/64", "dev", "mv0")
	if !strings.Contains(ip("-6", "addr", "show", "dev", "mv0"), "tentative") {
		t.Fatal("the address is not tentative: the test would prove nothing")
	}

	cfg := configs.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebRTC.UDPPort = 0
	cfg.Sources = nil
	gw := startGatewayConfig(t, cfg, gateway.Options{InterfaceRescan: 200 * time.Millisecond})
	var health struct {
		Status string `json:"status"`
	}
	getJSON(t, gw.base+"/healthz", &health)
	if health.Status != "ok" {
		t.Fatalf("/healthz: %+v", health)
	}
	bound := func() bool {
		for _, a := range gw.g.ICEAddrs() {
			if strings.HasPrefix(a, "[fd00:99::1]:") {
				return true
			}
		}
		return false
	}
	if bound() && strings.Contains(ip("-6", "addr", "show", "dev", "mv0"), "tentative") {
		t.Fatal("a tentative address was bound")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !bound() {
		if time.Now().After(deadline) {
			t.Fatalf("the address was not bound once usable: ICE on %v; %s", gw.g.ICEAddrs(), ip("-6", "addr", "show", "dev", "mv0"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ICE on %v", gw.g.ICEAddrs())
}

// runIP runs the ip command (iproute2) in the test's network namespace and
// returns its output; a failure fails the test.
func runIP(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
