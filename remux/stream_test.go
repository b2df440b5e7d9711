package remux

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

const (
	fileSlices    = "testdata/slices2_320x240.h264"
	fileResChange = "testdata/reschange_320_640.h264"
	fileOpus      = "testdata/sine_opus.ogg"
	fileBench     = "testdata/bench_1280x720.h264"
)

func h264Params() *CodecParams { return &CodecParams{MimeType: "video/H264", ClockRate: 90000} }
func opusParams() *CodecParams {
	return &CodecParams{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
}

type harness struct {
	sink *recSink
	s    *Stream
	kf   atomic.Int64
}

func newHarness(t *testing.T, video, audio bool) *harness {
	t.Helper()
	var v *CodecParams
	if video {
		v = h264Params()
	}
	return newCodecHarness(t, v, audio)
}

func loadAUs(t testing.TB, path string) []accessUnit {
	aus := splitAUs(readAnnexB(t, path))
	if len(aus) == 0 {
		t.Fatal("no access units")
	}
	return aus
}

// videoSamples returns the video samples (track 1) of a parse.
func videoSamples(ps []parsedSample) []parsedSample {
	var out []parsedSample
	for _, p := range ps {
		if p.track == 1 {
			out = append(out, p)
		}
	}
	return out
}

// checkVideoOutput checks one init's file against the AUs it must hold.
func checkVideoOutput(t *testing.T, data []byte, in *Init, want []accessUnit) {
	t.Helper()
	frames := make([]codecFrame, len(want))
	for i, au := range want {
		frames[i] = codecFrame{sample: avccSample(au), key: au.key}
	}
	checkCodecOutput(t, data, in, frames)
}

func TestH264Packetizations(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	for _, tc := range []struct {
		name string
		o    pktOpts
	}{
		{"fua-stapa-mtu1200-seqwrap-tswrap", pktOpts{mtu: 1200, seq: 65500, ts: 1<<32 - 3000}},
		{"single-nal", pktOpts{mtu: 60000, disableStap: true, seq: 100, ts: 12345}},
		{"small-mtu", pktOpts{mtu: 300, seq: 65535, ts: 1<<32 - 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true, false)
			pkts := packetizeH264(aus, tc.o)
			feed(h.s, pkts)
			inits, segs := h.sink.inits(), h.sink.segments()
			if len(inits) != 1 {
				t.Fatalf("%d inits", len(inits))
			}
			in := inits[0]
			if in.MIME != `video/mp4; codecs="avc1.42c00d"` {
				t.Errorf("MIME %q", in.MIME)
			}
			if len(in.Tracks) != 1 || in.Tracks[0].Width != 320 || in.Tracks[0].Height != 240 || in.Tracks[0].ID != 1 || in.Tracks[0].Kind != "video" {
				t.Errorf("tracks %+v", in.Tracks)
			}
			if len(segs) != len(aus) {
				t.Fatalf("%d segments for %d frames", len(segs), len(aus))
			}
			var prev time.Duration = -1
			for i, s := range segs {
				if s.Keyframe != aus[i].key || !s.HasVideo {
					t.Fatalf("segment %d: keyframe %v hasVideo %v", i, s.Keyframe, s.HasVideo)
				}
				if s.Time <= prev || s.Duration <= 0 {
					t.Fatalf("segment %d: time %v after %v, duration %v", i, s.Time, prev, s.Duration)
				}
				prev = s.Time
			}
			if segs[0].Time != 0 || segs[len(segs)-1].Time != time.Duration(len(aus)-1)*time.Second/30 {
				t.Fatalf("times %v..%v", segs[0].Time, segs[len(segs)-1].Time)
			}
			checkVideoOutput(t, h.sink.files()[0], in, aus)
			h.sink.checkImmutable(t)
			st := h.s.Stats()
			if st.VideoFramesEmitted != uint64(len(aus)) || st.VideoFramesDropped != 0 || st.VideoLost != 0 || st.InitsEmitted != 1 || st.Keyframes != 2 {
				t.Fatalf("stats %+v", st)
			}
			if st.VideoPackets != uint64(len(pkts)) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestH264FramesHaveSeveralSlices(t *testing.T) {
	// Guard the test data: the point of the file is several slices per frame.
	for _, au := range loadAUs(t, fileSlices) {
		n := 0
		for _, nal := range au.nals {
			if typ := nal[0] & 0x1f; typ == 1 || typ == 5 {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("frame with %d slices", n)
		}
	}
}

// TestLoss drops packets and checks that no broken frame is emitted, that
// output resumes at the next keyframe and that a keyframe is requested.
func TestLoss(t *testing.T) {
	aus := loadAUs(t, fileSlices) // keyframes at 0 and 30
	pktsOf := func() []timedPacket { return packetizeH264(aus, pktOpts{mtu: 1200, seq: 65000, ts: 1<<32 - 3000}) }
	firstOf := func(pkts []timedPacket, frame int) int {
		for i, p := range pkts {
			if p.frame == frame {
				return i
			}
		}
		t.Fatal("no such frame")
		return 0
	}
	lastOf := func(pkts []timedPacket, frame int) int { return firstOf(pkts, frame+1) - 1 }
	for _, tc := range []struct {
		name    string
		drop    func(p []timedPacket) int
		emitted []int // frame ranges [a,b) emitted
	}{
		{"mid-gop-first-packet", func(p []timedPacket) int { return firstOf(p, 10) }, []int{0, 10, 30, 60}},
		{"mid-gop-marker-packet", func(p []timedPacket) int { return lastOf(p, 12) }, []int{0, 12, 30, 60}},
		{"mid-gop-middle", func(p []timedPacket) int { return (firstOf(p, 20) + lastOf(p, 20) + 1) / 2 }, []int{0, 20, 30, 60}},
		{"keyframe-first-packet", func(p []timedPacket) int { return firstOf(p, 30) }, []int{0, 30}},
		{"keyframe-last-packet", func(p []timedPacket) int { return lastOf(p, 30) }, []int{0, 30}},
		{"before-keyframe", func(p []timedPacket) int { return lastOf(p, 29) }, []int{0, 29, 30, 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := pktsOf()
			d := tc.drop(pkts)
			if pkts[d].frame == 30 && d > firstOf(pkts, 30) && lastOf(pkts, 30) == firstOf(pkts, 30) {
				t.Fatal("keyframe fits one packet: test data unfit")
			}
			pkts = append(pkts[:d:d], pkts[d+1:]...)
			h := newHarness(t, true, false)
			feed(h.s, pkts)
			var want []accessUnit
			for i := 0; i < len(tc.emitted); i += 2 {
				want = append(want, aus[tc.emitted[i]:tc.emitted[i+1]]...)
			}
			files := h.sink.files()
			if len(files) != 1 {
				t.Fatalf("%d inits", len(files))
			}
			checkVideoOutput(t, files[0], h.sink.inits()[0], want)
			st := h.s.Stats()
			if st.VideoLost != 1 || st.VideoFramesEmitted != uint64(len(want)) || st.VideoFramesDropped != uint64(len(aus)-len(want)) {
				t.Fatalf("stats %+v", st)
			}
			if h.kf.Load() == 0 || st.KeyframeRequests != uint64(h.kf.Load()) {
				t.Fatalf("keyframe requests: callback %d, stats %d", h.kf.Load(), st.KeyframeRequests)
			}
		})
	}
}

// TestStartMidStream joins after the first keyframe: frames are dropped and
// keyframes requested until the next keyframe.
func TestStartMidStream(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	pkts := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1})
	var i int
	for i = range pkts {
		if pkts[i].frame == 5 {
			break
		}
	}
	h := newHarness(t, true, false)
	feed(h.s, pkts[i+1:]) // also starts in the middle of frame 5
	if got := h.kf.Load(); got < 25 {
		t.Fatalf("%d keyframe requests", got)
	}
	checkVideoOutput(t, h.sink.files()[0], h.sink.inits()[0], aus[30:])
	if segs := h.sink.segments(); segs[0].Time != 0 {
		t.Fatalf("first segment at %v", segs[0].Time)
	}
}

func TestReorderAndDuplicates(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	base := packetizeH264(aus, pktOpts{mtu: 1200, seq: 65530, ts: 1<<32 - 3000})
	ref := newHarness(t, true, false)
	feed(ref.s, base)
	refSegs := ref.sink.segments()

	rng := rand.New(rand.NewSource(1))
	for _, tc := range []struct {
		name string
		mod  func([]timedPacket) []timedPacket
	}{
		{"reverse-runs-of-6", func(p []timedPacket) []timedPacket {
			out := append([]timedPacket(nil), p...)
			for i := 1; i+6 <= len(out); i += 6 { // keep the first packet first
				for a, b := i, i+5; a < b; a, b = a+1, b-1 {
					out[a], out[b] = out[b], out[a]
				}
			}
			return out
		}},
		{"late-by-6-packets", func(p []timedPacket) []timedPacket {
			out := append([]timedPacket(nil), p...)
			for i := 10; i+7 < len(out); i += 20 {
				x := out[i]
				copy(out[i:], out[i+1:i+7])
				out[i+6] = x
			}
			return out
		}},
		{"duplicates", func(p []timedPacket) []timedPacket {
			var out []timedPacket
			for i, x := range p {
				out = append(out, x, x)
				if i > 20 && i%7 == 0 {
					out = append(out, p[i-20]) // old duplicate
				}
			}
			return out
		}},
		{"random-shuffle-window-6", func(p []timedPacket) []timedPacket {
			out := []timedPacket{p[0]}
			for _, i := range shuffleBounded(rng, len(p)-1, 6) {
				out = append(out, p[i+1])
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true, false)
			mod := tc.mod(base)
			// Packets arrive in the new order: arrival times by position.
			for i := range mod {
				mod[i].arrival = base[min(i, len(base)-1)].arrival
			}
			feed(h.s, mod)
			segs := h.sink.segments()
			if len(segs) != len(refSegs) {
				t.Fatalf("%d segments, want %d (stats %+v)", len(segs), len(refSegs), h.s.Stats())
			}
			for i := range segs {
				if !bytes.Equal(segs[i].Data, refSegs[i].Data) || segs[i].Time != refSegs[i].Time {
					t.Fatalf("segment %d differs from in-order output", i)
				}
			}
			st := h.s.Stats()
			if st.VideoLost != 0 || st.VideoFramesDropped != 0 {
				t.Fatalf("stats %+v", st)
			}
			if tc.name == "duplicates" && st.Duplicates == 0 {
				t.Fatal("duplicates not counted")
			}
		})
	}
}

func TestResolutionChange(t *testing.T) {
	aus := loadAUs(t, fileResChange)
	h := newHarness(t, true, false)
	feed(h.s, packetizeH264(aus, pktOpts{mtu: 1200, seq: 40000, ts: 1<<32 - 6000}))
	inits := h.sink.inits()
	if len(inits) != 2 {
		t.Fatalf("%d inits", len(inits))
	}
	a, b := inits[0].Tracks[0], inits[1].Tracks[0]
	if a.Width != 320 || a.Height != 240 || b.Width != 640 || b.Height != 360 {
		t.Fatalf("sizes %dx%d, %dx%d", a.Width, a.Height, b.Width, b.Height)
	}
	if a.Codec != "avc1.42c015" || b.Codec != "avc1.42c01e" {
		t.Fatalf("codecs %s, %s", a.Codec, b.Codec)
	}
	if !strings.Contains(inits[1].MIME, b.Codec) {
		t.Fatalf("MIME %s", inits[1].MIME)
	}
	// The init comes right before the keyframe that needs it.
	var n1 int
	for i, e := range h.sink.events {
		if e == any(inits[1]) {
			if s, ok := h.sink.events[i+1].(*Segment); !ok || !s.Keyframe {
				t.Fatal("second init not followed by a keyframe segment")
			}
			n1 = i - 1
		}
	}
	files := h.sink.files()
	checkVideoOutput(t, files[0], inits[0], aus[:n1])
	checkVideoOutput(t, files[1], inits[1], aus[n1:])
	// One timeline across inits.
	segs := h.sink.segments()
	for i := 1; i < len(segs); i++ {
		if d := segs[i].Time - segs[i-1].Time - time.Second/30; d < -time.Microsecond || d > time.Microsecond {
			t.Fatalf("segment %d: time %v after %v", i, segs[i].Time, segs[i-1].Time)
		}
	}
	if len(segs) != len(aus) {
		t.Fatalf("%d segments, %d frames", len(segs), len(aus))
	}
}

func TestAudioVideoMuxed(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	opus := readOggOpus(t, fileOpus)
	start := time.Unix(5000, 0)
	// Audio starts 200 ms before video: those samples precede the first
	// keyframe and are dropped. Timestamps start near the 32-bit wrap.
	vp := packetizeH264(aus, pktOpts{mtu: 1200, seq: 65000, ts: 1<<32 - 3000, start: start.Add(200 * time.Millisecond)})
	ap := packetizeOpus(opus, 65530, 1<<32-2000, start)
	h := newHarness(t, true, true)
	feed(h.s, mergeByArrival(vp, ap))

	inits := h.sink.inits()
	if len(inits) != 1 {
		t.Fatalf("%d inits", len(inits))
	}
	in := inits[0]
	if in.MIME != `video/mp4; codecs="avc1.42c00d,opus"` || len(in.Tracks) != 2 ||
		in.Tracks[1].ID != 2 || in.Tracks[1].Kind != "audio" || in.Tracks[1].Channels != 2 || in.Tracks[1].SampleRate != 48000 {
		t.Fatalf("init %q %+v", in.MIME, in.Tracks)
	}
	segs := h.sink.segments()
	if len(segs) != len(aus) {
		// Video arrives every 33 ms, so audio never waits 60 ms alone.
		t.Fatalf("%d segments, %d frames", len(segs), len(aus))
	}
	data := h.sink.files()[0]
	ps := parseMP4(t, data, in)
	var audio []parsedSample
	for _, p := range ps {
		if p.track == 2 {
			audio = append(audio, p)
		}
	}
	// Every segment starts with its video sample.
	if ps[0].track != 1 {
		t.Fatal("first sample is not video")
	}
	// Audio is continuous and aligned with video: the first audio sample is
	// within one frame of the first video frame (time 0).
	if len(audio) < 80 {
		t.Fatalf("%d audio samples", len(audio))
	}
	if audio[0].dts > 48000/30 {
		t.Fatalf("first audio at %d (48 kHz), video at 0", audio[0].dts)
	}
	for i := 1; i < len(audio); i++ {
		if audio[i].dts != audio[i-1].dts+uint64(audio[i-1].dur) {
			t.Fatalf("audio sample %d at %d, previous ends %d", i, audio[i].dts, audio[i-1].dts+uint64(audio[i-1].dur))
		}
	}
	// Each segment's audio is close to its video frame.
	for _, s := range segs {
		if !s.HasVideo {
			t.Fatal("audio-only segment while video flows")
		}
	}
	st := h.s.Stats()
	if st.AudioSamplesDropped < 8 || st.AudioSamplesEmitted != uint64(len(audio)) {
		t.Fatalf("stats %+v, %d audio samples", st, len(audio))
	}
	path := ffmpegDecode(t, data)
	if n := ffprobeCount(t, path, "v:0", false); n != len(aus) {
		t.Fatalf("%d video frames", n)
	}
	if n := ffprobeCount(t, path, "a:0", true); n != len(audio) {
		t.Fatalf("%d audio packets, want %d", n, len(audio))
	}
	// Video and audio of the same wall-clock instant share a decode time:
	// audio packet k arrived at k*20 ms, video frame 0 at 200 ms.
	lastA := audio[len(audio)-1]
	at := time.Duration(lastA.dts) * time.Second / 48000
	want := time.Duration(len(opus)-1)*20*time.Millisecond - 200*time.Millisecond
	if d := at - want; d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("last audio at %v, want %v", at, want)
	}
}

func TestAudioOnly(t *testing.T) {
	opus := readOggOpus(t, fileOpus)
	h := newHarness(t, false, true)
	feed(h.s, packetizeOpus(opus, 65000, 1<<32-500, time.Unix(1, 0)))
	inits := h.sink.inits()
	if len(inits) != 1 || inits[0].MIME != `audio/mp4; codecs="opus"` || inits[0].Tracks[0].ID != 1 {
		t.Fatalf("inits %+v", inits)
	}
	segs := h.sink.segments()
	if len(segs) != len(opus)/2 {
		t.Fatalf("%d segments for %d packets", len(segs), len(opus))
	}
	for i, s := range segs {
		if !s.Keyframe || s.HasVideo || s.Duration != 40*time.Millisecond || s.Time != time.Duration(i)*40*time.Millisecond {
			t.Fatalf("segment %d: %+v", i, s)
		}
	}
	data := h.sink.files()[0]
	ps := parseMP4(t, data, inits[0])
	if len(ps) != len(opus)/2*2 {
		t.Fatalf("%d samples", len(ps))
	}
	for i, p := range ps {
		if !bytes.Equal(p.data, opus[i]) || p.dur != 960 || p.dts != uint64(960*i) || p.flags != flagsSync {
			t.Fatalf("sample %d: dts %d dur %d", i, p.dts, p.dur)
		}
	}
	ffmpegDecode(t, data)
}

// TestAudioLossIsFilled: lost audio is covered with empty Opus frames so the
// track stays continuous, and the result still decodes cleanly.
func TestAudioLossIsFilled(t *testing.T) {
	opus := readOggOpus(t, fileOpus)
	pkts := packetizeOpus(opus, 10, 0, time.Unix(1, 0))
	pkts = append(pkts[:20:20], pkts[23:]...) // lose 3 packets
	h := newHarness(t, false, true)
	feed(h.s, pkts)
	data := h.sink.files()[0]
	ps := parseMP4(t, data, h.sink.inits()[0])
	for i := 1; i < len(ps); i++ {
		if ps[i].dts != ps[i-1].dts+uint64(ps[i-1].dur) {
			t.Fatalf("hole before sample %d", i)
		}
	}
	if st := h.s.Stats(); st.AudioFillers != 3 || st.AudioLost != 3 {
		t.Fatalf("stats %+v", st)
	}
	if ps[len(ps)-1].dts != uint64(960*(len(ps)-1)) {
		t.Fatal("audio drifted")
	}
	ffmpegDecode(t, data)
}

// TestVideoPauseFlushesAudio: with video stalled, audio goes out alone after
// about 60 ms.
func TestVideoPauseFlushesAudio(t *testing.T) {
	aus := loadAUs(t, fileSlices)[:5]
	opus := readOggOpus(t, fileOpus)[:50] // 1 s
	start := time.Unix(100, 0)
	vp := packetizeH264(aus, pktOpts{mtu: 1200, start: start})
	ap := packetizeOpus(opus, 0, 0, start.Add(5*time.Millisecond))
	h := newHarness(t, true, true)
	feed(h.s, mergeByArrival(vp, ap))
	segs := h.sink.segments()
	var alone int
	for _, s := range segs {
		if !s.HasVideo {
			alone++
			if s.Keyframe || s.Duration <= 0 || s.Duration > 100*time.Millisecond {
				t.Fatalf("audio-only segment %+v", s)
			}
		}
	}
	if alone < 8 {
		t.Fatalf("%d audio-alone segments", alone)
	}
	data := h.sink.files()[0]
	parseMP4(t, data, h.sink.inits()[0])
	ffmpegDecode(t, data)
}

func TestNewStreamErrors(t *testing.T) {
	sink := &recSink{}
	for _, cfg := range []Config{
		{Sink: sink, Video: &CodecParams{MimeType: "video/VP8", ClockRate: 90000}},
		{Sink: sink, Video: &CodecParams{MimeType: "video/VP9", ClockRate: 48000}},
		{Sink: sink, Video: &CodecParams{MimeType: "video/H266", ClockRate: 90000}},
		{Sink: sink, Audio: &CodecParams{MimeType: "audio/PCMU", ClockRate: 8000}},
		{Sink: sink, Audio: &CodecParams{MimeType: "audio/opus", ClockRate: 16000}},
	} {
		if _, err := NewStream(cfg); !errors.Is(err, ErrUnsupportedCodec) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	if _, err := NewStream(Config{Sink: sink}); err == nil || errors.Is(err, ErrUnsupportedCodec) {
		t.Error("empty config accepted")
	}
	if _, err := NewStream(Config{Video: h264Params()}); err == nil {
		t.Error("nil sink accepted")
	}
	if _, err := NewStream(Config{Sink: sink, Video: &CodecParams{MimeType: "VIDEO/h264"}, Audio: &CodecParams{MimeType: "audio/OPUS"}}); err != nil {
		t.Error(err)
	}
}

func TestConcurrentPush(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	opus := readOggOpus(t, fileOpus)
	start := time.Unix(100, 0)
	vp := packetizeH264(aus, pktOpts{mtu: 1200, start: start})
	ap := packetizeOpus(opus, 0, 0, start)
	h := newHarness(t, true, true)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); feed(h.s, vp) }()
	go func() { defer wg.Done(); feed(h.s, ap) }()
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			_ = h.s.Stats()
		}
	}()
	wg.Wait()
	st := h.s.Stats()
	if st.VideoFramesEmitted != uint64(len(aus)) {
		t.Fatalf("stats %+v", st)
	}
	h.sink.checkImmutable(t)
}

