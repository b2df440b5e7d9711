package remux

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

type nopSink struct{ bytes int }

func (n *nopSink) WriteInit(i *Init)       { n.bytes += len(i.Data) }
func (n *nopSink) WriteSegment(s *Segment) { n.bytes += len(s.Data) }

// BenchmarkRemuxH264Frame measures one 1280x720 H.264 frame (several RTP
// packets, MTU 1200) from PushVideo to the Segment handed to the Sink. One
// op = one frame.
func BenchmarkRemuxH264Frame(b *testing.B) {
	aus := loadAUs(b, fileBench)
	benchPackets(b, h264Params(), packetizeH264(aus, pktOpts{mtu: 1200}), len(aus))
}

// benchPackets pushes the packets of frames frames, looped, one frame per op.
func benchPackets(b *testing.B, params *CodecParams, pkts []timedPacket, frames int) {
	// payloads[frame] = RTP payloads of that frame
	payloads := make([][][]byte, frames)
	var total int
	for _, p := range pkts {
		payloads[p.frame] = append(payloads[p.frame], p.pkt.Payload)
		total += len(p.pkt.Payload)
	}
	sink := &nopSink{}
	s, err := NewStream(Config{Video: params, Sink: sink})
	if err != nil {
		b.Fatal(err)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}}
	var seq uint16
	var ts uint32
	now := time.Unix(0, 0)
	push := func(frame int) {
		ps := payloads[frame%len(payloads)]
		for j, p := range ps {
			pkt.SequenceNumber = seq
			pkt.Timestamp = ts
			pkt.Marker = j == len(ps)-1
			pkt.Payload = p
			s.PushVideo(pkt, now)
			seq++
		}
		ts += 3000
		now = now.Add(time.Second / 30)
	}
	push(0) // init
	b.SetBytes(int64(total / frames))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		push(i + 1)
	}
	b.StopTimer()
	st := s.Stats()
	if st.VideoFramesEmitted != uint64(b.N+1) || st.VideoFramesDropped != 0 {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(float64(len(pkts))/float64(frames), "pkts/frame")
}
