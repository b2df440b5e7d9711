package remux

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// TestCodecPacketizations sends each codec's real encoded file through a
// pion payloader (large and small MTU, sequence number and timestamp wrap)
// and checks the init (codec string, size, sample entry), the sample bytes,
// the sync flags, the timeline and that ffmpeg decodes every frame.
func TestCodecPacketizations(t *testing.T) {
	for _, cc := range codecCases {
		for _, o := range []struct {
			name string
			o    pktOpts
		}{
			{"mtu1200-wrap", pktOpts{mtu: 1200, seq: 65500, ts: 1<<32 - 3000}},
			{"mtu300", pktOpts{mtu: 300, seq: 7, ts: 12345}},
		} {
			t.Run(cc.name+"/"+o.name, func(t *testing.T) {
				frames := cc.load(t, cc.file)
				h := newCodecHarness(t, cc.params, false)
				pkts := packetizeFrames(frames, cc.pay(), o.o)
				feed(h.s, pkts)
				inits, segs := h.sink.inits(), h.sink.segments()
				if len(inits) != 1 {
					t.Fatalf("%d inits (stats %+v)", len(inits), h.s.Stats())
				}
				in := inits[0]
				if in.MIME != `video/mp4; codecs="`+cc.codec+`"` {
					t.Errorf("MIME %q, want codec %q", in.MIME, cc.codec)
				}
				tr := in.Tracks[0]
				if len(in.Tracks) != 1 || tr.Width != cc.width || tr.Height != cc.height || tr.Codec != cc.codec || tr.ID != 1 {
					t.Errorf("tracks %+v", in.Tracks)
				}
				fin, err := fmp4check.ParseInit(in.Data)
				if err != nil {
					t.Fatal(err)
				}
				if fin.Tracks[1].Codec != cc.sample {
					t.Errorf("sample entry %q, want %q", fin.Tracks[1].Codec, cc.sample)
				}
				if len(segs) != len(frames) {
					t.Fatalf("%d segments for %d frames (stats %+v)", len(segs), len(frames), h.s.Stats())
				}
				for i, s := range segs {
					if s.Keyframe != frames[i].key || s.Time != time.Duration(i)*time.Second/30 {
						t.Fatalf("segment %d: keyframe %v time %v", i, s.Keyframe, s.Time)
					}
				}
				checkCodecOutput(t, h.sink.files()[0], in, frames)
				st := h.s.Stats()
				if st.VideoFramesDropped != 0 || st.VideoLost != 0 || st.Keyframes != 2 {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

// TestCodecParameterChange: the stream switches to another resolution at a
// keyframe (new VP9 frame size, new AV1 sequence header, new H.265
// VPS/SPS/PPS): a second init right before that keyframe, both files decode,
// one continuous timeline.
func TestCodecParameterChange(t *testing.T) {
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			a := cc.load(t, cc.file)
			b := cc.load(t, cc.small)
			frames := append(append([]codecFrame(nil), a...), b...)
			h := newCodecHarness(t, cc.params, false)
			feed(h.s, packetizeFrames(frames, cc.pay(), pktOpts{mtu: 1200, seq: 60000, ts: 1<<32 - 6000}))
			inits := h.sink.inits()
			if len(inits) != 2 {
				t.Fatalf("%d inits", len(inits))
			}
			if w, ht := inits[1].Tracks[0].Width, inits[1].Tracks[0].Height; w != 160 || ht != 120 {
				t.Fatalf("second init %dx%d", w, ht)
			}
			if !strings.HasPrefix(inits[1].Tracks[0].Codec, cc.sample+".") {
				t.Fatalf("second codec %q", inits[1].Tracks[0].Codec)
			}
			for i, e := range h.sink.events {
				if e == any(inits[1]) {
					if s, ok := h.sink.events[i+1].(*Segment); !ok || !s.Keyframe {
						t.Fatal("second init not followed by a keyframe segment")
					}
				}
			}
			files := h.sink.files()
			checkCodecOutput(t, files[0], inits[0], a)
			checkCodecOutput(t, files[1], inits[1], b)
			segs := h.sink.segments()
			if len(segs) != len(frames) {
				t.Fatalf("%d segments, %d frames", len(segs), len(frames))
			}
			for i := 1; i < len(segs); i++ {
				if d := segs[i].Time - segs[i-1].Time - time.Second/30; d < -time.Microsecond || d > time.Microsecond {
					t.Fatalf("segment %d: time %v after %v", i, segs[i].Time, segs[i-1].Time)
				}
			}
		})
	}
}

// TestCodecLoss drops one packet in the middle of a GOP, and the first
// packet of the second keyframe: frames are dropped until the next keyframe
// (never emitted broken), a keyframe is requested, the output decodes.
func TestCodecLoss(t *testing.T) {
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			frames := cc.load(t, cc.file) // keyframes at 0 and 30
			pkts := packetizeFrames(frames, cc.pay(), pktOpts{mtu: 300, seq: 65000})
			first := func(frame int) int {
				for i, p := range pkts {
					if p.frame == frame {
						return i
					}
				}
				t.Fatal("no such frame")
				return 0
			}
			// A packet of frame 10 that is not its last.
			d := first(10)
			if first(11)-d < 2 {
				t.Fatal("frame 10 fits one packet: test data unfit")
			}
			pkts = append(pkts[:d:d], pkts[d+1:]...)
			h := newCodecHarness(t, cc.params, false)
			feed(h.s, pkts)
			want := append(append([]codecFrame(nil), frames[:10]...), frames[30:]...)
			checkCodecOutput(t, h.sink.files()[0], h.sink.inits()[0], want)
			st := h.s.Stats()
			if st.VideoLost != 1 || st.VideoFramesDropped != 20 || h.kf.Load() == 0 {
				t.Fatalf("stats %+v, keyframe requests %d", st, h.kf.Load())
			}
		})
	}
}

