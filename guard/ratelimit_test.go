package guard

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/internal/testkit/promtext"
)

// served runs one request from remote (with X-Forwarded-For xff, if set)
// through h and returns the recorder and the client address the handler saw.
func served(h http.Handler, remote, xff string) (*httptest.ResponseRecorder, string) {
	var saw string
	r := httptest.NewRequest("GET", "/api/x", nil)
	r.RemoteAddr = remote
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if v := w.Header().Get("X-Saw"); v != "" {
		saw = v
	}
	return w, saw
}

var echoIP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Saw", httpapi.ClientIP(r))
	w.WriteHeader(http.StatusNoContent)
})

func TestMiddlewareBurstThen429(t *testing.T) {
	clk := newClock()
	h := &records{}
	g := New(Options{RequestsPerSecondPerIP: 0.25, RequestBurstPerIP: 5, Now: clk.Now, Logger: slog.New(h)})
	defer g.Close()
	mw := g.Middleware(echoIP)
	for i := range 5 {
		if w, _ := served(mw, "192.0.2.1:1000", ""); w.Code != http.StatusNoContent {
			t.Fatalf("request %d of the burst: %d", i+1, w.Code)
		}
	}
	w, saw := served(mw, "192.0.2.1:1001", "")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("request over the burst: %d, want 429", w.Code)
	}
	if saw != "" {
		t.Error("the handler ran for a limited request")
	}
	ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if err != nil || ra != 4 { // one token at 0.25/s
		t.Errorf("Retry-After %q, want 4", w.Header().Get("Retry-After"))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
		t.Errorf("body %q: want {\"error\": ...} (%v)", w.Body.String(), err)
	}

	// Another address has a bucket of its own.
	if w, saw := served(mw, "192.0.2.2:1000", ""); w.Code != http.StatusNoContent || saw != "192.0.2.2" {
		t.Errorf("another address: %d, saw %q", w.Code, saw)
	}
	// So does the IPv4-mapped form of the limited one: no, it is the same.
	if w, _ := served(mw, "[::ffff:192.0.2.1]:1000", ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("the mapped form of a limited address: %d, want 429", w.Code)
	}

	clk.Add(4 * time.Second) // one token back
	if w, _ := served(mw, "192.0.2.1:1000", ""); w.Code != http.StatusNoContent {
		t.Errorf("after Retry-After: %d", w.Code)
	}
	if w, _ := served(mw, "192.0.2.1:1000", ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("second request after one token came back: %d", w.Code)
	}
	metric(t, g, "gateway_requests_limited_total 3")
	if n := len(h.all()); n != 1 {
		t.Errorf("%d log lines for 3 limited requests within 10 s, want 1", n)
	}
}