func TestOpusDuration(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want uint32
	}{
		{[]byte{0xfc, 1, 2}, 960},                           // CELT FB 20 ms, code 0
		{[]byte{0xf8}, 960},                                 // TOC only: one empty frame
		{[]byte{0x0b << 3, 1, 2}, 2880},                     // SILK WB 60 ms
		{[]byte{0x10<<3 | 1, 1, 2}, 240},                    // CELT NB 2.5 ms x2
		{[]byte{0x0d<<3 | 2, 1, 5, 6}, 1920},                // Hybrid 20 ms x2, code 2
		{[]byte{0x1f<<3 | 3, 3, 1, 2, 3}, 2880},             // CELT FB 20ms x3 CBR
		{[]byte{0x1f<<3 | 3, 0x83, 1, 1, 2, 3}, 2880},       // VBR
		{[]byte{0x1f<<3 | 3, 0x43, 2, 1, 2, 3, 0, 0}, 2880}, // padding
	} {
		got, err := opusDuration(tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%x: %d, %v; want %d", tc.p, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{
		nil,
		{0xfc | 1, 1},               // code 1, odd length
		{0xfc | 2},                  // code 2 without length
		{0xfc | 2, 5, 1},            // first frame longer than the packet
		{0xfc | 3},                  // no frame count
		{0xfc | 3, 0},               // zero frames
		{0x0b<<3 | 3, 3, 0, 0, 0},   // 3 x 60 ms > 120 ms
		{0xfc | 3, 0x42, 200, 1, 2}, // padding beyond the packet
		{0xfc | 3, 0x82, 9, 1},      // VBR frame beyond the packet
	} {
		if d, err := opusDuration(bad); err == nil {
			t.Errorf("%x accepted (%d)", bad, d)
		}
	}
}

