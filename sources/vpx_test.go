//go:build cgo && vpx

package sources

import (
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// TestLocalSourceVP9: a local source with video_codec vp9 pushes VP9
// frames into the stream; a viewer's init has a vp09 profile 0 video
// track of the capture's size and an Opus track, and what it receives
// decodes with ffmpeg (every video sample, no error line).
func TestLocalSourceVP9(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	reg := newRegistry(t)
	src, err := Start(Config{
		Stream: "vp9",
		Capture: devices.Config{Video: devices.VideoTest, Audio: devices.AudioTest, VideoCodec: devices.VP9, Width: 320, Height: 240, FPS: 15,
			VideoBitrate: 300_000, KeyframeInterval: time.Second},
		Registry: reg, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v := watch(t, reg, "vp9")
	var ctl *viewerclient.Control
	var init []byte
	var segs [][]byte
	for len(segs) < 20 {
		m, err := v.Next(20 * time.Second)
		if err != nil {
			t.Fatalf("viewer: %v (init %v, %d segments)", err, ctl != nil, len(segs))
		}
		switch {
		case m.Control != nil && m.Control.Type == "init":
			if ctl != nil {
				t.Fatalf("a second init: %+v", m.Control)
			}
			ctl = m.Control
		case m.Control != nil && m.Control.Type != "waiting":
			t.Fatalf("unexpected %+v", m.Control)
		case m.Binary != nil && ctl != nil && init == nil:
			init = m.Binary
		case m.Binary != nil && ctl != nil:
			segs = append(segs, m.Binary)
		}
	}
	if len(ctl.Tracks) != 2 || ctl.Tracks[0].Kind != "video" || !strings.HasPrefix(ctl.Tracks[0].Codec, "vp09.00.") ||
		ctl.Tracks[0].Width != 320 || ctl.Tracks[0].Height != 240 || ctl.Tracks[1].Codec != "opus" {
		t.Fatalf("init tracks %+v", ctl.Tracks)
	}
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatal(err)
	}
	videoSamples := 0
	for i, seg := range segs {
		samples, err := fmp4check.ParseSegment(in, seg)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if i == 0 && (len(samples) == 0 || in.Tracks[samples[0].TrackID].Kind != "video" || !samples[0].Sync) {
			t.Fatalf("the first segment does not start with a video sync sample: %+v", samples)
		}
		for _, s := range samples {
			if in.Tracks[s.TrackID].Kind == "video" {
				videoSamples++
			}
		}
	}
	errs, frames, err := fmp4check.Decode(t.TempDir(), init, segs)
	if err != nil {
		t.Fatal(err)
	}
	if errs != "" || frames != videoSamples || frames < 5 {
		t.Fatalf("ffmpeg: %d frames decoded of %d video samples, errors:\n%s", frames, videoSamples, errs)
	}
}
