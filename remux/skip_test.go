package remux

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// Frame skips and irregular capture times in streams without B-frames: the
// presentation timeline stays tiled (WebKit keeps every hole in its buffered
// ranges and stalls in front of it) without moving any frame's end.

// timedH264 feeds the H.264 test file (keyframes at 0 and 30) with frame i at
// timestamp 1000+ts[i] (90 kHz), arriving when it is captured, and returns
// the harness.
func timedH264(t *testing.T, ts []int64) (*harness, []accessUnit) {
	t.Helper()
	aus := loadAUs(t, fileSlices)
	if len(ts) != len(aus) {
		t.Fatalf("%d timestamps for %d frames", len(ts), len(aus))
	}
	pkts := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1, ts: 1000})
	for i := range pkts {
		f := pkts[i].frame
		pkts[i].pkt.Timestamp = 1000 + uint32(ts[f])
		pkts[i].arrival = pkts[i].arrival.Add(time.Duration(ts[f])*time.Second/90000 - time.Duration(f)*time.Second/30)
	}
	h := newHarness(t, true, false)
	feed(h.s, pkts)
	return h, aus
}

// presented parses the harness's output (fmp4check) and returns each video
// sample's presentation interval [start, end), in 90 kHz ticks. It requires
// decode times that rise and that MSE takes as continuous, composition
// offsets >= 0 (dts <= presentation time, keyframes too), and Segment.Time
// and Duration that describe the presented interval.
func presented(t *testing.T, h *harness, n int) (start, end []int64, sync []bool) {
	t.Helper()
	_, _, samples := continuousSamples(t, h, n)
	segs := h.sink.segments()
	if len(segs) != n {
		t.Fatalf("%d segments for %d frames", len(segs), n)
	}
	for i, s := range samples {
		if s.Offset < 0 {
			t.Fatalf("frame %d: composition offset %d", i, s.Offset)
		}
		if i > 0 && s.DecodeTime <= samples[i-1].DecodeTime {
			t.Fatalf("frame %d: decode time %d after %d", i, s.DecodeTime, samples[i-1].DecodeTime)
		}
		st := int64(s.DecodeTime) + s.Offset
		start = append(start, st)
		end = append(end, st+int64(s.Duration))
		sync = append(sync, s.Sync)
		if segs[i].Time != ticksToDur(st, 90000) || segs[i].Duration != ticksToDur(int64(s.Duration), 90000) {
			t.Fatalf("frame %d: segment at %v for %v, sample presented at %d for %d ticks", i, segs[i].Time, segs[i].Duration, st, s.Duration)
		}
	}
	return start, end, sync
}

// TestFrameSkips: a 30 fps encoder skips k frames at frame 5 and again right
// before the keyframe at frame 30. A hole up to maxHoleTicks is closed: the
// frame after it starts where its predecessor ends and still ends at its
// own timestamp + one frame step; the keyframe after it decodes at its
// presentation time (composition offset 0). A longer hole stays a hole, the
// frame after it shows for one frame step (not the skipped span), and decode
// times run on inside the GOP (the offset carries the hole).
func TestFrameSkips(t *testing.T) {
	for _, k := range []int{1, 2, 3, 4, 9, 10, 30} {
		closes := int64(k)*3000 <= maxHoleTicks
		t.Run(fmt.Sprintf("skip-%d", k), func(t *testing.T) {
			ts := make([]int64, 60)
			for i := range ts {
				ts[i] = int64(i) * 3000
				if i >= 5 {
					ts[i] += int64(k) * 3000
				}
				if i >= 30 {
					ts[i] += int64(k) * 3000
				}
			}
			h, aus := timedH264(t, ts)
			start, end, sync := presented(t, h, len(ts))
			if start[0] != 0 {
				t.Fatalf("frame 0 at %d", start[0])
			}
			for i := range ts {
				if end[i] != ts[i]+3000 {
					t.Fatalf("frame %d: ends at %d, want its timestamp %d + 3000", i, end[i], ts[i])
				}
				after := i == 5 || i == 30
				switch {
				case i == 0:
				case !after || closes:
					if start[i] != end[i-1] {
						t.Fatalf("frame %d: presented at %d, previous frame ends at %d", i, start[i], end[i-1])
					}
				default:
					if start[i] != ts[i] || start[i]-end[i-1] != int64(k)*3000 {
						t.Fatalf("frame %d: presented at %d (timestamp %d), previous frame ends at %d: want a %d-tick hole",
							i, start[i], ts[i], end[i-1], k*3000)
					}
				}
			}
			if !sync[30] || sync[5] {
				t.Fatal("test data: keyframe not at 30")
			}
			// Only a long hole inside a GOP leaves a composition offset
			// (decode time runs on); the keyframe meets presentation time.
			_, _, samples := continuousSamples(t, h, len(ts))
			for i, s := range samples {
				want := int64(0)
				if !closes && i >= 5 && i < 30 {
					want = int64(k) * 3000
				}
				if s.Offset != want {
					t.Fatalf("frame %d: composition offset %d, want %d", i, s.Offset, want)
				}
			}
			checkVideoOutput(t, h.sink.files()[0], h.sink.inits()[0], aus) // ffmpeg decodes every frame
		})
	}
}

