package remux

import (
	"encoding/binary"
	"sort"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// ntpOf converts a wall-clock time to a 64-bit NTP timestamp.
func ntpOf(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

type srEvent struct {
	kind    TrackKind
	ntp     uint64
	rtp     uint32
	arrival time.Time
}

// syntheticAV is a publisher whose capture clock is known: video frame i and
// audio packet k are captured at capture0 + i/30 s and capture0 + k*20 ms.
// Video arrives videoDelay after capture, audio audioDelay after, so
// arrival-time alignment is off by videoDelay-audioDelay; sender reports
// carry the true NTP <-> RTP mapping, every srEvery, per track.
type syntheticAV struct {
	capture0               time.Time
	videoDelay, audioDelay time.Duration
	videoTS0, audioTS0     uint32
	srEvery                time.Duration
	frames                 int // video frames; audio covers the same span
}

func (sa syntheticAV) build(t *testing.T) (pkts []timedPacket, srs []srEvent, aus []accessUnit) {
	all := loadAUs(t, fileSlices)
	for len(aus) < sa.frames {
		aus = append(aus, all...)
	}
	aus = aus[:sa.frames]
	vp := packetizeH264(aus, pktOpts{mtu: 1200, seq: 100, ts: sa.videoTS0, start: sa.capture0.Add(sa.videoDelay)})
	// Audio: CELT FB 20 ms packets whose two data bytes number them.
	nAudio := sa.frames * 3 / 2
	var ap []timedPacket
	for k := 0; k < nAudio; k++ {
		p := []byte{0xfc, 0, 0}
		binary.BigEndian.PutUint16(p[1:], uint16(k))
		ap = append(ap, timedPacket{
			pkt: &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 60000 + uint16(k),
				Timestamp: sa.audioTS0 + uint32(k*960), SSRC: 2}, Payload: p},
			arrival: sa.capture0.Add(time.Duration(k)*20*time.Millisecond + sa.audioDelay),
			audio:   true, frame: k,
		})
	}
	pkts = mergeByArrival(vp, ap)
	span := time.Duration(sa.frames) * time.Second / 30
	for c := sa.srEvery / 2; c < span; c += sa.srEvery {
		// A report describes the capture instant c on both tracks; it
		// leaves the sender with its media, so it arrives with the same
		// delay as that media.
		cv := c + 7*time.Millisecond // reports are not simultaneous
		srs = append(srs,
			srEvent{KindVideo, ntpOf(sa.capture0.Add(cv)), sa.videoTS0 + uint32(durToTicks(cv, 90000)), sa.capture0.Add(cv + sa.videoDelay)},
			srEvent{KindAudio, ntpOf(sa.capture0.Add(c)), sa.audioTS0 + uint32(durToTicks(c, 48000)), sa.capture0.Add(c + sa.audioDelay)},
		)
	}
	sort.SliceStable(srs, func(i, j int) bool { return srs[i].arrival.Before(srs[j].arrival) })
	return pkts, srs, aus
}

// feedWithSRs pushes packets and sender reports in arrival order.
func feedWithSRs(s *Stream, pkts []timedPacket, srs []srEvent) {
	j := 0
	for _, p := range pkts {
		for j < len(srs) && !srs[j].arrival.After(p.arrival) {
			s.PushSenderReport(srs[j].kind, srs[j].ntp, srs[j].rtp)
			j++
		}
		if p.audio {
			s.PushAudio(p.pkt, p.arrival)
		} else {
			s.PushVideo(p.pkt, p.arrival)
		}
	}
}

// measureSkew returns, for every emitted audio sample in order, its A/V
// skew: (audio presentation - capture) - (video presentation - capture). It
// checks that video keeps one constant offset and audio stays contiguous.
func measureSkew(t *testing.T, h *harness) []time.Duration {
	t.Helper()
	ps := parseMP4(t, h.sink.files()[0], h.sink.inits()[0])
	var videoOff time.Duration
	var skews []time.Duration
	vi := 0
	var lastEnd uint64
	haveAudio := false
	for _, p := range ps {
		if p.track == 1 {
			off := time.Duration(p.dts)*time.Second/90000 - time.Duration(vi)*time.Second/30
			if vi == 0 {
				videoOff = off
			} else if d := off - videoOff; d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("video frame %d offset %v, frame 0 %v: video moved", vi, off, videoOff)
			}
			vi++
			continue
		}
		if haveAudio && p.dts != lastEnd {
			t.Fatalf("audio hole or overlap: sample at %d, previous ends %d", p.dts, lastEnd)
		}
		haveAudio = true
		lastEnd = p.dts + uint64(p.dur)
		if len(p.data) != 3 {
			continue // a filler
		}
		k := int(binary.BigEndian.Uint16(p.data[1:]))
		audioOff := time.Duration(p.dts)*time.Second/48000 - time.Duration(k)*20*time.Millisecond
		skews = append(skews, audioOff-videoOff)
	}
	return skews
}

