package gateway_test

import (
	"strings"
	"testing"
	"time"
)

// TestBrowserCodecs: headless Chromium publishes its fake camera and
// microphone with each video codec it can send (publish.html?codec=...), the
// gateway remuxes what it negotiated (the init names that codec, built from
// the bitstream), and a second Chromium tab plays it through MSE: time
// advances, frames decode, the picture has a size. One browser, one codec
// at a time (a loaded 2-core machine encodes slowly: progress, not speed, is
// asserted).
func TestBrowserCodecs(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowser(t)
	for _, tc := range []struct{ codec, prefix string }{
		{"vp9", "vp09."},
		{"av1", "av01."},
		{"h264", "avc1."},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			stream := "browser-" + tc.codec
			pubTab := newTab(t, browser, gw.base+"/publish.html?stream="+stream+"&autostart=1&codec="+tc.codec+"&width=640&height=360")
			waitJS(t, pubTab, "publisher connected", `document.body.dataset.state === 'connected'`, 60*time.Second,
				`JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error)})`)

			// The gateway remuxes the codec the browser was asked for.
			var codec string
			for deadline := time.Now().Add(30 * time.Second); codec == ""; {
				var streams []struct {
					Name   string `json:"name"`
					Tracks []struct {
						Kind  string `json:"kind"`
						Codec string `json:"codec"`
					} `json:"tracks"`
				}
				getJSON(t, gw.base+"/api/streams", &streams)
				for _, s := range streams {
					for _, tr := range s.Tracks {
						if s.Name == stream && tr.Kind == "video" {
							codec = tr.Codec
						}
					}
				}
				if codec == "" {
					if time.Now().After(deadline) {
						t.Fatalf("no video track on %s: %+v", stream, streams)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			if !strings.HasPrefix(codec, tc.prefix) {
				t.Fatalf("video codec %q, want %s...", codec, tc.prefix)
			}
			supported := evalJS[bool](t, pubTab, `MediaSource.isTypeSupported('video/mp4; codecs="`+codec+`,opus"')`)
			if !supported {
				t.Fatalf("Chromium's MSE refuses the codec string %q", codec)
			}

			watchTab := newTab(t, browser, gw.base+"/watch.html?stream="+stream+"&muted=0") // with sound: audio decoded too
			dbg := `JSON.stringify(` + playbackJS + `)`
			waitJS(t, watchTab, "playback started", `document.querySelector('video').currentTime > 0.2`, 60*time.Second, dbg)
			start := evalJS[playback](t, watchTab, playbackJS)
			waitJS(t, watchTab, "2 s of playback", `document.querySelector('video').currentTime >= `+ftoa(start.CurrentTime+2), 60*time.Second, dbg)
			end := evalJS[playback](t, watchTab, playbackJS)
			t.Logf("%s (%s): start %+v end %+v", tc.codec, codec, start, end)
			if end.Width <= 0 || end.Height <= 0 {
				t.Errorf("videoWidth x videoHeight = %dx%d", end.Width, end.Height)
			}
			if decoded := end.Total - start.Total; decoded < 8 {
				t.Errorf("only %d frames decoded over 2 s of playback", decoded)
			}
			if end.AudioBytes <= start.AudioBytes {
				t.Errorf("no audio decoded: %d -> %d", start.AudioBytes, end.AudioBytes)
			}
		})
	}
}
