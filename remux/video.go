package remux

import (
	"slices"
	"time"
)

// boundaries, loss, keyframe gating and timing.
type videoTrack struct {
	s   *Stream
	rb  reorderBuffer
	asm videoAssembler
	clk trackClock

	inFrame   bool
	curTS     uint32
	curTL     int64 // timeline position of curTS, in ticks
	curBroken bool
	curAfter  bool // the current frame started right after a gap
	gapNext   bool // a gap was seen outside a frame: the next frame follows it
	needKey   bool

	emitted bool  // a frame was emitted
	lastPTS int64 // timestamp of the last emitted frame (its presentation time unless it closed a hole)
	maxPTS  int64 // the latest such timestamp (> lastPTS after B-frames)
	lastDTS int64 // decode time of the last emitted frame (<= its presentation time)
	lastDur int64 // sample duration of the last emitted frame
	lastNom int64 // its duration not counting a hole it closed (= lastDur otherwise)
	prevEnd int64 // end of its presentation interval (presentation time + lastDur)

	// B-frames (presentation order != decode order). delay is the
	// presentation delay that leaves decode times room below presentation
	// times: set once, at the first keyframe, from the reorder depth the
	// bitstream declares. reordered is set once a frame came older than
	// one before it; sample durations are then the frame interval (step).
	delay     int64
	reordered bool
	steps     [8]int64 // recent positive timestamp steps between consecutive frames
	stepsN    int
	recentPTS [8]int64 // presentation times recently emitted (no two frames share one)
	recentN   int

	sample [1]sampleEntry
}

func (v *videoTrack) handlePacket(ts uint32, marker bool, payload []byte, bad bool, arrival time.Time, lost int) {
	if bad {
		lost++ // unusable data: as if the packet were lost
	}
	if lost > 0 {
		if v.inFrame {
			v.curBroken = true // its tail or middle may be what was lost
		}
		if !v.inFrame || ts != v.curTS {
			v.gapNext = true
		}
	}
	if len(payload) == 0 {
		return // padding-only packet (bandwidth probing)
	}
	if v.inFrame && ts != v.curTS {
		v.finishFrame() // boundary by timestamp change (marker lost or not set)
	}
	if !v.inFrame {
		v.beginFrame(ts, arrival)
	}
	v.asm.add(payload)
	if marker {
		v.finishFrame()
	}
}

// beginFrame starts the frame of timestamp ts.
func (v *videoTrack) beginFrame(ts uint32, arrival time.Time) {
	v.inFrame = true
	v.curTS = ts
	v.curBroken = false
	v.curAfter = v.gapNext
	v.gapNext = false
	v.curTL = v.clk.timeline(ts, arrival, v.s.t0)
	v.asm.reset()
}

func (v *videoTrack) drop() {
	s := v.s
	v.needKey = true
	s.stats.VideoFramesDropped++
	s.requestKeyframe()
}

