package peer

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/remux"
)

type dropSink struct{}

func (dropSink) WriteInit(*remux.Init)       {}
func (dropSink) WriteSegment(*remux.Segment) {}

// rtpSource replays the RTP packets of a 720p30 H.264 file (MTU 1200, as
// Pion's sending tracks packetize), looped with sequence numbers and
// timestamps carried on, as a track's Read would hand them out.
type rtpSource struct {
	pkts    [][]byte
	i       int
	seq     uint16
	tsBase  uint32
	lastTS  uint32
	frameTS uint32
}

func newRTPSource(tb testing.TB) *rtpSource {
	aus, err := mediafile.ReadH264("../testdata/media/h264_1280x720_30fps_2500k.h264")
	if err != nil {
		tb.Fatal(err)
	}
	pz := rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(0), 90000)
	src := &rtpSource{frameTS: 3000}
	for _, au := range aus {
		for _, p := range pz.Packetize(au.Data, 3000) {
			b, err := p.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			src.pkts = append(src.pkts, b)
		}
	}
	return src
}

func (s *rtpSource) read(buf []byte) (int, struct{}, error) {
	if s.i == len(s.pkts) {
		s.i = 0
		s.tsBase = s.lastTS + s.frameTS
	}
	n := copy(buf, s.pkts[s.i])
	s.i++
	binary.BigEndian.PutUint16(buf[2:], s.seq)
	s.seq++
	ts := binary.BigEndian.Uint32(buf[4:]) - binary.BigEndian.Uint32(s.pkts[0][4:]) + s.tsBase
	binary.BigEndian.PutUint32(buf[4:], ts)
	s.lastTS = ts
	return n, struct{}{}, nil
}

// BenchmarkPumpRTP is a track's per-packet path on our side of Pion:
// read into the reused buffer, parse into the reused packet, push into the
// remuxer (reorder window, frame assembly, and at each frame's last packet
// the fMP4 fragment). One op = one RTP packet. "parse" leaves the remuxer
// out: 0 allocations per packet; "remux": the remuxer's 2 allocations per
// frame (the fragment's bytes and its *Segment, shared by every viewer),
// spread over the frame's packets. "remux-readrtp" is the loop before
// (TrackRemote.ReadRTP's buffer and packet allocated per packet).
func BenchmarkPumpRTP(b *testing.B) {
	for _, name := range []string{"parse", "remux", "remux-readrtp"} {
		b.Run(name, func(b *testing.B) {
			src := newRTPSource(b)
			push := func(*rtp.Packet, time.Time) {}
			if name != "parse" {
				st, err := remux.NewStream(remux.Config{Video: &remux.CodecParams{MimeType: "video/H264"}, Sink: dropSink{}})
				if err != nil {
					b.Fatal(err)
				}
				push = st.PushVideo
			}
			n := 0
			read := func(buf []byte) (int, struct{}, error) {
				if n == b.N {
					return 0, struct{}{}, errClosed
				}
				n++
				return src.read(buf)
			}
			// Warm up: the first frames make the init and grow buffers.
			warm := 0
			pumpRTP(func(buf []byte) (int, struct{}, error) {
				if warm == 2000 {
					return 0, struct{}{}, errClosed
				}
				warm++
				return src.read(buf)
			}, push)
			b.ReportAllocs()
			b.ResetTimer()
			if name == "remux-readrtp" {
				// Before: as TrackRemote.ReadRTP, a new buffer (Pion's
				// receive MTU) and a new packet per packet.
				for {
					buf := make([]byte, 1460)
					n, _, err := read(buf)
					if err != nil {
						return
					}
					pkt := &rtp.Packet{}
					if pkt.Unmarshal(buf[:n]) == nil {
						push(pkt, time.Now())
					}
				}
			}
			pumpRTP(read, push)
		})
	}
}

// TestPumpRTPNoAllocs: the per-packet path allocates nothing but the
// remuxer's fragments (checked without them).
func TestPumpRTPNoAllocs(t *testing.T) {
	src := newRTPSource(t)
	var got int
	push := func(p *rtp.Packet, _ time.Time) { got += len(p.Payload) }
	one := 0
	read := func(buf []byte) (int, struct{}, error) {
		if one == 1 {
			return 0, struct{}{}, errClosed
		}
		one++
		return src.read(buf)
	}
	if a := testing.AllocsPerRun(100, func() {
		one = 0
		pumpRTP(read, push)
	}); a > 2 { // the buffer and the packet, once per pump (per track), not per packet
		t.Errorf("%v allocations per pump of one packet", a)
	}
	// Many packets per pump: still only the per-pump ones.
	many := 0
	readMany := func(buf []byte) (int, struct{}, error) {
		if many == 500 {
			return 0, struct{}{}, errClosed
		}
		many++
		return src.read(buf)
	}
	if a := testing.AllocsPerRun(20, func() {
		many = 0
		pumpRTP(readMany, push)
	}); a > 2 {
		t.Errorf("%v allocations per pump of 500 packets, want the 2 of the pump itself", a)
	}
	if got == 0 {
		t.Fatal("nothing pushed")
	}
}