func TestRetryAfterAtLeastOne(t *testing.T) {
	clk := newClock()
	g := New(Options{RequestsPerSecondPerIP: 1000, RequestBurstPerIP: 1, Now: clk.Now})
	defer g.Close()
	mw := g.Middleware(echoIP)
	served(mw, "192.0.2.1:1", "")
	w, _ := served(mw, "192.0.2.1:1", "")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("%d, Retry-After %q; want 429, 1", w.Code, w.Header().Get("Retry-After"))
	}
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {-time.Second, 1}, {time.Nanosecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {time.Duration(1 << 62), 86400}} {
		if got := retryAfter(tc.d); got != tc.want {
			t.Errorf("retryAfter(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestMiddlewareBehindTrustedProxy(t *testing.T) {
	clk := newClock()
	g := New(Options{
		RequestsPerSecondPerIP: 1, RequestBurstPerIP: 2, Now: clk.Now,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	defer g.Close()
	mw := g.Middleware(echoIP)
	for i := range 2 {
		w, saw := served(mw, "10.0.0.1:5000", "198.51.100.7, 10.0.0.2")
		if w.Code != http.StatusNoContent || saw != "198.51.100.7" {
			t.Fatalf("request %d: %d, handler saw %q, want 198.51.100.7", i, w.Code, saw)
		}
	}
	if w, _ := served(mw, "10.0.0.1:5000", "198.51.100.7"); w.Code != http.StatusTooManyRequests {
		t.Errorf("3rd request of a client behind the proxy: %d, want 429", w.Code)
	}
	// The proxy's other clients, and the proxy itself, are not limited by it.
	for i := range 2 {
		if w, saw := served(mw, "10.0.0.1:5000", "198.51.100.8"); w.Code != http.StatusNoContent || saw != "198.51.100.8" {
			t.Errorf("another client behind the proxy, request %d: %d, saw %q", i, w.Code, saw)
		}
		if w, saw := served(mw, "10.0.0.1:5000", ""); w.Code != http.StatusNoContent || saw != "10.0.0.1" {
			t.Errorf("the proxy's own request %d: %d, saw %q", i, w.Code, saw)
		}
	}
	// An untrusted peer cannot pick its bucket with the header.
	served(mw, "203.0.113.1:1", "198.51.100.9")
	served(mw, "203.0.113.1:1", "198.51.100.10")
	if w, saw := served(mw, "203.0.113.1:1", "198.51.100.11"); w.Code != http.StatusTooManyRequests || saw != "" {
		t.Errorf("untrusted peer changing X-Forwarded-For: %d, want 429", w.Code)
	}
}

func TestMiddlewareWithoutRate(t *testing.T) {
	g := New(Options{})
	defer g.Close()
	if g.lims.Load() != nil || g.stop != nil {
		t.Fatal("limiters or sweeper without a rate")
	}
	mw := g.Middleware(echoIP)
	for range 1000 {
		if w, saw := served(mw, "192.0.2.1:1", ""); w.Code != http.StatusNoContent || saw != "192.0.2.1" {
			t.Fatalf("%d, saw %q", w.Code, saw)
		}
	}
	if text := promtext.Text(t, g.Collector()); !strings.Contains(text, "gateway_requests_limited_total 0\n") {
		t.Errorf("metrics:\n%s", text)
	}
}

func TestBurstDefaultsToRate(t *testing.T) {
	g := New(Options{RequestsPerSecondPerIP: 2.5})
	defer g.Close()
	if b := g.lims.Load().burst; b != 3 {
		t.Errorf("burst %d, want 3", b)
	}
}

func TestLimiterMapBounded(t *testing.T) {
	now := newClock().Now()
	l := newLimiters(1, 1, maxLimiters)
	const n = 200_000
	for i := range n {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i) // distinct /64s
		l.allow(netip.AddrFrom16(b), now)
	}
	if got := l.size(); got > maxLimiters {
		t.Fatalf("%d addresses in the map after %d distinct ones, bound %d", got, n, maxLimiters)
	}
	// Past the bound, new addresses share one bucket: the spray above
	// emptied it.
	if ok, wait := l.allow(netip.MustParseAddr("198.51.100.1"), now); ok || wait <= 0 {
		t.Errorf("new address past the bound: allowed %v, wait %v; want the shared, empty bucket", ok, wait)
	}
	// Forgotten when idle: the map empties and new addresses get their own
	// buckets again.
	l.sweep(now.Add(limiterIdle + time.Second))
	if got := l.size(); got != 0 {
		t.Fatalf("%d addresses left after they were all idle", got)
	}
	if ok, _ := l.allow(netip.MustParseAddr("198.51.100.1"), now.Add(limiterIdle+time.Second)); !ok {
		t.Error("an address after the sweep is still limited")
	}
}

func TestSweep(t *testing.T) {
	t0 := newClock().Now()
	l := newLimiters(1, 2, 10)
	busy, idle := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	l.allow(idle, t0)
	l.allow(busy, t0)
	l.allow(busy, t0.Add(50*time.Second))
	l.sweep(t0.Add(limiterIdle + time.Second))
	l.mu.Lock()
	_, hasBusy := l.m[busy]
	_, hasIdle := l.m[idle]
	l.mu.Unlock()
	if !hasBusy || hasIdle {
		t.Errorf("after the sweep: busy kept %v (want true), idle kept %v (want false)", hasBusy, hasIdle)
	}

	// A bucket that is not full again is kept, or forgetting it would
	// hand the address a full one.
	slow := newLimiters(0.001, 3, 10)
	for range 3 {
		slow.allow(idle, t0)
	}
	slow.sweep(t0.Add(2 * limiterIdle))
	if slow.size() != 1 {
		t.Error("an idle limiter whose bucket is still empty was forgotten")
	}
}

func TestSweeperRunsAndStops(t *testing.T) {
	old := sweepEvery
	sweepEvery = time.Millisecond
	defer func() { sweepEvery = old }()
	clk := newClock()
	g := New(Options{RequestsPerSecondPerIP: 10, RequestBurstPerIP: 1, Now: clk.Now})
	g.lims.Load().allow(netip.MustParseAddr("192.0.2.1"), clk.Now())
	clk.Add(2 * limiterIdle)
	deadline := time.Now().Add(5 * time.Second)
	for g.lims.Load().size() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not forget an idle address")
		}
		time.Sleep(time.Millisecond)
	}
	g.Close()
	g.Close() // idempotent
	// goleak (TestMain) checks that the sweeper is gone.
}

// An IPv6 client counts by its /64: another address of it shares the bucket.
func TestIPv6CountsBySlash64(t *testing.T) {
	now := newClock().Now()
	l := newLimiters(1, 1, maxLimiters)
	if ok, _ := l.allow(netip.MustParseAddr("2001:db8:1:2::1"), now); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.allow(netip.MustParseAddr("2001:db8:1:2:ffff::9"), now); ok {
		t.Error("another address of the same /64 got its own bucket")
	}
	if ok, _ := l.allow(netip.MustParseAddr("2001:db8:1:3::1"), now); !ok {
		t.Error("another /64 shares the bucket")
	}
}
