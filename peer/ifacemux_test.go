package peer_test

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/peer"
)

// A port another program holds is a configuration error at start, named,
// not an address skipped for later.
func TestICEPortTaken(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	_, err = peer.NewEngine(peer.Config{UDPPort: port, IncludeLoopback: true, LoopbackOnly: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(port)) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("NewEngine on a taken port: %v", err)
	}
}

// On loopback only, the engine listens on 127.0.0.1 (and ::1 where it is
// configured) and closes cleanly.
func TestICEOnEveryUsableAddress(t *testing.T) {
	e, err := peer.NewEngine(peer.Config{IncludeLoopback: true, LoopbackOnly: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addrs := e.UDPAddrs()
	found := false
	for _, a := range addrs {
		found = found || strings.HasPrefix(a, "127.0.0.1:")
	}
	if !found {
		t.Fatalf("ICE on %v, want 127.0.0.1", addrs)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteAllowed(t *testing.T) {
	for _, c := range []struct {
		ip       string
		loopback bool
		want     bool
	}{
		{"192.0.2.1", false, true}, {"2001:db8::1", false, true}, {"127.0.0.1", true, true},
		{"0.0.0.0", false, false}, {"::", false, false}, {"224.0.0.251", false, false}, {"ff02::1", false, false},
		{"255.255.255.255", false, false}, {"192.0.2.1", true, false},
	} {
		if got := peer.RemoteAllowed(net.ParseIP(c.ip), c.loopback, nil); got != c.want {
			t.Errorf("%s (loopback only %v): %v, want %v", c.ip, c.loopback, got, c.want)
		}
	}
	deny := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for ip, want := range map[string]bool{"10.1.2.3": false, "::ffff:10.1.2.3": false, "fd12::1": false, "192.0.2.1": true, "2001:db8::1": true} {
		if got := peer.RemoteAllowed(net.ParseIP(ip), false, deny); got != want {
			t.Errorf("%s with a deny-list: %v, want %v", ip, got, want)
		}
	}
}

// Pion's warnings are rate-limited and the noise a client can cause is
// Debug: a flood of them costs a few lines, and says how many it hid.
func TestPionLogsAreLimited(t *testing.T) {
	var out strings.Builder
	l := peer.NewPionLogger(slog.New(slog.NewTextHandler(&out, nil))).NewLogger("ice")
	for range 1000 {
		l.Warn("Failed to ping without candidate pairs. Connection is not possible yet.")
		l.Warnf("odd packet %d", 1)
	}
	lines := strings.Count(out.String(), "\n")
	if strings.Contains(out.String(), "Failed to ping") {
		t.Fatal("client-caused noise logged as a warning")
	}
	if lines < 10 || lines > 40 {
		t.Fatalf("%d lines for 1000 warnings, want the burst only", lines)
	}
	time.Sleep(300 * time.Millisecond) // a token or more comes back
	l.Error("after the flood")
	if !strings.Contains(out.String(), "suppressed_before=") {
		t.Fatalf("the suppressed count is not told:\n%s", out.String()[max(0, out.Len()-300):])
	}
}
