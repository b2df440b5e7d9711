package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// evalGesture evaluates expr as if the user had just clicked (getDisplayMedia
// and other gated APIs need that).
func evalGesture(t *testing.T, tab context.Context, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	gesture := func(p *runtime.EvaluateParams) { on := true; p.UserGesture = &on }
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr, gesture)); err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
}

const publisherDebugJS = `JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error),
  warning: String(window.publisher && window.publisher.warning), viewers: window.publisher && window.publisher.viewers,
  conn: window.publisher && window.publisher.pc && window.publisher.pc.connectionState})`

// TestPublisherSwitchSource: publish.html publishes the fake camera over WS signaling;
// while a viewer plays, the page switches to the canvas test pattern, to screen
// capture (getDisplayMedia) and back to the camera with other constraints
// (replaceTrack). The publish never drops (same
// RTCPeerConnection, state stays connected), the viewer keeps playing and sees the
// new sizes, and the page shows the live viewer count from the signaling socket.
func TestPublisherSwitchSource(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowser(t)
	pub := newTab(t, browser, gw.base+"/publish.html?stream=switch&autostart=1&width=640&height=360&fps=30")
	waitJS(t, pub, "publisher connected", `document.body.dataset.state === 'connected'`, 45*time.Second, publisherDebugJS)
	evalJS[bool](t, pub, `(() => { window.__pc = window.publisher.pc; window.__states = [];
	  window.publisher.addEventListener('change', () => window.__states.push(window.publisher.state)); return true; })()`)
	if sig := evalJS[string](t, pub, `window.publisher.signal`); sig != "ws" {
		t.Errorf("signal = %q, want ws (viewer counts come over the signaling socket)", sig)
	}

	tab := newTab(t, browser, gw.base+"/watch.html?stream=switch")
	waitPlaying(t, tab, 45*time.Second)
	waitAdvance(t, tab, "camera plays", 1, 30*time.Second)
	waitJS(t, pub, "viewer count 1 on the publish page", `window.publisher.viewers === 1 && document.getElementById('i-viewers').textContent === '1'`, 15*time.Second, publisherDebugJS)

	steps := []struct {
		what, js  string
		w, h      int
		wantLabel string
	}{
		{"canvas test pattern 320x240", `window.publisher.switchSource('video', {source: 'canvas', width: 320, height: 240, fps: 30})`, 320, 240, ""},
		// getDisplayMedia needs a user gesture; Chromium's fake UI picks a fake 800x600 screen.
		{"screen capture", `window.publisher.switchSource('video', {source: 'screen', fps: 30})`, 0, 0, "screen"},
		{"camera again at 480x270", `window.publisher.switchSource('video', {source: 'camera', cameraId: '', width: 480, height: 270, fps: 30})`, 480, 270, "fake"},
	}
	for _, s := range steps {
		evalGesture(t, pub, `window.__switched = false, (`+s.js+`).then(() => { window.__switched = true; }, (e) => { window.__switchErr = String(e); }), true`)
		waitJS(t, pub, "switched to "+s.what, `window.__switched === true || !!window.__switchErr`, 20*time.Second, publisherDebugJS)
		if e := evalJS[string](t, pub, `String(window.__switchErr || '')`); e != "" {
			t.Fatalf("switch to %s: %s", s.what, e)
		}
		label := evalJS[string](t, pub, `window.publisher.videoSender.track ? window.publisher.videoSender.track.label : ''`)
		if s.wantLabel != "" && !strings.Contains(strings.ToLower(label), s.wantLabel) {
			t.Errorf("%s: sender track label %q", s.what, label)
		}
		if s.w == 0 { // the size the capture has (the fake screen: 800x450 or 800x600)
			s.w = evalJS[int](t, pub, `window.publisher.videoSender.track.getSettings().width`)
			s.h = evalJS[int](t, pub, `window.publisher.videoSender.track.getSettings().height`)
		}
		waitJS(t, tab, "viewer shows "+s.what, fmt.Sprintf(`document.querySelector('video').videoWidth === %d && document.querySelector('video').videoHeight === %d`, s.w, s.h), 30*time.Second, playerDebugJS)
		a, b := waitAdvance(t, tab, "viewer plays "+s.what, 2, 30*time.Second)
		// Progress, not speed: a loaded machine's encoder drops frames (the fake
		// camera sends 20 fps; under load OpenH264 may send a quarter of them).
		checkProgress(t, s.what, a, b, 8)
		if b.State != "playing" {
			t.Errorf("%s: viewer state %q", s.what, b.State)
		}
		same := evalJS[bool](t, pub, `window.publisher.pc === window.__pc && window.publisher.pc.connectionState === 'connected' && window.publisher.state === 'connected'`)
		if !same {
			t.Fatalf("%s: the publish was dropped or renegotiated: %s", s.what, evalJS[string](t, pub, publisherDebugJS))
		}
	}
	if states := evalJS[[]string](t, pub, `window.__states`); len(states) > 0 {
		for _, st := range states {
			if st != "connected" {
				t.Errorf("publisher left connected during the switches: %v", states)
				break
			}
		}
	}

	// Codec picker: only what the gateway can take (never VP8), H.264 by default.
	codecs := evalJS[[]string](t, pub, `[...document.getElementById('codec').options].map((o) => o.value)`)
	if len(codecs) == 0 || codecs[0] != "h264" || evalJS[string](t, pub, `document.getElementById('codec').value`) != "h264" {
		t.Errorf("codec picker %v, want h264 first and selected", codecs)
	}
	for _, c := range codecs {
		if c != "h264" && c != "vp9" && c != "av1" {
			t.Errorf("codec picker offers %q", c)
		}
	}
	if c := evalJS[string](t, pub, `String(window.publisher.codec)`); c != "H.264" {
		t.Errorf("negotiated codec %q", c)
	}
	// Bitrate cap and mute apply to the running publish.
	evalJS[bool](t, pub, `window.publisher.setMaxBitrate(300000).then(() => { window.__br = window.publisher.videoSender.getParameters().encodings[0].maxBitrate; }), true`)
	waitJS(t, pub, "bitrate cap applied", `window.__br !== undefined`, 10*time.Second, publisherDebugJS)
	if br := evalJS[float64](t, pub, `window.__br`); br != 300000 {
		t.Errorf("maxBitrate after setMaxBitrate(300000) = %v", br)
	}
	if on := evalJS[bool](t, pub, `window.publisher.setMuted('audio', true), window.publisher.stream.getAudioTracks()[0].enabled`); on {
		t.Errorf("audio track still enabled after mute")
	}
	if txt := evalJS[string](t, pub, `document.getElementById('mute-audio').textContent`); txt != "Unmute mic" {
		t.Errorf("mute button says %q", txt)
	}
	a, b := waitAdvance(t, tab, "viewer plays after cap and mute", 1, 30*time.Second)
	checkProgress(t, "after cap and mute", a, b, 4)
	if st := evalJS[string](t, pub, `window.publisher.state`); st != "connected" {
		t.Errorf("publisher state %q after cap and mute", st)
	}
	// Track settings and capabilities are shown.
	info := evalJS[string](t, pub, `document.getElementById('i-vsettings').textContent + ' | ' + document.getElementById('i-vcaps').textContent`)
	if !strings.Contains(info, "480×270") || !strings.Contains(info, "width") {
		t.Errorf("track info %q", info)
	}
	screenshot(t, pub, "publish-switch.png")
	screenshot(t, tab, "watch-switch.png")
}

