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
// (direct WebRTC) and measures that in the same run: the baseline. After the MSE
// player's targets, g2g-minimal.html (a minimal MSE page on this gateway that only
// seeks back to the live edge) is measured the same way: the third column.
//
// Short by default (CI: samples decode, latencies are positive and finite). For the
// figures in docs/BENCHMARKS.md:
//
//	LATENCY_SAMPLES=300 go test -run TestGlassToGlass -v ./internal/gateway/
//
// LATENCY_MODE=worker|main picks the player path (default worker).
// LATENCY_TARGETS is a list of player targets in seconds, or `default` (no target
// given: the player's own); default "default,0.1". LATENCY_MINIMAL=0 skips the
// minimal page.
func TestGlassToGlass(t *testing.T) {
	samples := g2gSamples(t)
	targets := g2gTargets(t)
	mode := os.Getenv("LATENCY_MODE")
	if mode == "" {
		mode = "worker"
	}
	gw := startGateway(t, func(c *configs.Config) { c.Web.TestPages = true })
	browser := newBrowser(t)
	// With the fake microphone (Opus) as a real publisher sends; LATENCY_AUDIO=0: video only.
	audio := "1"
	if os.Getenv("LATENCY_AUDIO") == "0" {
		audio = "0"
	}
	pub := newTab(t, browser, gw.base+"/test/g2g-publish.html?stream=g2g&audio="+audio)
	waitJS(t, pub, "clock publisher connected", `window.g2g && window.g2g.state === 'connected' && !!window.g2g.baseline`, 45*time.Second,
		`JSON.stringify({state: window.g2g && window.g2g.state, error: String(window.g2g && (window.g2g.error || window.g2g.publisher && window.g2g.publisher.error))})`)
	for _, target := range targets {
		measurePlayerG2G(t, browser, pub, gw.base, mode, target, samples)
	}
	if os.Getenv("LATENCY_MINIMAL") != "0" {
		measureMinimalG2G(t, browser, pub, gw.base, samples)
	}
	screenshot(t, pub, "g2g-publish.png")
}