// TestIrregularCaptureTimes: browser capture timestamps step 25-45 ms, and
// now and then the encoder skips 1-4 frames. Every frame is presented from
// its timestamp or, after a hole, from the end of the frame before: the
// presented intervals leave no hole; no frame ends before its timestamp or
// later than 1.5 of the longest normal step after it.
func TestIrregularCaptureTimes(t *testing.T) {
	for _, skips := range []bool{false, true} {
		t.Run(fmt.Sprintf("skips=%v", skips), func(t *testing.T) {
			rng := rand.New(rand.NewSource(16))
			ts := make([]int64, 60)
			for i := 1; i < len(ts); i++ {
				step := int64(2250 + rng.Intn(1801)) // 25-45 ms
				if skips && rng.Intn(6) == 0 {
					step += int64(1+rng.Intn(4)) * 3000
				}
				ts[i] = ts[i-1] + step
			}
			h, aus := timedH264(t, ts)
			start, end, _ := presented(t, h, len(ts))
			for i := 1; i < len(ts); i++ {
				if want := min(ts[i], end[i-1]); start[i] != want {
					t.Fatalf("frame %d (timestamp %d): presented at %d, previous frame ends at %d", i, ts[i], start[i], end[i-1])
				}
				if end[i] <= ts[i] || end[i]-ts[i] > 4050*3/2 {
					t.Fatalf("frame %d (timestamp %d): ends at %d", i, ts[i], end[i])
				}
				if !skips && end[i]-ts[i] > ts[i]-ts[i-1] {
					t.Fatalf("frame %d (timestamp %d, previous %d): shown past its timestamp + the step before it: ends at %d", i, ts[i], ts[i-1], end[i])
				}
			}
			// The same samples, and ffmpeg decodes every frame. (Its default
			// constant frame rate output would collide frames closer than a
			// frame period: fmp4check.Decode keeps their own timestamps.)
			in := h.sink.inits()[0]
			for i, p := range videoSamples(parseMP4(t, h.sink.files()[0], in)) {
				if !bytes.Equal(p.data, avccSample(aus[i])) {
					t.Fatalf("sample %d differs from its frame", i)
				}
			}
			fmp4check.RequireFFmpeg(t)
			var segs [][]byte
			for _, s := range h.sink.segments() {
				segs = append(segs, s.Data)
			}
			errOut, n, err := fmp4check.Decode(t.TempDir(), in.Data, segs)
			if err != nil || errOut != "" || n != len(aus) {
				t.Fatalf("ffmpeg decoded %d of %d frames (%v): %s", n, len(aus), err, errOut)
			}
		})
	}
}

// TestRegularTiming: a regular 30 fps stream of every codec is presented at
// its timestamps, each frame for 3000 ticks, decode time = presentation
// time.
func TestRegularTiming(t *testing.T) {
	check := func(t *testing.T, h *harness, n int) {
		t.Helper()
		_, _, samples := continuousSamples(t, h, n)
		for i, s := range samples {
			if s.DecodeTime != uint64(3000*i) || s.Offset != 0 || s.Duration != 3000 {
				t.Fatalf("frame %d: decode time %d, offset %d, duration %d", i, s.DecodeTime, s.Offset, s.Duration)
			}
		}
	}
	t.Run("H264", func(t *testing.T) {
		ts := make([]int64, 60)
		for i := range ts {
			ts[i] = int64(i) * 3000
		}
		h, aus := timedH264(t, ts)
		check(t, h, len(aus))
	})
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			fr := c.load(t, c.file)
			h := newCodecHarness(t, c.params, false)
			feed(h.s, packetizeFrames(fr, c.pay(), pktOpts{mtu: 1200, ts: 1 << 31}))
			check(t, h, len(fr))
		})
	}
}

// TestRandomTimestampsInvariants feeds real frames with random timestamp
// steps (jitter, skips, long pauses, repeats, steps back, jumps) to a stream
// without B-frames and to one that declares them: decode times rise and MSE
// takes them as continuous, composition offsets are >= 0, durations > 0.
// With forward steps only and no B-frames, every hole up to maxHoleTicks is
// closed.
func TestRandomTimestampsInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(1616))
	slices := loadAUs(t, fileSlices)
	bframes := loadAUs(t, fileBFrames)
	for iter := 0; iter < 60; iter++ {
		forward := iter%2 == 0
		aus := slices
		if iter%3 == 2 {
			aus = bframes
		}
		ts := make([]int64, len(aus))
		for i := 1; i < len(ts); i++ {
			var step int64
			switch r := rng.Intn(20); {
			case r < 12:
				step = 2000 + rng.Int63n(3000)
			case r < 15:
				step = int64(2+rng.Intn(6)) * 3000 // a skip
			case r < 16:
				step = 20000 + rng.Int63n(100000) // a pause
			case r < 17 && !forward:
				step = 0 // a repeated timestamp
			case r < 18 && !forward:
				step = -rng.Int63n(12000) // back
			case r < 19 && !forward:
				step = 11 * 90000 // a jump
			default:
				step = 1 + rng.Int63n(3000)
			}
			ts[i] = ts[i-1] + step
		}
		pkts := packetizeH264(aus, pktOpts{mtu: 1200, seq: 1, ts: 1000})
		for i := range pkts {
			pkts[i].pkt.Timestamp = uint32(1000 + ts[pkts[i].frame])
		}
		h := newHarness(t, true, false)
		feed(h.s, pkts)
		if len(h.sink.inits()) != 1 {
			t.Fatalf("iteration %d: %d inits", iter, len(h.sink.inits()))
		}
		start, end, _ := presented(t, h, len(aus))
		if !forward || iter%3 == 2 {
			continue
		}
		for i := 1; i < len(aus); i++ {
			if hole := start[i] - end[i-1]; hole > 0 && hole <= maxHoleTicks {
				t.Fatalf("iteration %d, frame %d: a %d-tick hole before it (timestamps %v)", iter, i, hole, ts)
			}
		}
	}
}
