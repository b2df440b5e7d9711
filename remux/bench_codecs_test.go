package remux

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// benchFrames measures one frame of frames (RTP packets at MTU 1200 from
// the codec's pion payloader) from PushVideo to the Segment handed to the
// Sink. One op = one frame.
func benchFrames(b *testing.B, params *CodecParams, frames []codecFrame, pay rtp.Payloader) {
	pkts := packetizeFrames(frames, pay, pktOpts{mtu: 1200})
	payloads := make([][][]byte, len(frames))
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
	b.SetBytes(int64(total / len(frames)))
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
	b.ReportMetric(float64(len(pkts))/float64(len(frames)), "pkts/frame")
}

// BenchmarkRemuxVP9Frame, BenchmarkRemuxAV1Frame, BenchmarkRemuxH265Frame:
// the 640x360 30 fps files of testdata/media (keyframe every 30 frames).
func BenchmarkRemuxVP9Frame(b *testing.B) {
	benchFrames(b, &CodecParams{MimeType: MimeTypeVP9}, loadVP9(b, "../testdata/media/vp9_640x360_30fps.ivf"), codecCases[0].pay())
}

func BenchmarkRemuxVP9FlexibleFrame(b *testing.B) {
	benchFrames(b, &CodecParams{MimeType: MimeTypeVP9}, loadVP9(b, "../testdata/media/vp9_640x360_30fps.ivf"), codecCases[1].pay())
}

func BenchmarkRemuxAV1Frame(b *testing.B) {
	benchFrames(b, &CodecParams{MimeType: MimeTypeAV1}, loadAV1(b, "../testdata/media/av1_640x360_30fps.ivf"), codecCases[2].pay())
}

func BenchmarkRemuxH265Frame(b *testing.B) {
	benchFrames(b, &CodecParams{MimeType: MimeTypeH265}, loadH265(b, "../testdata/media/h265_640x360_30fps.h265"), codecCases[3].pay())
}