// g2gSamples is LATENCY_SAMPLES, 40 when unset.
func g2gSamples(t *testing.T) int {
	t.Helper()
	s := os.Getenv("LATENCY_SAMPLES")
	if s == "" {
		return 40
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 10 {
		t.Fatalf("LATENCY_SAMPLES=%q: want a number >= 10", s)
	}
	return n
}

// g2gTargets is LATENCY_TARGETS: seconds, or "default" for the player's own target.
func g2gTargets(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("LATENCY_TARGETS")
	if v == "" {
		v = "default,0.1" // the player's default, and a low-latency setting
	}
	targets := strings.Split(v, ",")
	for i, target := range targets {
		targets[i] = strings.TrimSpace(target)
		if targets[i] == "default" {
			continue
		}
		if x, err := strconv.ParseFloat(targets[i], 64); err != nil || x <= 0 {
			t.Fatalf("LATENCY_TARGETS: bad target %q (seconds or `default`)", target)
		}
	}
	return targets
}

// g2gCounters is what a viewer page's window.g2g.counters() says about the sample
// period: the MSE player's stalls and targets (g2g-watch), or the minimal page's
// seeks and waiting events (g2g-minimal).
type g2gCounters struct {
	Stalls    int     `json:"stalls"`
	Target    float64 `json:"target"`    // s, at the start of the period
	TargetMax float64 `json:"targetMax"` // s, the highest seen in the period
	Base      float64 `json:"base"`      // s, the player's base target
	Seeks     int     `json:"seeks"`
	Waits     int     `json:"waits"`
	Edge      float64 `json:"edge"`
	Lead      float64 `json:"lead"`
	Decoded   int     `json:"decoded"` // video frames decoded in the period
	Dropped   int     `json:"dropped"` // of those, dropped (too late to show)
}

// g2gResult is one viewer's measurement against direct WebRTC over the same period.
type g2gResult struct {
	gwP50, gwP95, directP50, directP95 float64
	// The direct WebRTC baseline of the video track alone (publishes with audio; 0 without):
	// lip sync delays the video of the baseline above, a muted MSE viewer plays no audio.
	videoP50, videoP95 float64
	counters           g2gCounters
}

// figures is the common part of a GLASS-TO-GLASS line: both percentiles and their ratios.
func (r g2gResult) figures() string {
	s := fmt.Sprintf("gateway p50=%.0f ms p95=%.0f ms; direct WebRTC p50=%.0f ms p95=%.0f ms; ratio %.2f/%.2f",
		r.gwP50, r.gwP95, r.directP50, r.directP95, r.gwP50/r.directP50, r.gwP95/r.directP95)
	if r.videoP50 > 0 {
		s += fmt.Sprintf("; direct WebRTC video alone p50=%.0f ms p95=%.0f ms, ratio %.2f/%.2f",
			r.videoP50, r.videoP95, r.gwP50/r.videoP50, r.gwP95/r.videoP95)
	}
	return s
}

// measurePlayerG2G measures the MSE player (g2g-watch) at one target ("default": none given).
func measurePlayerG2G(t *testing.T, browser, pub context.Context, base, mode, target string, samples int) {
	t.Helper()
	url := base + "/test/g2g-watch.html?stream=g2g&mode=" + mode
	if os.Getenv("LATENCY_SOUND") == "1" { // unmuted: the stream's audio played too
		url += "&sound=1"
	}
	if target != "default" {
		url += "&latency=" + target
	}
	watch := newTab(t, browser, url)
	r := measureG2G(t, pub, watch, "gateway (MSE "+mode+", target "+target+")", samples)
	t.Logf("player stats at the end: %v", evalJS[map[string]any](t, watch, `window.player.stats`))
	shown := target + "s"
	if target == "default" {
		shown = fmt.Sprintf("default(%gs)", r.counters.Base)
	}
	fmt.Printf("GLASS-TO-GLASS mode=%s target=%s samples=%d: %s; stalls %d, target max %gs, dropped %d of %d frames\n",
		mode, shown, samples, r.figures(), r.counters.Stalls, r.counters.TargetMax, r.counters.Dropped, r.counters.Decoded)
	screenshot(t, watch, "g2g-watch-"+target+".png")
	evalJS[bool](t, watch, `window.player.stop(), true`)
}

// measureMinimalG2G measures the minimal MSE page (g2g-minimal) with its default edge.
func measureMinimalG2G(t *testing.T, browser, pub context.Context, base string, samples int) {
	t.Helper()
	page := newTab(t, browser, base+"/test/g2g-minimal.html?stream=g2g")
	r := measureG2G(t, pub, page, "gateway (minimal MSE page)", samples)
	fmt.Printf("GLASS-TO-GLASS player=minimal edge=%gs lead=%gs samples=%d: %s; seeks %d, waiting %d, dropped %d of %d frames\n",
		r.counters.Edge, r.counters.Lead, samples, r.figures(), r.counters.Seeks, r.counters.Waits, r.counters.Dropped, r.counters.Decoded)
	screenshot(t, page, "g2g-minimal.png")
	evalJS[bool](t, page, `window.minimal.stop(), true`)
}

// measureG2G waits until the viewer page plays, lets it warm up, then collects
// samples from it and, over the same period, from the direct WebRTC baseline in the
// publisher tab; it logs both and returns their percentiles and the page's counters
// for the period. The page has window.g2g = {state, reader, reset(), counters()}.
func measureG2G(t *testing.T, pub, viewer context.Context, name string, samples int) g2gResult {
	t.Helper()
	dbg := `JSON.stringify({state: window.g2g && window.g2g.state, error: window.g2g && String(window.g2g.error),
	  samples: window.g2g && window.g2g.reader.samples.length, bad: window.g2g && window.g2g.reader.bad, frames: window.g2g && window.g2g.reader.frames,
	  counters: window.g2g && window.g2g.counters(), stats: window.player && window.player.stats, minimal: window.minimal,
	  element: (() => { const v = document.querySelector('video'); return v && {paused: v.paused, ended: v.ended, readyState: v.readyState, currentTime: v.currentTime, error: v.error && v.error.message}; })()})`
	waitJS(t, viewer, name+" playing", `window.g2g && window.g2g.state === 'playing'`, 45*time.Second, dbg)

	// Warm-up: the GOP-cache burst and the first seek to the live edge, then measure.
	time.Sleep(3 * time.Second)
	evalJS[bool](t, viewer, `window.g2g.reset(), true`)
	evalJS[bool](t, pub, `window.g2g.baseline.reset(), window.g2g.baselineVideo && window.g2g.baselineVideo.reset(), true`)
	start := time.Now()
	timeout := 30*time.Second + time.Duration(samples)*100*time.Millisecond
	waitJS(t, viewer, fmt.Sprintf("%d samples through the gateway", samples), fmt.Sprintf(`window.g2g.reader.samples.length >= %d`, samples), timeout, dbg)
	counters := evalJS[g2gCounters](t, viewer, `window.g2g.counters()`)
	waitJS(t, pub, fmt.Sprintf("%d direct WebRTC samples", samples), fmt.Sprintf(`window.g2g.baseline.samples.length >= %d`, samples), 30*time.Second,
		`JSON.stringify({samples: window.g2g.baseline.samples.length, bad: window.g2g.baseline.bad, frames: window.g2g.baseline.frames})`)
	elapsed := time.Since(start)

	read := `({samples: R.samples, bad: R.bad, frames: R.frames})`
	gwR := evalJS[clockReading](t, viewer, "(() => { const R = window.g2g.reader; return "+read+"; })()")
	baseR := evalJS[clockReading](t, pub, "(() => { const R = window.g2g.baseline; return "+read+"; })()")
	if len(gwR.Samples) < samples || len(baseR.Samples) < samples {
		t.Fatalf("samples: gateway %d, baseline %d, want %d each", len(gwR.Samples), len(baseR.Samples), samples)
	}
	t.Logf("%s: measured over %v; counters for the period: %+v", name, elapsed.Round(time.Second), counters)
	r := g2gResult{counters: counters}
	r.gwP50, r.gwP95 = reportClock(t, name, gwR)
	r.directP50, r.directP95 = reportClock(t, "direct WebRTC (same period)", baseR)
	if evalJS[bool](t, pub, `!!window.g2g.baselineVideo`) {
		videoR := evalJS[clockReading](t, pub, "(() => { const R = window.g2g.baselineVideo; return "+read+"; })()")
		if len(videoR.Samples) < samples/2 {
			t.Fatalf("samples: direct WebRTC of the video alone %d, want %d or more", len(videoR.Samples), samples/2)
		}
		r.videoP50, r.videoP95 = reportClock(t, "direct WebRTC, video alone (same period)", videoR)
	}
	return r
}

// clockReading is a clockReader's (web/static/test/clock.js) samples in ms.
type clockReading struct {
	Samples []float64 `json:"samples"`
	Bad     int       `json:"bad"`
	Frames  int       `json:"frames"`
}

// reportClock checks that every sample is a positive finite latency, logs the
// distribution and returns its p50 and p95.
func reportClock(t *testing.T, name string, r clockReading) (p50, p95 float64) {
	t.Helper()
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
