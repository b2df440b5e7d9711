package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// TestLiveEdgeAdapts: the publisher's network turns jittery (30 ms) and lossy
// (1 %) for a while, then clean again. The watch page with its default settings
// raises its target above what it held on the clean path while the path is bad,
// keeps playing, and comes back down once it is clean; the playhead follows the
// target. Progress and direction only: how far and how fast depend on the machine.
func TestLiveEdgeAdapts(t *testing.T) {
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	pub := publish(t, gw, "adapt", video, audio)
	browser := newBrowser(t)
	tab := newTab(t, browser, gw.base+"/watch.html?stream=adapt&mode=worker")
	waitPlaying(t, tab, 45*time.Second)

	// A clean path first: the jitter window (10 s) fills.
	waitAdvance(t, tab, "12 s on the clean path", 12, 60*time.Second)
	clean := evalJS[float64](t, tab, `window.player.targetLatency`)
	base := evalJS[float64](t, tab, `window.player.baseLatency`)
	t.Logf("clean path: base %.3f s, target %.3f s, stats %v", base, clean, evalJS[map[string]any](t, tab, `window.player.stats`))

	pub.SetImpairment(whipclient.Impairment{Jitter: 30 * time.Millisecond, Loss: 0.01, Seed: 16})
	waitJS(t, tab, "the target raised on the jittery path",
		fmt.Sprintf(`window.player.targetLatency >= %s`, ftoa(clean+0.015)), 45*time.Second, playerDebugJS)
	a, b := waitAdvance(t, tab, "playback on the jittery path", 8, 60*time.Second)
	checkProgress(t, "on the jittery path", a, b, 120)
	peak := evalJS[float64](t, tab, `window.player.targetLatency`)
	bad := evalJS[map[string]any](t, tab, `window.player.stats`)
	t.Logf("jittery path: target %.3f s, stats %v, impairment %+v", peak, bad, pub.ImpairStats())

	pub.SetImpairment(whipclient.Impairment{})
	back := (clean + peak) / 2
	waitJS(t, tab, "the target back down on the clean path",
		fmt.Sprintf(`window.player.targetLatency <= %s`, ftoa(back)), 90*time.Second, playerDebugJS)
	// The playhead follows the target down (rate trimming or a jump).
	waitJS(t, tab, "the latency follows the target",
		`window.player.stats.latency !== null && window.player.stats.latency <= window.player.targetLatency + 0.1`, 30*time.Second, playerDebugJS)
	a, b = waitAdvance(t, tab, "playback on the clean path again", 3, 30*time.Second)
	checkProgress(t, "on the clean path again", a, b, 45)
	t.Logf("clean again: target %.3f s, stats %v", evalJS[float64](t, tab, `window.player.targetLatency`), evalJS[map[string]any](t, tab, `window.player.stats`))
}