// TestPublisherErrors: a camera that does not exist gives a clear error, not a
// stack trace, and the page is usable again afterwards.
func TestPublisherErrors(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowser(t)
	pub := newTab(t, browser, gw.base+"/publish.html?stream=errs")
	waitJS(t, pub, "page ready", `!!window.publisher && document.body.dataset.state === 'idle'`, 20*time.Second, publisherDebugJS)
	evalJS[bool](t, pub, `window.publisher.start({source: 'camera', cameraId: 'no-such-camera', micId: 'none'}), true`)
	waitJS(t, pub, "failed with an error", `document.body.dataset.state === 'failed'`, 20*time.Second, publisherDebugJS)
	msg := evalJS[string](t, pub, `document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`)
	if !strings.Contains(msg, "camera") {
		t.Errorf("error shown: %q", msg)
	}
	// A codec the gateway refuses is reported with the gateway's reason: the test
	// pattern published as the only codec the gateway does not take is not possible
	// from the picker (no VP8), so publish the test pattern normally and check it works.
	evalJS[bool](t, pub, `window.publisher.start({source: 'canvas', micId: 'none', width: 320, height: 240}), true`)
	waitJS(t, pub, "test pattern publishes", `document.body.dataset.state === 'connected'`, 45*time.Second, publisherDebugJS)
	if e := evalJS[string](t, pub, `String(window.publisher.error)`); e != "null" {
		t.Errorf("error after a good publish: %s", e)
	}
}

// TestPublisherPermissionDenied: when the user denies camera access (here
// Chromium denies every permission prompt), the page fails with a message
// that says so and how to fix it, instead of a raw exception.
func TestPublisherPermissionDenied(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowserWith(t,
		chromedp.Flag("use-fake-ui-for-media-stream", false), // prompts are shown...
		chromedp.Flag("deny-permission-prompts", true),       // ...and denied
	)
	pub := newTab(t, browser, gw.base+"/publish.html?stream=denied")
	waitJS(t, pub, "page ready", `!!window.publisher && document.body.dataset.state === 'idle'`, 20*time.Second, publisherDebugJS)
	evalGesture(t, pub, `(window.publisher.start({source: 'camera'}), true)`)
	waitJS(t, pub, "failed with an error", `document.body.dataset.state === 'failed'`, 20*time.Second, publisherDebugJS)
	msg := evalJS[string](t, pub, `document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`)
	if !strings.Contains(msg, "Permission to use the camera") || !strings.Contains(msg, "denied") {
		t.Errorf("error shown: %q", msg)
	}
	if s := apiStream(t, gw.base, "denied"); s != nil {
		t.Errorf("stream after a denied publish: %v", s)
	}
}
