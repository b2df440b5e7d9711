package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestPlayerSwitch: a live stream changes resolution (640x360 <-> 1280x720, a new
// init every 3 s, audio continuous); the watch page with its default settings keeps
// presenting frames across three changes, in each MSE path. The longest gap between
// presented frames (requestVideoFrameCallback) is logged for every path; the bound
// asserted is a generous one (a loaded shared machine), the issue 16 goal is < 200 ms.
func TestPlayerSwitch(t *testing.T) {
	gw := startGateway(t, nil)
	publishSwitching(t, gw, "switch")
	browser := newBrowser(t)
	inEachMode(t, browser, gw.base+"/watch.html?stream=switch", func(t *testing.T, mode string, tab context.Context) {
		evalJS[bool](t, tab, frameGapJS)
		a := readPlayer(t, tab)
		waitJS(t, tab, "three resolution changes", fmt.Sprintf(`window.player.inits >= %d`, a.Inits+3), 60*time.Second, playerDebugJS)
		b, c := waitAdvance(t, tab, "playback after the changes", 2, 30*time.Second)
		gap := evalJS[float64](t, tab, `window.__maxGap`)
		at := evalJS[string](t, tab, `window.__gapAt`)
		stats := evalJS[map[string]any](t, tab, `window.player.stats`)
		t.Logf("%s: inits %d -> %d; longest gap between presented frames %.0f ms at %s; stalls %v, stall time %v s",
			mode, a.Inits, c.Inits, gap, at, stats["stalls"], stats["stallTime"])
		checkProgress(t, "after the changes", b, c, 20)
		if gap >= 1000 {
			t.Errorf("playback froze for %.0f ms across the resolution changes", gap)
		}
		evalJS[bool](t, tab, `window.player.stop(), true`)
	})
}
