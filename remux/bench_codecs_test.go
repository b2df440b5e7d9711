package remux

import (
	"testing"

	"github.com/pion/rtp"
)

// benchFrames measures one frame of frames (RTP packets at MTU 1200 from
// the codec's pion payloader) from PushVideo to the Segment handed to the
// Sink. One op = one frame.
func benchFrames(b *testing.B, params *CodecParams, frames []codecFrame, pay rtp.Payloader) {
	benchPackets(b, params, packetizeFrames(frames, pay, pktOpts{mtu: 1200}), len(frames))
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
