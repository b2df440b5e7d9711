package remux

import "time"

// Stats returns a snapshot of the Stream's counters.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Stream) start(arrival time.Time) {
	if !s.started {
		s.started = true
		s.t0 = arrival
	}
}

func (s *Stream) requestKeyframe() {
	s.stats.KeyframeRequests++
	if s.rkf != nil {
		s.rkf()
	}
}

// setOrigin makes timeline position tl (in clk's ticks) decode time 0.
func (s *Stream) setOrigin(clk *trackClock, tl int64) {
	s.originSet = true
	s.origin = ticksToDur(tl, clk.rate)
	if s.video != nil {
		s.video.clk.originTicks = durToTicks(s.origin, 90000)
	}
	if s.audio != nil {
		s.audio.clk.originTicks = durToTicks(s.origin, 48000)
	}
	clk.originTicks = tl // exact for the track that sets it
}

func (s *Stream) emitInit() bool {
	var va videoAssembler
	if s.video != nil {
		va = s.video.asm
	}
	var ai *audioTrackInfo
	if s.audio != nil {
		ai = &s.audio.info
	}
	var in *Init
	err := safeCall(func() error {
		var e error
		in, e = buildInit(va, ai)
		return e
	})
	if err != nil {
		return false
	}
	s.initDone = true
	s.stats.InitsEmitted++
	s.stats.BytesEmitted += uint64(len(in.Data))
	s.sink.WriteInit(in)
	return true
}

// emit writes one segment made of the given video sample (if vsize > 0 ...)
// and the pending audio.
func (s *Stream) emitSegment(seg *Segment, video *trafData) {
	n := 0
	if video != nil {
		s.trafs[n] = *video
		n++
	}
	if a := s.audio; a != nil && len(a.samples) > 0 {
		s.trafs[n] = trafData{
			trackID:  a.trackID(),
			baseTime: uint64(a.batchStart),
			samples:  a.samples,
			data:     a.data,
		}
		n++
		s.stats.AudioSamplesEmitted += uint64(a.real)
		if video == nil {
			seg.Time = ticksToDur(a.batchStart, 48000)
			seg.Duration = ticksToDur(a.end-a.batchStart, 48000)
		}
	}
	if n == 0 {
		return
	}
	s.seq++
	seg.Data = s.fw.build(s.seq, s.trafs[:n])
	for i := range s.trafs[:n] {
		s.trafs[i] = trafData{}
	}
	if a := s.audio; a != nil {
		a.clear()
	}
	s.stats.SegmentsEmitted++
	s.stats.BytesEmitted += uint64(len(seg.Data))
	s.sink.WriteSegment(seg)
}

// flushAudio emits the pending audio alone.
func (s *Stream) flushAudio() {
	if !s.initDone {
		return
	}
	seg := &Segment{Keyframe: s.video == nil}
	s.emitSegment(seg, nil)
}
