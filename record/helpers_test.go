package record

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/remux"
)

// event is what a hub hands an Output.
type event struct {
	init *remux.Init
	seg  *remux.Segment
}

type collect struct{ events []event }

func (c *collect) WriteInit(i *remux.Init)       { c.events = append(c.events, event{init: i}) }
func (c *collect) WriteSegment(s *remux.Segment) { c.events = append(c.events, event{seg: s}) }

// realMedia remuxes secs seconds of the test files (H.264 + Opus, 30 fps,
// keyframes as the file has them) through the real remuxer; with big, the
// video switches to 1280x720 after the first half (a new init).
func realMedia(t testing.TB, secs int, big bool) []event {
	t.Helper()
	root := filepath.Join("..", "testdata", "media")
	small, err := mediafile.ReadH264(filepath.Join(root, "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	video := small
	if big {
		large, err := mediafile.ReadH264(filepath.Join(root, "h264_1280x720_30fps_2500k.h264"))
		if err != nil {
			t.Fatal(err)
		}
		video = append(loopUnits(small, secs*15), fromKeyframe(large)...)
	}
	video = loopUnits(video, secs*30)
	audio, err := mediafile.ReadOggOpus(filepath.Join(root, "opus_48k_stereo.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	c := &collect{}
	st, err := remux.NewStream(remux.Config{Video: &remux.CodecParams{MimeType: "video/H264"}, Audio: &remux.CodecParams{MimeType: "audio/opus"}, Sink: c})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_700_000_000, 0)
	vp := rtp.NewPacketizer(1200, 96, 1, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	ap := rtp.NewPacketizer(1200, 111, 2, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	ai := 0
	for i, au := range video {
		at := start.Add(time.Duration(i) * time.Second / 30)
		for _, p := range vp.Packetize(au.Data, 3000) {
			st.PushVideo(p, at)
		}
		for ; ai < len(audio)*1000 && time.Duration(ai)*20*time.Millisecond <= time.Duration(i)*time.Second/30; ai++ {
			for _, p := range ap.Packetize(audio[ai%len(audio)], 960) {
				st.PushAudio(p, start.Add(time.Duration(ai)*20*time.Millisecond))
			}
		}
	}
	return c.events
}

func loopUnits(units []mediafile.AccessUnit, n int) []mediafile.AccessUnit {
	units = fromKeyframe(units)
	out := make([]mediafile.AccessUnit, 0, n)
	for len(out) < n {
		out = append(out, units[:min(len(units), n-len(out))]...)
	}
	return out
}

func fromKeyframe(units []mediafile.AccessUnit) []mediafile.AccessUnit {
	for i, u := range units {
		if u.Keyframe {
			return units[i:]
		}
	}
	return nil
}

// fakeClock is a wall clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// play hands events to out as a hub would, the clock following the media
// (start + segment time), and ends with WriteEnd when end is set.
func play(clock *fakeClock, start time.Time, out Output, events []event, end bool) {
	for _, e := range events {
		if e.init != nil {
			out.WriteInit(e.init)
			continue
		}
		clock.set(start.Add(e.seg.Time))
		out.WriteSegment(e.seg)
	}
	if end {
		out.WriteEnd()
	}
}

// attachTo is an Attach that hands the recorder's Output to got.
func attachTo(got chan<- Output) Attach {
	return func(out Output) (func(), error) {
		got <- out
		return func() {}, nil
	}
}
