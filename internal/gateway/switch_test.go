package gateway_test

import (
	"context"
	"testing"
	"time"
)

// TestPlayerSwitch: a live stream changes resolution (640x360 <-> 1280x720, a new
// init every 3 s, audio continuous); the watch page with its default settings keeps
// presenting frames across three changes, in each MSE path, without a hole at a
// change: the longest gap between presented frames (requestVideoFrameCallback) at
// a change stays under 200 ms, or, on a machine so loaded that frames away from
// any change are late too, under twice the longest gap seen away from the changes
// in the same run (a ratio, not a speed figure).
func TestPlayerSwitch(t *testing.T) {
	gw := startGateway(t, nil)
	publishSwitching(t, gw, "switch")
	browser := newBrowser(t)
	inEachMode(t, browser, gw.base+"/watch.html?stream=switch", func(t *testing.T, mode string, tab context.Context) {
		// From the live edge on: the join's catch-up (a jump over the cached GOP) is
		// not a gap of steady playback.
		waitJS(t, tab, "the live edge reached", `window.player.stats.latency !== null && window.player.stats.latency < window.player.targetLatency + 0.1`,
			30*time.Second, playerDebugJS)
		evalJS[bool](t, tab, frameGapJS)
		a := readPlayer(t, tab)
		waitJS(t, tab, "three resolution changes on screen", `window.__switches >= 3`, 60*time.Second, playerDebugJS)
		b, c := waitAdvance(t, tab, "playback after the changes", 2, 30*time.Second)
		gaps := evalJS[map[string]float64](t, tab, `({max: window.__maxGap, atSwitch: window.__switchGap, steady: window.__steadyGap, switches: window.__switches})`)
		at := evalJS[string](t, tab, `window.__gapAt`)
		stats := evalJS[map[string]any](t, tab, `window.player.stats`)
		t.Logf("%s: inits %d -> %d, %v size changes on screen; longest gap between presented frames %.0f ms at a change, %.0f ms elsewhere (longest at %s); stalls %v, stall time %v s",
			mode, a.Inits, c.Inits, gaps["switches"], gaps["atSwitch"], gaps["steady"], at, stats["stalls"], stats["stallTime"])
		checkProgress(t, "after the changes", b, c, 20)
		if bound := max(200, 2*gaps["steady"]); gaps["atSwitch"] >= bound {
			t.Errorf("a hole of %.0f ms at a resolution change (bound %.0f ms: 200 ms, or twice the %.0f ms seen away from changes)",
				gaps["atSwitch"], bound, gaps["steady"])
		}
		evalJS[bool](t, tab, `window.player.stop(), true`)
	})
}
