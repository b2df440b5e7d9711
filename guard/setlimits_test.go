package guard

import (
	"net/http"
	"testing"
)

// TestSetLimits: a reload turns the request rate on (the sweeper starts),
// changes it, and turns it off; the connection caps change; Close stops
// the sweeper it started (goleak, TestMain).
func TestSetLimits(t *testing.T) {
	g := New(Options{MaxConns: 10})
	defer g.Close()
	mw := g.Middleware(echoIP)
	for range 5 {
		if w, _ := served(mw, "192.0.2.1:1", ""); w.Code != http.StatusNoContent {
			t.Fatalf("no rate: %d", w.Code)
		}
	}
	g.SetLimits(Options{MaxConns: 20, MaxConnsPerIP: 2, RequestsPerSecondPerIP: 0.001, RequestBurstPerIP: 2})
	if g.MaxConns() != 20 || g.stop == nil {
		t.Fatalf("max conns %d, sweeper %v", g.MaxConns(), g.stop != nil)
	}
	codes := []int{}
	for range 3 {
		w, _ := served(mw, "192.0.2.1:1", "")
		codes = append(codes, w.Code)
	}
	if codes[0] != http.StatusNoContent || codes[1] != http.StatusNoContent || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("burst 2: %v", codes)
	}
	g.SetLimits(Options{MaxConns: -1})
	if w, _ := served(mw, "192.0.2.1:1", ""); w.Code != http.StatusNoContent || g.MaxConns() != 0 {
		t.Fatalf("rate off: %d, max conns %d", w.Code, g.MaxConns())
	}
	g.Close()
	g.SetLimits(Options{RequestsPerSecondPerIP: 1}) // after Close: no new sweeper
}
