package remux

import "time"

// PushSenderReport feeds the NTP <-> RTP timestamp mapping of an RTCP sender
// report (RFC 3550 6.4.1) of the track of the given kind: ntpTime is the
// 64-bit NTP timestamp (32.32 fixed point), rtpTime the RTP timestamp of the
// same instant. Until both tracks have a report they are aligned by arrival
// time; from then on audio follows video on the sender's clock: the audio
// timeline moves (filled with empty frames forward, samples dropped backward)
// whenever the offset the reports imply changes by more than 5 ms. The video
// timeline, which holds the keyframes, never moves. Reports for a track that
// has not received a packet yet are ignored.
func (s *Stream) PushSenderReport(kind TrackKind, ntpTime uint64, rtpTime uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *trackClock
	switch {
	case kind == KindVideo && s.video != nil:
		c = &s.video.clk
	case kind == KindAudio && s.audio != nil:
		c = &s.audio.clk
	default:
		return
	}
	s.stats.SenderReports++
	if !c.started {
		return
	}
	c.srHave = true
	c.srNTP = ntpTime
	c.srExt = c.ext + int64(int32(rtpTime-c.lastTS))
	s.syncAudio()
}

// syncAudio sets the audio clock's offset so that audio and video samples
// captured at the same instant (per the sender reports) share a timeline
// position.
func (s *Stream) syncAudio() {
	if s.video == nil || s.audio == nil {
		return
	}
	v, a := &s.video.clk, &s.audio.clk
	if !v.srHave || !a.srHave {
		return
	}
	// Timeline position of the video report's instant, in 48 kHz ticks.
	tlV := v.srExt + v.offset
	tlV48 := floorDiv(tlV*48000, 90000)
	// NTP difference between the two reports (32.32 fixed point, signed),
	// in 48 kHz ticks; bounded so the product cannot overflow.
	d := int64(a.srNTP - v.srNTP)
	if d > 1<<44 || d < -(1<<44) {
		return // reports more than an hour apart: wait for fresh ones
	}
	dTicks := floorDiv(d*48000, 1<<32)
	want := tlV48 + dTicks - a.srExt
	diff := want - a.offset
	if diff < 0 {
		diff = -diff
	}
	if diff <= durToTicks(syncTolerance, 48000) {
		return
	}
	a.offset = want
	s.stats.SyncCorrections++
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// trackClock maps a track's RTP timestamps onto the stream's timeline.
type trackClock struct {
	rate        int64 // ticks per second
	started     bool
	lastTS      uint32
	ext         int64 // unwrapped lastTS
	offset      int64 // timeline ticks = ext + offset
	originTicks int64 // decode time 0, in ticks

	// Latest RTCP sender report: its NTP time and its RTP time unwrapped
	// like ext.
	srHave bool
	srNTP  uint64
	srExt  int64
}

// timeline returns the timeline position, in ticks, of RTP timestamp ts. The
// first call anchors the track at its arrival time relative to t0.
func (c *trackClock) timeline(ts uint32, arrival, t0 time.Time) int64 {
	if !c.started {
		c.started = true
		c.lastTS = ts
		c.ext = int64(ts)
		c.offset = durToTicks(arrival.Sub(t0), c.rate) - int64(ts)
	} else {
		c.ext += int64(int32(ts - c.lastTS))
		c.lastTS = ts
	}
	return c.ext + c.offset
}

func ticksToDur(t, rate int64) time.Duration {
	return time.Duration(t/rate)*time.Second + time.Duration(t%rate)*time.Second/time.Duration(rate)
}

func durToTicks(d time.Duration, rate int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*rate + rem*rate/int64(time.Second)
}

// videoTrack is the codec-independent part of the video path: frame
