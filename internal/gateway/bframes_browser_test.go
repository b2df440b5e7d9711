package gateway_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/remux"
)

// collectSink keeps what a remux.Stream emits, as a viewer would get it.
type collectSink struct {
	mime string
	file bytes.Buffer
}

func (c *collectSink) WriteInit(in *remux.Init) {
	if c.mime == "" {
		c.mime = in.MIME
		c.file.Write(in.Data)
	}
}
func (c *collectSink) WriteSegment(s *remux.Segment) { c.file.Write(s.Data) }

// TestBrowserBFrames: remux output for an x264 stream with B-frames (RTP
// timestamps in presentation order, packets in decode order) plays in
// Chromium's MSE: every frame is decoded, none dropped, and the frames are
// shown at exactly the presentation times their timestamps give, in order.
func TestBrowserBFrames(t *testing.T) {
	root := repoRoot(t)
	aus, err := mediafile.ReadH264(filepath.Join(root, "remux/testdata/bframes_320x240.h264"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "remux/testdata/bframes_320x240.pts"))
	if err != nil {
		t.Fatal(err)
	}
	var slots []int
	for _, f := range strings.Fields(string(raw)) {
		var n int
		fmt.Sscan(f, &n)
		slots = append(slots, n)
	}
	if len(slots) != len(aus) {
		t.Fatalf("%d slots for %d frames", len(slots), len(aus))
	}
	sink := &collectSink{}
	s, err := remux.NewStream(remux.Config{Sink: sink, Video: &remux.CodecParams{MimeType: "video/H264"}})
	if err != nil {
		t.Fatal(err)
	}
	pay := &codecs.H264Payloader{}
	start := time.Unix(1000, 0)
	seq := uint16(1)
	for i, au := range aus {
		payloads := pay.Payload(1200, au.Data)
		for j, p := range payloads {
			s.PushVideo(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq,
				Timestamp: 1000 + uint32(slots[i])*3000, Marker: j == len(payloads)-1, SSRC: 1}, Payload: p},
				start.Add(time.Duration(i)*time.Second/30))
			seq++
		}
	}
	if st := s.Stats(); st.VideoFramesEmitted != uint64(len(aus)) || st.VideoOutOfOrder != 0 || st.VideoReordered == 0 {
		t.Fatalf("remux stats %+v", st)
	}

	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/media.mp4" {
			w.Write(sink.file.Bytes())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><video id="v" muted playsinline></video><script>
  const v = document.getElementById('v');
  window.__times = []; window.__done = false; window.__err = '';
  const onFrame = (now, meta) => { window.__times.push(meta.mediaTime); v.requestVideoFrameCallback(onFrame); };
  v.requestVideoFrameCallback(onFrame);
  v.addEventListener('ended', () => { window.__done = true; });
  v.addEventListener('error', () => { window.__err = 'video error ' + (v.error && v.error.message); });
  const ms = new MediaSource();
  v.src = URL.createObjectURL(ms);
  ms.addEventListener('sourceopen', async () => {
    try {
      const sb = ms.addSourceBuffer(%q);
      const data = await (await fetch('/media.mp4')).arrayBuffer();
      sb.appendBuffer(data);
      await new Promise((ok) => sb.addEventListener('updateend', ok, { once: true }));
      ms.endOfStream();
      await v.play();
    } catch (e) { window.__err = String(e); }
  });
</script>`, sink.mime)
	}))
	defer site.Close()

	browser := newBrowser(t)
	tab := newTab(t, browser, site.URL+"/")
	waitJS(t, tab, "the B-frame clip played to its end", `window.__done || window.__err !== ''`, 45*time.Second,
		`JSON.stringify({t: document.getElementById('v').currentTime, frames: window.__times.length, err: window.__err})`)
	if e := evalJS[string](t, tab, `window.__err`); e != "" {
		t.Fatal(e)
	}
	q := evalJS[map[string]float64](t, tab, `(() => { const q = document.getElementById('v').getVideoPlaybackQuality(); return {total: q.totalVideoFrames, dropped: q.droppedVideoFrames}; })()`)
	times := evalJS[[]float64](t, tab, `window.__times`)
	t.Logf("decoded %v, %d frames painted", q, len(times))
	if int(q["total"]) != len(aus) || q["dropped"] != 0 {
		t.Errorf("decoded %v frames, want %d and none dropped", q, len(aus))
	}
	// Painted frames (a headless compositor may skip some) are at the
	// presentation times the slots give, rising.
	want := map[int]bool{}
	for _, sl := range slots {
		want[sl] = true
	}
	const delay = 4500.0 / 90000 // one declared reorder frame
	if !sort.Float64sAreSorted(times) || len(times) < len(aus)/2 {
		t.Fatalf("painted media times %v", times)
	}
	for _, mt := range times {
		slot := (mt - delay) * 30
		n := int(slot + 0.5)
		if d := slot - float64(n); d > 0.01 || d < -0.01 || !want[n] {
			t.Fatalf("a frame painted at %.4f s, which is no frame's presentation time (slot %.3f)", mt, slot)
		}
	}
}