// TestOversizePayload: a payload over the copy limit counts as lost data.
func TestOversizePayload(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	pkts := packetizeH264(aus, pktOpts{mtu: 1200})
	for i := range pkts {
		if pkts[i].frame == 10 {
			big := *pkts[i].pkt
			big.Payload = make([]byte, maxRTPPayload+1)
			big.Payload[0] = 1 // a plausible non-IDR slice header
			pkts[i].pkt = &big
			break
		}
	}
	h := newHarness(t, true, false)
	feed(h.s, pkts)
	checkVideoOutput(t, h.sink.files()[0], h.sink.inits()[0], append(aus[:10:10], aus[30:]...))
}

// TestFuzzSeedsProduceOutput keeps the stream fuzz seeds meaningful: they
// must reach the init and segment code.
func TestFuzzSeedsProduceOutput(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	opus := readOggOpus(t, fileOpus)
	vp := packetizeH264(aus[:4], pktOpts{mtu: 200, start: time.Unix(0, 0)})
	ap := packetizeOpus(opus[:8], 0, 0, time.Unix(0, 0))
	data := encodeRecords(mergeByArrival(vp, ap))
	sink := &checkingSink{t: t}
	s, _ := NewStream(Config{Video: h264Params(), Audio: opusParams(), Sink: sink})
	var seq [2]uint16
	ts := [2]uint32{1<<32 - 5000, 1<<32 - 3000}
	now := time.Unix(1000, 0)
	for len(data) >= 6 {
		k := int(data[0] & 1)
		seq[k] += uint16(int8(data[1]))
		ts[k] += uint32(int32(int16(uint16(data[2])<<8|uint16(data[3]))) * 64)
		now = now.Add(time.Duration(data[4]) * time.Millisecond)
		l := min(int(data[5]), len(data)-6)
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: seq[k], Timestamp: ts[k], Marker: data[0]&2 != 0}, Payload: data[6 : 6+l]}
		data = data[6+l:]
		if k == 0 {
			s.PushVideo(p, now)
		} else {
			s.PushAudio(p, now)
		}
	}
	if st := s.Stats(); st.InitsEmitted != 1 || st.VideoFramesEmitted != 4 || st.AudioSamplesEmitted == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// continuousSamples parses the harness's first (only) init and its
