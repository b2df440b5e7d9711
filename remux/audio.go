package remux

import "time"

// audioTrack holds Opus samples until the next segment.
type audioTrack struct {
	s    *Stream
	rb   reorderBuffer
	clk  trackClock
	info audioTrackInfo

	samples      []sampleEntry
	data         []byte
	real         int   // samples that are not fillers
	batchStart   int64 // decode time of samples[0]
	end          int64 // decode time where the next sample is expected
	haveEnd      bool
	pendingSince time.Time
	lastTOC      byte
}

func (a *audioTrack) trackID() uint32 {
	if a.s.video != nil {
		return 2
	}
	return 1
}

func (a *audioTrack) clear() {
	a.samples = a.samples[:0]
	a.data = a.data[:0]
	a.real = 0
}

func (a *audioTrack) handlePacket(ts uint32, _ bool, payload []byte, bad bool, arrival time.Time, _ int) {
	s := a.s
	tl := a.clk.timeline(ts, arrival, s.t0) // anchor the clock on the first packet
	if bad {
		s.stats.AudioSamplesDropped++
		return
	}
	if len(payload) == 0 {
		return
	}
	dur, err := opusDuration(payload)
	if err != nil {
		s.stats.AudioSamplesDropped++
		return
	}
	if !s.originSet {
		if s.video != nil {
			s.stats.AudioSamplesDropped++ // before the first video keyframe
			return
		}
		s.setOrigin(&a.clk, tl)
	}
	if !s.initDone && !s.emitInit() {
		s.stats.AudioSamplesDropped++
		return
	}
	dt := tl - a.clk.originTicks
	if !a.haveEnd {
		if dt < 0 {
			s.stats.AudioSamplesDropped++ // older than the first video keyframe
			return
		}
	} else {
		gap := dt - a.end
		switch {
		case gap == 0:
		case gap < 0 && gap > -int64(dur)/2:
			// Overlap of less than half a sample: keep samples back to back.
			dt = a.end
		case gap < 0 && gap > -10*48000:
			// The timeline already covers this sample (sender-report sync
			// moved audio back): drop it.
			s.stats.AudioSamplesDropped++
			return
		case gap > 0 && gap <= maxAudioFill*960:
			a.fill(gap, arrival)
			dt = a.end
		case gap > 0 && gap <= 10*48000:
			// Long silence (DTX, mute): keep sync, leave a hole.
			s.flushAudio()
		default:
			// A jump (publisher restart): rebase the track's clock.
			a.clk.offset += a.end - dt
			dt = a.end
		}
	}
	if len(a.samples) >= maxPendingAudio || len(a.data)+len(payload) > maxPendingAudioData {
		s.flushAudio()
	}
	a.add(dt, sampleEntry{size: uint32(len(payload)), dur: dur, flags: flagsSync}, payload, arrival)
	a.real++
	a.lastTOC = payload[0]
	if s.video == nil && a.real >= audioOnlyBatch {
		s.flushAudio()
	}
}

func (a *audioTrack) add(dt int64, e sampleEntry, payload []byte, arrival time.Time) {
	if len(a.samples) == 0 {
		a.batchStart = dt
		a.pendingSince = arrival
	}
	a.samples = append(a.samples, e)
	a.data = append(a.data, payload...)
	a.end = dt + int64(e.dur)
	a.haveEnd = true
}

// fill covers a gap of lost audio with empty Opus frames (a TOC byte alone:
// one frame of length zero, which decoders conceal), so that the track stays
// continuous: a hole in one track of a muxed SourceBuffer stalls playback
// and, when larger than two sample durations, makes MSE wait for a new video
// keyframe.
func (a *audioTrack) fill(gap int64, arrival time.Time) {
	if n := len(a.samples); n > 0 && gap < 960 {
		// Less than a frame: stretch the pending last sample.
		a.samples[n-1].dur += uint32(gap)
		a.end += gap
		return
	}
	toc := a.lastTOC &^ 3 // same configuration, code 0
	fd := int64(opusFrameSamples48k[toc>>3])
	for gap > 0 {
		if len(a.samples) >= maxPendingAudio {
			a.s.flushAudio()
		}
		d := fd
		if gap < 2*fd {
			d = gap // the last one takes the remainder
		}
		a.add(a.end, sampleEntry{size: 1, dur: uint32(d), flags: flagsSync}, []byte{toc}[:1:1], arrival)
		a.s.stats.AudioFillers++
		gap -= d
	}
}
