package gateway_test

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// frameGapJS records the longest time between two presented video frames
// (requestVideoFrameCallback), from the moment it is installed.
const frameGapJS = `(() => {
  const v = document.querySelector('video');
  window.__maxGap = 0; window.__lastFrame = 0; window.__frames = 0; window.__gapAt = '';
  const cb = (now, md) => {
    if (window.__lastFrame && now - window.__lastFrame > window.__maxGap) {
      window.__maxGap = now - window.__lastFrame;
      window.__gapAt = 'media ' + (window.__lastMedia || 0).toFixed(3) + ' -> ' + md.mediaTime.toFixed(3) + ' inits ' + (window.player && window.player.inits) +
        ' width ' + md.width + ' frame ' + window.__frames;
    }
    window.__lastFrame = now; window.__lastMedia = md.mediaTime; window.__frames++;
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  return true;
})()`

// TestBrowserResolutionStepUp: a Chromium publisher without "keep resolution"
// starts small and steps its resolution up with a new SPS; the viewer gets a
// new init mid-stream and keeps playing across it: videoWidth changes and no
// presented-frame gap reaches 1 s.
func TestBrowserResolutionStepUp(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowser(t)

	// The viewer waits first, so it sees the publisher's first, small init.
	watchTab := newTab(t, browser, gw.base+"/watch.html?stream=stepup"+os.Getenv("STEPUP_Q"))
	waitJS(t, watchTab, "viewer waiting", `window.player && window.player.state === 'waiting'`, 30*time.Second, playerDebugJS)
	newTab(t, browser, gw.base+"/publish.html?stream=stepup&autostart=1&keepres=0&width=1280&height=720")
	waitPlaying(t, watchTab, 45*time.Second)
	first := readPlayer(t, watchTab)
	evalJS[bool](t, watchTab, frameGapJS)

	waitJS(t, watchTab, "resolution step-up (a new init and a new videoWidth)",
		fmt.Sprintf(`window.player.inits >= 2 && document.querySelector('video').videoWidth > %d`, first.Width),
		60*time.Second, playerDebugJS)
	switched := readPlayer(t, watchTab)
	_, after := waitAdvance(t, watchTab, "playback after the step-up", 2, 30*time.Second)
	gap := evalJS[float64](t, watchTab, `window.__maxGap`)
	frames := evalJS[int](t, watchTab, `window.__frames`)
	t.Logf("longest gap at %s", evalJS[string](t, watchTab, `window.__gapAt`))
	t.Logf("first %dx%d (inits %d) -> %dx%d (inits %d); longest gap between presented frames %.0f ms over %d frames",
		first.Width, first.Height, first.Inits, after.Width, after.Height, after.Inits, gap, frames)
	if gap >= 1000 {
		t.Errorf("playback froze for %.0f ms around the resolution change", gap)
	}
	checkProgress(t, "after the step-up", switched, after, 15)
	if after.State != "playing" {
		t.Errorf("player state %q after the step-up", after.State)
	}
}