// segments with fmp4check, checks there are want samples and that MSE would
// take the decode timeline as continuous, and returns the init, the whole
// file and the samples.
func continuousSamples(t *testing.T, h *harness, want int) (*Init, []byte, []fmp4check.Sample) {
	t.Helper()
	in := h.sink.inits()[0]
	file := h.sink.files()[0]
	fin, err := fmp4check.ParseInit(file[:len(in.Data)])
	if err != nil {
		t.Fatal(err)
	}
	var samples []fmp4check.Sample
	for _, seg := range h.sink.segments() {
		ss, err := fmp4check.ParseSegment(fin, seg.Data)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, ss...)
	}
	if len(samples) != want {
		t.Fatalf("%d samples for %d frames", len(samples), want)
	}
	if err := fmp4check.CheckMSEContinuity(samples); err != nil {
		t.Fatal(err)
	}
	return in, file, samples
}

// TestFrameGapsKeepDecodeContinuity: a timestamp gap longer than
// maxHoleTicks (a paused publisher; shorter skips are closed, see
// TestFrameSkips). Presentation times keep the gap; decode times stay
// contiguous inside a GOP (MSE drops frames until the next keyframe after a
// decode-time jump of more than twice a sample's duration) and meet
// presentation time again at the next keyframe.
func TestFrameGapsKeepDecodeContinuity(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	pkts := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1, ts: 1000})
	const gapAt, gapTicks = 5, 10 * 3000 // frames 5.. arrive 10 frame intervals late
	if gapTicks <= maxHoleTicks {
		t.Fatal("the gap would be closed")
	}
	for i := range pkts {
		if pkts[i].frame >= gapAt {
			pkts[i].pkt.Timestamp += gapTicks
			pkts[i].arrival = pkts[i].arrival.Add(10 * time.Second / 30)
		}
	}
	h := newHarness(t, true, false)
	feed(h.s, pkts)
	in, file, samples := continuousSamples(t, h, len(aus))
	for i, s := range samples {
		pts := int64(s.DecodeTime) + s.Offset
		want := int64(i) * 3000
		if i >= gapAt {
			want += gapTicks
		}
		if pts != want {
			t.Fatalf("frame %d: presentation time %d, want %d", i, pts, want)
		}
		if s.Sync && s.Offset != 0 {
			t.Fatalf("keyframe %d: composition offset %d, want 0", i, s.Offset)
		}
	}
	if samples[gapAt].Offset == 0 {
		t.Fatalf("frame after the gap has no composition offset: %+v", samples[gapAt])
	}
	checkVideoOutput(t, file, in, aus)
}

