package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
)

// TestTimeshift: a canvas clock published from Chromium (g2g-publish.html) is
// recorded. The player (g2g-watch.html, which reads the clock back from every
// presented frame) goes 10 s back into the recording through the same
// MediaSource, without a reload: the clock it shows is 10 s old. Live brings it
// back to under 0.5 s. The watch page shows its timeline once the stream has
// recordings, and its controls drive the same calls. Worker and main-thread MSE.
func TestTimeshift(t *testing.T) {
	dir := t.TempDir()
	gw := startGateway(t, func(c *configs.Config) {
		c.Web.TestPages = true
		c.StreamDefaults.Record = true
		c.Record.Path = filepath.Join(dir, "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
		c.Record.SegmentDuration = 4 * time.Second
	})
	browser := newBrowser(t)
	pub := newTab(t, browser, gw.base+"/test/g2g-publish.html?stream=dvr")
	waitJS(t, pub, "clock publisher connected", `window.g2g && window.g2g.state === 'connected'`, 45*time.Second,
		`JSON.stringify({state: window.g2g && window.g2g.state, error: String(window.g2g && (window.g2g.error || window.g2g.publisher && window.g2g.publisher.error))})`)
	began := time.Now()

	dbg := `JSON.stringify({state: window.player && window.player.state, mode: window.player && window.player.mode, timeshifted: window.player && window.player.timeshifted,
	  stats: window.player && window.player.stats, lastError: window.player && window.player.lastError, samples: window.g2g && window.g2g.reader.samples.length})`
	// lag waits for n clock readings and returns their median (ms).
	lag := func(t *testing.T, watch context.Context, what string, n int) float64 {
		t.Helper()
		evalJS[bool](t, watch, `window.g2g.reader.reset(), true`)
		waitJS(t, watch, what, fmt.Sprintf(`window.g2g.reader.samples.length >= %d`, n), 60*time.Second, dbg)
		xs := evalJS[[]float64](t, watch, `window.g2g.reader.samples`)
		sort.Float64s(xs)
		return xs[len(xs)/2]
	}

	for _, mode := range timeshiftModes() {
		t.Run(mode, func(t *testing.T) {
			watch := newTab(t, browser, gw.base+"/test/g2g-watch.html?stream=dvr&mode="+mode)
			waitJS(t, watch, "clock viewer playing", `window.player && window.player.state === 'playing'`, 45*time.Second, dbg)
			evalJS[bool](t, watch, `window.__sameDocument = true`)
			if live := lag(t, watch, "live clock readings", 20); live <= 0 || live > 1500 {
				t.Fatalf("live: the clock is %.0f ms old", live)
			}
			// At least 14 s recorded before going 10 s back.
			if wait := 14*time.Second - time.Since(began); wait > 0 {
				time.Sleep(wait)
			}
			// stats is refreshed once a second: it can still be the empty first one here.
			waitJS(t, watch, "stats that count the MediaSource", `window.player.stats.mediaSources >= 1`, 10*time.Second, dbg)
			mediaSources := evalJS[float64](t, watch, `window.player.stats.mediaSources`)
			evalJS[bool](t, watch, `window.player.timeshift(Date.now() - 10000), true`)
			waitJS(t, watch, "playing the recording", `window.player.timeshifted && window.player.state === 'playing' && window.player.stats.timeshifted && Number.isFinite(window.player.stats.position)`, 30*time.Second, dbg)
			back := lag(t, watch, "clock readings from the recording", 30)
			pos := evalJS[float64](t, watch, `Date.now() - window.player.stats.position`)
			t.Logf("%s: 10 s back, the clock shown is %.0f ms old (the player says %.0f ms)", mode, back, pos)
			if back < 9500 || back > 13000 {
				t.Errorf("10 s back: the clock shown is %.0f ms old, want about 10 s", back)
			}
			if pos < 9000 || pos > 13500 {
				t.Errorf("10 s back: stats.position is %.0f ms behind now", pos)
			}
			// 2x in the recording: the clock shown gets younger.
			evalJS[bool](t, watch, `window.player.setSpeed(2), true`)
			time.Sleep(3 * time.Second)
			faster := lag(t, watch, "clock readings at 2x", 20)
			t.Logf("%s: after 3 s at 2x the clock shown is %.0f ms old; %s", mode, faster,
				evalJS[string](t, watch, `JSON.stringify({rate: document.querySelector('video').playbackRate, stats: window.player.stats,
				  buffered: Array.from({length: document.querySelector('video').buffered.length}, (_, i) => [document.querySelector('video').buffered.start(i), document.querySelector('video').buffered.end(i)])})`))
			if faster > back-1500 {
				t.Errorf("at 2x the clock shown is %.0f ms old, was %.0f ms: it did not catch up", faster, back)
			}
			evalJS[bool](t, watch, `window.player.goLive(), true`)
			waitJS(t, watch, "back live", `!window.player.timeshifted && window.player.state === 'playing'`, 30*time.Second, dbg)
			time.Sleep(2 * time.Second) // the live edge reached
			live := lag(t, watch, "live clock readings again", 30)
			t.Logf("%s: live again, the clock shown is %.0f ms old", mode, live)
			if live <= 0 || live > 500 {
				t.Errorf("back live: the clock shown is %.0f ms old, want under 500 ms", live)
			}
			if !evalJS[bool](t, watch, `window.__sameDocument === true`) {
				t.Error("the page was reloaded")
			}
			if n := evalJS[float64](t, watch, `window.player.stats.mediaSources`); n != mediaSources || n < 1 {
				t.Errorf("%.0f MediaSources made going back and live again (before: %.0f): want the same one", n-mediaSources, mediaSources)
			}
			evalJS[bool](t, watch, `window.player.stop(), true`)
		})
	}

	// The watch page: its timeline appears (the stream has recordings), the
	// controls go back and come live again.
	page := newTab(t, browser, gw.base+"/watch.html?stream=dvr")
	waitJS(t, page, "watch page playing with its timeline", `window.player && window.player.state === 'playing' && !document.getElementById('dvr').hidden`, 45*time.Second, dbg)
	evalJS[bool](t, page, `(() => { const b = document.getElementById('timeline'); b.value = String(Number(b.max) - 8); b.dispatchEvent(new Event('change')); return true; })()`)
	waitJS(t, page, "the timeline went back", `window.player.timeshifted && window.player.state === 'playing' && document.getElementById('timeline-at').textContent.startsWith('−')`, 30*time.Second, dbg)
	evalJS[bool](t, page, `document.getElementById('live').click(), true`)
	waitJS(t, page, "Live came back", `!window.player.timeshifted && document.getElementById('timeline-at').textContent === 'live'`, 30*time.Second, dbg)
	screenshot(t, page, "watch-timeline.png")
}

// timeshiftModes are the player paths TestTimeshift runs (TIMESHIFT_MODE picks one).
func timeshiftModes() []string {
	if m := os.Getenv("TIMESHIFT_MODE"); m != "" {
		return []string{m}
	}
	return []string{"worker", "main"}
}
