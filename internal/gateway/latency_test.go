package gateway_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
)

// TestGlassToGlass measures capture-to-display latency the way a viewer sees it.
// web/static/test/g2g-publish.html paints the wall clock into a canvas as binary
// blocks and publishes canvas.captureStream() through the gateway; g2g-watch.html
// plays the stream with the MSE player and reads the clock back from every presented
// frame (requestVideoFrameCallback + canvas readback): latency = expected display
// time - painted time, both on performance.timeOrigin + performance.now() of one
// browser. The publish page also sends the same canvas over two RTCPeerConnections
// (direct WebRTC) and measures that in the same run: the baseline.
//
// Short by default (CI: samples decode, latencies are positive and finite). For the
// figures in docs/BENCHMARKS.md:
//
//	LATENCY_SAMPLES=300 go test -run TestGlassToGlass -v ./internal/gateway/
//
// LATENCY_MODE=worker|main picks the player path (default worker).
func TestGlassToGlass(t *testing.T) {
	samples := 40
	if s := os.Getenv("LATENCY_SAMPLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("LATENCY_SAMPLES=%q: want a number >= 10", s)
		}
		samples = n
	}
	mode := os.Getenv("LATENCY_MODE")
	if mode == "" {
		mode = "worker"
	}
	gw := startGateway(t, func(c *configs.Config) { c.Web.TestPages = true })
	browser := newBrowser(t)
	pub := newTab(t, browser, gw.base+"/test/g2g-publish.html?stream=g2g")
	waitJS(t, pub, "clock publisher connected", `window.g2g && window.g2g.state === 'connected' && !!window.g2g.baseline`, 45*time.Second,
		`JSON.stringify({state: window.g2g && window.g2g.state, error: String(window.g2g && (window.g2g.error || window.g2g.publisher && window.g2g.publisher.error))})`)
	targets := []string{"0.15", "0.1"} // the player's default, and a low-latency setting
	if v := os.Getenv("LATENCY_TARGETS"); v != "" {
		targets = strings.Split(v, ",")
	}
	for _, target := range targets {
		if _, err := strconv.ParseFloat(target, 64); err != nil {
			t.Fatalf("LATENCY_TARGETS: bad target %q", target)
		}
		watch := newTab(t, browser, gw.base+"/test/g2g-watch.html?stream=g2g&mode="+mode+"&latency="+target)
		measureG2G(t, pub, watch, mode, target, samples)
		screenshot(t, watch, "g2g-watch-"+target+".png")
		evalJS[bool](t, watch, `window.player.stop(), true`)
	}
	screenshot(t, pub, "g2g-publish.png")
}

// measureG2G collects samples from the viewer tab and, over the same period, from
// the direct WebRTC baseline in the publisher tab, and reports both.
func measureG2G(t *testing.T, pub, watch context.Context, mode, target string, samples int) {
	t.Helper()
	dbg := `JSON.stringify({state: window.player && window.player.state, mode: window.player && window.player.mode, stats: window.player && window.player.stats,
	  samples: window.g2g && window.g2g.reader.samples.length, bad: window.g2g && window.g2g.reader.bad, frames: window.g2g && window.g2g.reader.frames})`
	waitJS(t, watch, "clock viewer playing", `window.player && window.player.state === 'playing'`, 45*time.Second, dbg)

	// Warm-up: the GOP-cache burst and the first seek to the live edge, then measure.
	time.Sleep(3 * time.Second)
	evalJS[bool](t, watch, `window.g2g.reader.reset(), true`)
	evalJS[bool](t, pub, `window.g2g.baseline.reset(), true`)
	start := time.Now()
	timeout := 30*time.Second + time.Duration(samples)*100*time.Millisecond
	waitJS(t, watch, fmt.Sprintf("%d samples through the gateway", samples), fmt.Sprintf(`window.g2g.reader.samples.length >= %d`, samples), timeout, dbg)
	waitJS(t, pub, fmt.Sprintf("%d direct WebRTC samples", samples), fmt.Sprintf(`window.g2g.baseline.samples.length >= %d`, samples), 30*time.Second,
		`JSON.stringify({samples: window.g2g.baseline.samples.length, bad: window.g2g.baseline.bad, frames: window.g2g.baseline.frames})`)
	elapsed := time.Since(start)

	type reading struct {
		Samples []float64 `json:"samples"`
		Bad     int       `json:"bad"`
		Frames  int       `json:"frames"`
	}
	read := `({samples: R.samples, bad: R.bad, frames: R.frames})`
	gwR := evalJS[reading](t, watch, "(() => { const R = window.g2g.reader; return "+read+"; })()")
	baseR := evalJS[reading](t, pub, "(() => { const R = window.g2g.baseline; return "+read+"; })()")
	stats := evalJS[map[string]any](t, watch, `window.player.stats`)

	report := func(name string, r reading) (p50, p95 float64) {
		xs := append([]float64(nil), r.Samples...)
		for _, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 || x > 60000 {
				t.Errorf("%s: latency sample %v ms is not a positive finite latency", name, x)
			}
		}
		sort.Float64s(xs)
		pct := func(p float64) float64 {
			return xs[int(math.Min(float64(len(xs)-1), math.Floor(p/100*float64(len(xs)))))]
		}
		var sum float64
		for _, x := range xs {
			sum += x
		}
		p50, p95 = pct(50), pct(95)
		t.Logf("%-34s n=%d  p50=%.0f ms  p95=%.0f ms  mean=%.0f ms  min=%.0f  max=%.0f  (frames read %d, rejected %d)",
			name, len(xs), p50, p95, sum/float64(len(xs)), xs[0], xs[len(xs)-1], r.Frames, r.Bad)
		return p50, p95
	}
	if len(gwR.Samples) < samples || len(baseR.Samples) < samples {
		t.Fatalf("samples: gateway %d, baseline %d, want %d each", len(gwR.Samples), len(baseR.Samples), samples)
	}
	t.Logf("target %s s: measured over %v; player stats at the end: %v", target, elapsed.Round(time.Second), stats)
	gp50, gp95 := report("gateway (MSE "+mode+", target "+target+" s)", gwR)
	bp50, bp95 := report("direct WebRTC (same run)", baseR)
	fmt.Printf("GLASS-TO-GLASS mode=%s target=%ss samples=%d: gateway p50=%.0f ms p95=%.0f ms; direct WebRTC p50=%.0f ms p95=%.0f ms\n",
		mode, target, samples, gp50, gp95, bp50, bp95)
}