func (v *videoTrack) finishFrame() {
	s := v.s
	v.inFrame = false
	f := v.asm.finish()
	if f.status == frameEmpty && !v.curBroken {
		return
	}
	if v.curBroken || f.status != frameOK {
		v.drop()
		return
	}
	// A non-key frame right after a gap may reference a frame that was lost
	// whole (one packet, or all of its packets): it is not decodable.
	if !f.key && (v.needKey || f.configChanged || v.curAfter) {
		v.drop()
		return
	}
	// A keyframe right after a gap may have lost parameter sets sent ahead
	// of it: take it only when it carries its own.
	if f.key && v.curAfter && !f.hasConfig {
		v.drop()
		return
	}
	if f.key && (f.configChanged || !v.asm.haveConfig() || !s.initDone) {
		if err := v.asm.commit(); err != nil {
			v.drop()
			return
		}
		if !s.originSet {
			// Presentation runs delay behind decode, for video and audio
			// alike (one origin), so that B-frames decode before they show.
			v.delay = int64(v.asm.reorderDepth()) * reorderFrameTicks
			s.setOrigin(&v.clk, v.curTL-v.delay)
		}
		if !s.emitInit() {
			v.drop()
			return
		}
	}

	if !s.originSet { // cannot happen: the first emitted frame is a keyframe
		s.setOrigin(&v.clk, v.curTL)
	}
	pts := v.curTL - v.clk.originTicks
	dur := int64(90000 / 30)
	early := int64(0) // a closed hole: the frame is presented this much before pts
	if v.emitted {
		delta := pts - v.maxPTS
		if delta > 10*90000 || delta <= -90000 {
			// A jump (publisher restart, simulcast layer switch): rebase the
			// track's clock. The last sender report describes the old
			// timestamps: syncing audio with it would move audio by the jump.
			np := v.maxPTS + v.lastNom
			v.clk.offset += np - pts
			v.clk.srHave = false
			pts = np
		}
		typical := v.typicalStep() // before this frame's own step joins v.steps
		if step := pts - v.lastPTS; step > 0 {
			v.steps[v.stepsN%len(v.steps)] = step
			v.stepsN++
		}
		switch {
		case pts > v.maxPTS && !v.reordered && v.delay == 0:
			// No B-frames: the frame shows for the interval before it, a
			// frame step, unless that interval is a skip (more than 1.5x the
			// typical step): then for the typical step. A short hole left
			// by a skip is closed (see maxHoleTicks).
			dur = pts - v.maxPTS
			if 2*dur > 3*typical {
				dur = typical
			}
			if hole := pts - v.prevEnd; hole > 0 && hole <= maxHoleTicks {
				early = hole
			}
		case pts > v.maxPTS && !v.reordered:
			// A stream that declares B-frames, before the first one: its
			// frames are presented at their timestamps (a shift could put
			// an anchor frame where a B-frame goes).
			dur = pts - v.maxPTS
		case pts > v.maxPTS:
			dur = v.step()
		case pts < v.maxPTS && pts > v.lastDTS && !v.emittedPTS(pts):
			// A B-frame: presented before frames decoded ahead of it.
			v.reordered = true
			s.stats.VideoReordered++
			dur = v.step()
		default:
			// Older than the room below it allows (reordering deeper than
			// the bitstream declared, or a repeated timestamp): presented
			// right after the latest frame, in decode order.
			if pts < v.maxPTS {
				v.reordered = true
			}
			s.stats.VideoOutOfOrder++
			pts = v.maxPTS + 1
			dur = v.lastNom
		}
	} else if pts < 0 {
		pts = 0
	}
	nom := dur
	ppts := pts - early // presentation time
	dur += early        // the frame still ends at pts + nom
	// The decode timeline runs without gaps inside a GOP: MSE (coded frame
	// processing, step 6) treats a decode-time jump of more than twice the
	// previous sample's duration as a discontinuity and drops every frame
	// until the next keyframe. So a frame after a hole that stays (or any
	// gap in a stream with B-frames) decodes right after its predecessor and
	// is presented at its real time (composition offset = the gap so far).
	// A keyframe, where a discontinuity costs nothing, brings decode time
	// back to its presentation time less the B-frame delay.
	dts := ppts - v.delay
	if v.emitted && !f.key {
		dts = min(v.lastDTS+v.lastDur, ppts)
	}
	if v.emitted && dts <= v.lastDTS {
		// <= ppts: every branch above leaves ppts > lastDTS (a closed hole
		// starts at prevEnd, after the previous frame's presentation time).
		dts = v.lastDTS + 1
	}
	if dts < 0 {
		dts = 0
	}
	v.recentPTS[v.recentN%len(v.recentPTS)] = ppts
	v.recentN++
	v.maxPTS = max(v.maxPTS, pts)
	v.emitted = true
	v.lastPTS, v.lastDTS, v.lastDur, v.lastNom = pts, dts, dur, nom
	v.prevEnd = ppts + dur
	if f.key {
		v.needKey = false
		s.stats.Keyframes++
	}
	flags := uint32(flagsNonSync)
	if f.key {
		flags = flagsSync
	}
	v.sample[0] = sampleEntry{size: uint32(len(f.data)), dur: uint32(dur), flags: flags, cto: uint32(ppts - dts)}
	seg := &Segment{
		Keyframe: f.key,
		HasVideo: true,
		Time:     ticksToDur(ppts, 90000),
		Duration: ticksToDur(dur, 90000),
	}
	s.stats.VideoFramesEmitted++
	s.emitSegment(seg, &trafData{trackID: 1, baseTime: uint64(dts), samples: v.sample[:], data: f.data, withCTO: true})
}

// maxHoleTicks (0.3 s) bounds a hole in the presentation timeline that the
// frame after it closes by starting early, at the end of its predecessor's
// interval. Encoders skip a few frames at a time (openh264 rate control,
// Chromium under CPU load: 1-4 frames, 33-133 ms at 30 fps; one frame of a
// 5 fps stream is 200 ms), and WebKit leaves every such hole in its buffered
// ranges and stalls in front of it. Closing one shows the frame after it at
// most the hole early, for that frame only: where a browser bridges holes,
// the frame before it stays on screen as long instead, so the picture is no
// less right. A longer hole is an event (a paused publisher, frames dropped
// until the next keyframe) that the player should see and jump. A fixed
// bound rather than a multiple of the frame interval keeps that one frame's
// A/V error bounded at any frame rate, and does not rest on an estimate
// that the skips themselves disturb.
const maxHoleTicks = 27000

// typicalStep is the usual interval between consecutive frames: the lower
// median of the recent timestamp steps (1/30 s before there is one). A skip
// is one long step among short ones; it does not move the median.
func (v *videoTrack) typicalStep() int64 {
	n := min(v.stepsN, len(v.steps))
	if n == 0 {
		return int64(90000 / 30)
	}
	var sorted [len(v.steps)]int64
	copy(sorted[:], v.steps[:n])
	slices.Sort(sorted[:n])
	return sorted[(n-1)/2]
}

// step is the frame interval of a stream with B-frames: the smallest
// recent step between consecutive timestamps (decode order jumps over the
// B-frames, so most steps are larger).
func (v *videoTrack) step() int64 {
	n := min(v.stepsN, len(v.steps))
	if n == 0 {
		return int64(90000 / 30)
	}
	m := v.steps[0]
	for _, st := range v.steps[1:n] {
		m = min(m, st)
	}
	return m
}

// emittedPTS reports whether a recent frame was presented at pts.
func (v *videoTrack) emittedPTS(pts int64) bool {
	for _, p := range v.recentPTS[:min(v.recentN, len(v.recentPTS))] {
		if p == pts {
			return true
		}
	}
	return false
}