// Timestamps out of decode order in a stream whose SPS declares no
// reordering (B-frames from an encoder that does not say so): such frames
// are counted and presented in decode order; the output still rises and
// decodes.
func TestOutOfOrderTimestamps(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	pkts := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1, ts: 1000})
	// Decode order I P B B P B B ... carries presentation slots 0 3 1 2 6 4 5 ...
	slot := func(i int) int {
		if i == 0 {
			return 0
		}
		g, k := (i-1)/3, (i-1)%3
		return 3*g + [3]int{3, 1, 2}[k]
	}
	backwards, newest := 0, 0 // frames older than the newest one before them
	for i := range aus {
		if slot(i) < newest {
			backwards++
		}
		newest = max(newest, slot(i))
	}
	for i := range pkts {
		pkts[i].pkt.Timestamp = 1000 + uint32(slot(pkts[i].frame))*3000
	}
	h := newHarness(t, true, false)
	feed(h.s, pkts)
	if got := h.s.Stats().VideoOutOfOrder; got != uint64(backwards) || backwards == 0 {
		t.Fatalf("VideoOutOfOrder = %d, want %d", got, backwards)
	}
	_, file, samples := continuousSamples(t, h, len(aus))
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if int64(b.DecodeTime)+b.Offset <= int64(a.DecodeTime)+a.Offset {
			t.Fatalf("frame %d is presented before frame %d", i, i-1)
		}
	}
	// Every frame decodes (ffprobe: ffmpeg's null muxer would reject the
	// frames presented one tick apart after rounding them to the frame rate).
	ffmpegRequired(t)
	path := filepath.Join(t.TempDir(), "out.mp4")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := ffprobeCount(t, path, "v:0", false); n != len(aus) {
		t.Fatalf("ffprobe decoded %d frames, want %d", n, len(aus))
	}
}

