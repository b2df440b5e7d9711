package gateway_test

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// frameGapJS records the longest time between two presented video frames
// (requestVideoFrameCallback), from the moment it is installed: overall
// (__maxGap, where: __gapAt), and split by place: __switchGap is the longest
// gap that ends on a frame of another size than the one before it or within
// the 10 frames after such a change (a new init's decoder reconfiguration),
// __steadyGap the longest elsewhere (what the machine's load alone costs).
const frameGapJS = `(() => {
  const v = document.querySelector('video');
  window.__maxGap = 0; window.__lastFrame = 0; window.__frames = 0; window.__gapAt = '';
  window.__switchGap = 0; window.__steadyGap = 0; window.__switches = 0;
  let lastSize = '', sinceSwitch = Infinity;
  const cb = (now, md) => {
    const size = md.width + 'x' + md.height;
    if (lastSize && size !== lastSize) { window.__switches++; sinceSwitch = 0; } else sinceSwitch++;
    if (window.__lastFrame) {
      const gap = now - window.__lastFrame;
      if (gap > window.__maxGap) {
        window.__maxGap = gap;
        window.__gapAt = 'media ' + (window.__lastMedia || 0).toFixed(3) + ' -> ' + md.mediaTime.toFixed(3) + ' inits ' + (window.player && window.player.inits) +
          ' width ' + md.width + ' frame ' + window.__frames;
      }
      if (sinceSwitch <= 10) window.__switchGap = Math.max(window.__switchGap, gap);
      else window.__steadyGap = Math.max(window.__steadyGap, gap);
    }
    lastSize = size;
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