// TestVP9Profile2: a 10-bit VP9 stream gets profile 2 and bit depth 10 in
// the codec string and vpcC.
func TestVP9Profile2(t *testing.T) {
	frames := loadVP9(t, fileVP9P2)
	h := newCodecHarness(t, &CodecParams{MimeType: "video/VP9"}, false)
	feed(h.s, packetizeFrames(frames, codecCases[0].pay(), pktOpts{mtu: 1200}))
	in := h.sink.inits()[0]
	if in.Tracks[0].Codec != "vp09.02.10.10" {
		t.Fatalf("codec %q", in.Tracks[0].Codec)
	}
	checkCodecOutput(t, h.sink.files()[0], in, frames)
}

// TestCodecRandomLoss drops 5% of the packets at random (seeded), whole
// frames included, for every codec: exactly the frames that are complete
// and follow an emitted frame (or are keyframes) come out, byte for byte,
// and ffmpeg decodes all of them without an error line. A frame after a
// frame that was lost whole is not emitted: it may reference it.
func TestCodecRandomLoss(t *testing.T) {
	h264 := codecCase{
		name: "H264", params: h264Params(), file: fileSlices,
		load: func(t testing.TB, path string) []codecFrame {
			var out []codecFrame
			for _, au := range loadAUs(t, path) {
				out = append(out, codecFrame{wire: annexB(au), sample: avccSample(au), key: au.key})
			}
			return out
		},
		pay: func() rtp.Payloader { return &codecs.H264Payloader{} },
	}
	for _, cc := range append([]codecCase{h264}, codecCases...) {
		for _, seed := range []int64{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/seed%d", cc.name, seed), func(t *testing.T) {
				one := cc.load(t, cc.file)
				var frames []codecFrame
				for i := 0; i < 4; i++ {
					frames = append(frames, one...)
				}
				pkts := packetizeFrames(frames, cc.pay(), pktOpts{mtu: 1200, seq: 65000})
				rng := rand.New(rand.NewSource(seed))
				lostIn := make([]bool, len(frames))
				var kept []timedPacket
				for _, p := range pkts {
					if rng.Float64() < 0.05 {
						lostIn[p.frame] = true
						continue
					}
					kept = append(kept, p)
				}
				var want []codecFrame
				emitted := false
				for i, f := range frames {
					emitted = !lostIn[i] && (f.key || emitted)
					if emitted {
						want = append(want, f)
					}
				}
				h := newCodecHarness(t, cc.params, false)
				feed(h.s, kept)
				files := h.sink.files()
				if len(files) != 1 {
					t.Fatalf("%d inits", len(files))
				}
				checkCodecOutput(t, files[0], h.sink.inits()[0], want)
				st := h.s.Stats()
				if st.VideoFramesEmitted != uint64(len(want)) || h.kf.Load() == 0 {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}