// fileBFrames is x264 main profile with 2 B-frames (I P B B P B B ...,
// VUI max_num_reorder_frames 1), and the presentation slot of each frame.
const fileBFrames = "testdata/bframes_320x240.h264"

func loadSlots(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var slots []int
	for _, f := range strings.Fields(string(b)) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			t.Fatalf("%s: %q", path, f)
		}
		slots = append(slots, n)
	}
	return slots
}

// TestBFrames: a publisher with B-frames (RTP timestamps are presentation
// times, packets come in decode order). Every frame is presented at its own
// timestamp, decode times rise with composition offsets >= 0, audio moves
// with video (one origin), and ffmpeg decodes the frames in the same order
// and with the same pictures as the original file.
func TestBFrames(t *testing.T) {
	aus := loadAUs(t, fileBFrames)
	slots := loadSlots(t, fileBFrames[:len(fileBFrames)-len(".h264")]+".pts")
	if len(slots) != len(aus) {
		t.Fatalf("%d slots for %d frames", len(slots), len(aus))
	}
	start := time.Unix(1000, 0)
	vp := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1, ts: 5000, start: start})
	for i := range vp {
		vp[i].pkt.Timestamp = 5000 + uint32(slots[vp[i].frame])*3000
	}
	opus := readOggOpus(t, fileOpus)
	ap := packetizeOpus(opus, 100, 7000, start)
	h := newHarness(t, true, true)
	feed(h.s, mergeByArrival(vp, ap))

	st := h.s.Stats()
	bframes := 0
	for i := range slots {
		if i > 0 && slots[i] < slots[i-1] {
			bframes++
		}
	}
	// B B after each P: the first of each pair is older than the P before
	// it, the second older than that P too.
	if st.VideoOutOfOrder != 0 || st.VideoReordered == 0 || st.VideoFramesEmitted != uint64(len(aus)) {
		t.Fatalf("stats %+v", st)
	}
	in := h.sink.inits()[0]
	file := h.sink.files()[0]
	ps := parseMP4(t, file, in)
	video := videoSamples(ps)
	if len(video) != len(aus) {
		t.Fatalf("%d video samples for %d frames", len(video), len(aus))
	}
	const delay = 4500 // max_num_reorder_frames 1 x reorderFrameTicks
	var lastDTS int64 = -1
	for i, s := range video {
		dts, pts := int64(s.dts), int64(s.dts)+int64(s.cto)
		if want := int64(slots[i])*3000 + delay; pts != want {
			t.Fatalf("frame %d: presented at %d, want %d (slot %d)", i, pts, want, slots[i])
		}
		if dts <= lastDTS || s.cto < 0 {
			t.Fatalf("frame %d: decode time %d after %d, composition offset %d", i, dts, lastDTS, s.cto)
		}
		if s.dur != 3000 && i > 3 {
			t.Fatalf("frame %d: duration %d, want the frame interval 3000", i, s.dur)
		}
		lastDTS = dts
	}
	// Audio shares the shifted origin: packet k arrived at k*20 ms, video
	// frame 0 at 0, so audio sample k is presented at k*20 ms + delay.
	var audio []parsedSample
	for _, p := range ps {
		if p.track == 2 {
			audio = append(audio, p)
		}
	}
	// (Audio that came before the first video frame was complete is dropped.)
	if len(audio) == 0 {
		t.Fatal("no audio")
	}
	if at := int64(audio[0].dts) - delay*48000/90000; at < 0 || at%960 != 0 || at > 3*960 {
		t.Fatalf("first audio sample at %d (48 kHz): want %d + k*960", audio[0].dts, delay*48000/90000)
	}

	// ffmpeg shows the same pictures in the same order as the original.
	ffmpegRequired(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.mp4")
	if err := os.WriteFile(out, file, 0o644); err != nil {
		t.Fatal(err)
	}
	md5s := func(args ...string) []string {
		t.Helper()
		cmd := exec.Command("ffmpeg", append(append([]string{"-nostdin", "-v", "error"}, args...), "-map", "0:v", "-f", "framemd5", "-")...)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("ffmpeg %v: %v", args, err)
		}
		var sums []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Split(l, ","); len(f) == 6 && !strings.HasPrefix(l, "#") {
				sums = append(sums, strings.TrimSpace(f[5]))
			}
		}
		return sums
	}
	got, want := md5s("-i", out), md5s("-f", "h264", "-i", fileBFrames)
	if len(got) != len(aus) || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("decoded pictures differ from the original's:\n got %d %v\nwant %d %v", len(got), got, len(want), want)
	}
	ffmpegDecode(t, file) // and no error line
}
