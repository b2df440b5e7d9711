package remux

import (
	"bytes"
	"testing"
	"time"
)

// framesVsRTP feeds the same coded frames to two Streams, one through RTP
// (depacketized) and one whole through PushVideoFrame / PushAudioFrame, at
// the same timestamps and arrival times, and requires the same output.
func framesVsRTP(t *testing.T, video *CodecParams, audio bool, pkts []timedPacket, frames [][]byte) {
	t.Helper()
	newStream := func(sink Sink) *Stream {
		cfg := Config{Sink: sink, Video: video}
		if audio {
			cfg.Audio = opusParams()
		}
		s, err := NewStream(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	viaRTP, viaFrames := &recSink{}, &recSink{}
	feed(newStream(viaRTP), pkts)
	s := newStream(viaFrames)
	// A video frame goes in when its last packet would have completed it,
	// with the arrival of its first (which anchors its timing).
	first := map[int]time.Time{}
	for _, p := range pkts {
		switch {
		case p.audio:
			s.PushAudioFrame(p.pkt.Payload, p.pkt.Timestamp, p.arrival)
		default:
			if _, ok := first[p.frame]; !ok {
				first[p.frame] = p.arrival
			}
			if p.pkt.Marker {
				s.PushVideoFrame(frames[p.frame], p.pkt.Timestamp, first[p.frame])
			}
		}
	}
	a, b := viaRTP.files(), viaFrames.files()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("RTP path made %d files, frame path %d", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("file %d differs: %d bytes through RTP, %d through whole frames", i, len(a[i]), len(b[i]))
		}
	}
	if len(viaRTP.segments()) != len(viaFrames.segments()) {
		t.Fatalf("%d segments through RTP, %d through frames", len(viaRTP.segments()), len(viaFrames.segments()))
	}
}

// TestPushVideoFrameMatchesRTP: every codec's frames pushed whole come out
// byte for byte as when they are packetized and depacketized: one
// assembler stands behind both entry points.
func TestPushVideoFrameMatchesRTP(t *testing.T) {
	t.Run("H264", func(t *testing.T) {
		aus := loadAUs(t, fileSlices)
		var frames [][]byte
		for _, au := range aus {
			frames = append(frames, annexB(au))
		}
		framesVsRTP(t, h264Params(), false, packetizeH264(aus, pktOpts{mtu: 1200}), frames)
	})
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			fr := c.load(t, c.file)
			var frames [][]byte
			for _, f := range fr {
				frames = append(frames, f.wire)
			}
			framesVsRTP(t, c.params, false, packetizeFrames(fr, c.pay(), pktOpts{mtu: 1200}), frames)
		})
	}
}

// TestPushAudioFrameMatchesRTP: Opus packets pushed as frames, with H.264
// video pushed as frames, come out as the same packets through RTP.
func TestPushAudioFrameMatchesRTP(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	var frames [][]byte
	for _, au := range aus {
		frames = append(frames, annexB(au))
	}
	opus := readOggOpus(t, fileOpus)
	start := time.Unix(1000, 0)
	pkts := mergeByArrival(packetizeH264(aus, pktOpts{mtu: 1200, start: start}), packetizeOpus(opus[:len(aus)*5/3], 7, 1000, start))
	framesVsRTP(t, h264Params(), true, pkts, frames)
}

// Broken whole frames are dropped like broken packetized ones, and the
// stream goes on at the next keyframe.
func TestPushVideoFrameRejectsGarbage(t *testing.T) {
	aus := loadAUs(t, fileSlices)
	h := newHarness(t, true, false)
	at := time.Unix(1000, 0)
	h.s.PushVideoFrame([]byte{0, 0, 0, 1, 0x7c, 0x85, 1, 2}, 0, at) // an FU-A header in Annex-B: not a coded stream
	h.s.PushVideoFrame(bytes.Repeat([]byte{1}, maxFrameBytes+1), 3000, at)
	for i, au := range aus {
		h.s.PushVideoFrame(annexB(au), uint32(6000+3000*i), at.Add(time.Duration(i+2)*time.Second/30))
	}
	st := h.s.Stats()
	if st.VideoFramesDropped != 2 || st.VideoFramesEmitted != uint64(len(aus)) {
		t.Fatalf("stats %+v", st)
	}
	checkVideoOutput(t, h.sink.files()[0], h.sink.inits()[0], aus)
}
