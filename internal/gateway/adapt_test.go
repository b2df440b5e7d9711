package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	t.Logf("clean path: base %.3f s, target %.3f s, rate quirk %q, stats %v", base, clean, evalJS[string](t, tab, `window.player.rateQuirk`), evalJS[map[string]any](t, tab, `window.player.stats`))

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

// TestPlayerMutedLeavesAudioOut: muted (the default, for autoplay), the watch
// page leaves the stream's audio out, so video alone plays at the low base
// target; unmuting (a click on the page's button) reconnects with audio, which
// is then decoded, and the target rises to the floor a stream with audio
// needs. In each MSE path.
func TestPlayerMutedLeavesAudioOut(t *testing.T) {
	gw, browser := liveInBrowser(t, "mute")
	const audioBytes = `(document.querySelector('video').webkitAudioDecodedByteCount || 0)`
	inEachMode(t, browser, gw.base+"/watch.html?stream=mute", func(t *testing.T, mode string, tab context.Context) {
		a, b := waitAdvance(t, tab, "muted playback", 2, 30*time.Second)
		checkProgress(t, "muted", a, b, 30)
		st := evalJS[map[string]any](t, tab, `window.player.stats`)
		mime := fmt.Sprint(st["mime"])
		if st["audioLeftOut"] != true || evalJS[int](t, tab, audioBytes) != 0 || !strings.Contains(mime, "avc1") || strings.Contains(mime, "opus") {
			t.Errorf("muted: audio left out %v, audio bytes decoded %d, mime %s", st["audioLeftOut"], evalJS[int](t, tab, audioBytes), mime)
		}
		if b.Target >= 0.15 {
			t.Errorf("muted: target %.3f s, want the video-only base (0.05 s plus jitter)", b.Target)
		}
		ctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Click("#mute")); err != nil {
			t.Fatalf("click the mute button: %v", err)
		}
		waitJS(t, tab, "audio back after unmuting", `window.player.stats.audioLeftOut === false && `+audioBytes+` > 0`, 30*time.Second, playerDebugJS)
		before := evalJS[int](t, tab, audioBytes)
		c, d := waitAdvance(t, tab, "playback with sound", 2, 30*time.Second)
		checkProgress(t, "with sound", c, d, 30)
		if after := evalJS[int](t, tab, audioBytes); after <= before {
			t.Errorf("with sound: audio bytes decoded %d -> %d", before, after)
		}
		if muted := evalJS[bool](t, tab, `document.querySelector('video').muted`); muted || d.Target < 0.15 {
			t.Errorf("with sound: muted %v, target %.3f s (want the audio floor, 0.15 s or more)", muted, d.Target)
		}
		t.Logf("%s: muted %+v; with sound %+v", mode, b, d)
	})
}