// TestAVSyncSenderReports: a publisher's video reaches the gateway 300 ms
// after capture, its audio 20 ms after (arrival-time alignment is 280 ms
// off), and its RTP timestamps start at unrelated values (video near the
// 32-bit wrap). Once both tracks have a sender report, audio and video of
// the same capture instant share a timeline position: |skew| < 20 ms
// (measured: under 1 ms), video never moves, audio stays contiguous.
func TestAVSyncSenderReports(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		videoDelay, audioDelay time.Duration
	}{
		{"video-300ms-late", 300 * time.Millisecond, 20 * time.Millisecond},
		{"audio-250ms-late", 10 * time.Millisecond, 260 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := syntheticAV{
				capture0: time.Unix(7000, 0), videoDelay: tc.videoDelay, audioDelay: tc.audioDelay,
				videoTS0: 1<<32 - 30000, audioTS0: 123456789, srEvery: time.Second, frames: 150,
			}
			pkts, srs, _ := sa.build(t)
			h := newHarness(t, true, true)
			feedWithSRs(h.s, pkts, srs)
			skews := measureSkew(t, h)
			if len(skews) < 100 {
				t.Fatalf("%d audio samples", len(skews))
			}
			st := h.s.Stats()
			if st.SyncCorrections == 0 || st.SenderReports != uint64(len(srs)) {
				t.Fatalf("stats %+v", st)
			}
			arrivalSkew := tc.audioDelay - tc.videoDelay
			if d := skews[0] - arrivalSkew; d < -2*time.Millisecond || d > 2*time.Millisecond {
				t.Fatalf("before sender reports the skew is %v, want the arrival skew %v", skews[0], arrivalSkew)
			}
			// After the first report pair (at most 1 s + 300 ms in), every
			// sample is in sync.
			var worst time.Duration
			synced := 0
			for _, s := range skews[len(skews)/2:] {
				if s < 0 {
					s = -s
				}
				worst = max(worst, s)
				synced++
			}
			t.Logf("skew before sender reports %v; after: worst |skew| %v over %d audio samples; %d corrections",
				skews[0], worst, synced, st.SyncCorrections)
			if worst >= 20*time.Millisecond {
				t.Fatalf("worst |skew| %v", worst)
			}
			// Reports describe a steady clock: one correction, not one per report.
			if st.SyncCorrections != 1 {
				t.Fatalf("%d corrections", st.SyncCorrections)
			}
		})
	}
}

// TestSenderReportEdgeCases: reports for missing tracks, before any packet,
// or from a video-only stream change nothing and never panic.
func TestSenderReportEdgeCases(t *testing.T) {
	h := newHarness(t, true, false)
	h.s.PushSenderReport(KindAudio, 1, 2)
	h.s.PushSenderReport(KindVideo, 1, 2)
	h.s.PushSenderReport(TrackKind(9), 1, 2)
	feed(h.s, packetizeH264(loadAUs(t, fileSlices)[:3], pktOpts{mtu: 1200}))
	h.s.PushSenderReport(KindVideo, 1<<63, 5)
	if st := h.s.Stats(); st.SenderReports != 2 || st.SyncCorrections != 0 || st.VideoFramesEmitted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAVSyncAfterVideoTimestampJump: the video RTP timestamps jump mid-stream
// (a simulcast layer switch, a publisher restarting its clock) and the next
// sender report to arrive is audio's. The old video report describes the old
// timestamps; used with the rebased clock it would move audio by the size of
// the jump. Audio must stay in sync and contiguous, before and after the new
// video report.
func TestAVSyncAfterVideoTimestampJump(t *testing.T) {
	sa := syntheticAV{
		capture0: time.Unix(7000, 0), videoDelay: 20 * time.Millisecond, audioDelay: 20 * time.Millisecond,
		videoTS0: 5000, audioTS0: 123456789, srEvery: time.Second, frames: 240,
	}
	pkts, srs, _ := sa.build(t)
	const jumpAt, jump = 120, 1_000_000_000 // frame 120 (4 s): another RTP timestamp base
	switchTime := sa.capture0.Add(jumpAt * time.Second / 30)
	for i := range pkts {
		if !pkts[i].audio && pkts[i].frame >= jumpAt {
			pkts[i].pkt.Timestamp += jump
		}
	}
	for i := range srs {
		if srs[i].kind == KindVideo && srs[i].arrival.After(switchTime) {
			srs[i].rtp += jump
		}
	}
	h := newHarness(t, true, true)
	feedWithSRs(h.s, pkts, srs)
	skews := measureSkew(t, h) // also checks video continuity and audio contiguity
	var worst time.Duration
	for _, s := range skews {
		worst = max(worst, s, -s)
	}
	st := h.s.Stats()
	t.Logf("worst |skew| %v over %d audio samples, %d corrections", worst, len(skews), st.SyncCorrections)
	if worst >= 20*time.Millisecond {
		t.Fatalf("worst |skew| %v", worst)
	}
	// Equal delays: arrival time already aligns the tracks, and no report
	// (stale or fresh) may move audio. A stale one moved it by the jump (3 h),
	// which only the audio track's own jump guard hid.
	if st.SyncCorrections != 0 {
		t.Fatalf("%d audio sync corrections, want 0", st.SyncCorrections)
	}
}
