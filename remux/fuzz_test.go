package remux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/pion/rtp"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// splitChunks cuts fuzz input into payloads: a length byte, then that many
// bytes.
func splitChunks(data []byte, max int) [][]byte {
	var out [][]byte
	for len(data) > 0 && len(out) < max {
		n := int(data[0])
		data = data[1:]
		if n > len(data) {
			n = len(data)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func joinChunks(chunks [][]byte) []byte {
	var b []byte
	for _, c := range chunks {
		if len(c) > 255 {
			c = c[:255]
		}
		b = append(b, byte(len(c)))
		b = append(b, c...)
	}
	return b
}

// checkAVCC checks that sample data is well-formed length-prefixed NAL
// units of the kinds remux keeps.
func checkAVCC(t *testing.T, b []byte) {
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated NAL unit")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n == 0 || n > len(b)-4 {
			t.Fatalf("bad NAL length %d of %d", n, len(b)-4)
		}
		if typ := b[4] & 0x1f; typ < 1 || typ > 6 {
			t.Fatalf("NAL type %d in sample data", typ)
		}
		b = b[4+n:]
	}
}

func FuzzH264Depacketize(f *testing.F) {
	f.Add(joinChunks([][]byte{{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, {0x65, 0x88, 1, 2}}))
	f.Add(joinChunks([][]byte{{0x7c, 0x85, 0x88, 1}, {0x7c, 0x05, 2}, {0x7c, 0x45, 3}}))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzAssembler(t, newH264Assembler(), data, checkAVCC) })
}

func FuzzOpusTOC(f *testing.F) {
	f.Add([]byte{0xfc, 1, 2, 3})
	f.Add([]byte{0x1f<<3 | 3, 0xc3, 2, 1, 2, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := opusDuration(data)
		if err != nil {
			return
		}
		if d == 0 || d > opusMaxPacketSamples {
			t.Fatalf("duration %d", d)
		}
		if len(data) == 0 {
			t.Fatal("empty packet accepted")
		}
	})
}

func FuzzSPS(f *testing.F) {
	f.Add([]byte{0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxParamSetLen {
			return
		}
		_, _ = parseSPS(data)
		a := newH264Assembler()
		a.newSPS = append([]byte(nil), data...)
		a.newPPS = []byte{0x68, 0xce, 0x3c, 0x80}
		if a.commit() != nil {
			return
		}
		in, err := buildInit(a, &audioTrackInfo{channels: 2})
		if err != nil {
			return
		}
		if in.Tracks[0].Width <= 0 || in.Tracks[0].Height <= 0 {
			t.Fatalf("init with size %dx%d", in.Tracks[0].Width, in.Tracks[0].Height)
		}
	})
}

// encodeRecords turns packets into FuzzStreamPackets input: per packet a
// flags byte (bit 0 audio, bit 1 marker), seq delta (int8), timestamp delta
// (int16, in units of 64 ticks), arrival delta (ms), payload length, payload.
func encodeRecords(pkts []timedPacket) []byte {
	var b []byte
	var seq [2]uint16
	var ts [2]uint32
	var last time.Time
	for i, p := range pkts {
		k := 0
		if p.audio {
			k = 1
		}
		fl := byte(k)
		if p.pkt.Marker {
			fl |= 2
		}
		if len(p.pkt.Payload) > 255 {
			continue
		}
		ds := int8(p.pkt.SequenceNumber - seq[k])
		dt := int16(int32(p.pkt.Timestamp-ts[k]) / 64)
		var da byte
		if i > 0 {
			da = byte(min(255, p.arrival.Sub(last)/time.Millisecond))
		}
		b = append(b, fl, byte(ds), byte(uint16(dt)>>8), byte(dt), da, byte(len(p.pkt.Payload)))
		b = append(b, p.pkt.Payload...)
		seq[k] = p.pkt.SequenceNumber
		ts[k] = p.pkt.Timestamp
		last = p.arrival
	}
	return b
}

// checkingSink checks the Sink contract as output comes, and the video
// timing every segment must have: decode times that rise, composition
// offsets >= 0 (decode time <= presentation time), durations > 0.
type checkingSink struct {
	t         *testing.T
	init      *Init
	fin       *fmp4check.Init
	needKey   bool
	buf       []byte
	lastVideo time.Duration
	nVideo    int
	lastDTS   int64 // decode time of the last video sample (-1: none)
}

func (c *checkingSink) WriteInit(i *Init) {
	if len(i.Data) == 0 || len(i.Tracks) == 0 || i.MIME == "" {
		c.t.Fatalf("bad init %+v", i)
	}
	fin, err := fmp4check.ParseInit(i.Data)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.init == nil {
		c.lastDTS = -1 // decode times run on across inits
	}
	c.init, c.fin = i, fin
	c.needKey = true
	c.buf = append(c.buf[:0], i.Data...)
}

func (c *checkingSink) checkVideoTiming(data []byte) {
	samples, err := fmp4check.ParseSegment(c.fin, data)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, s := range samples {
		if c.fin.Tracks[s.TrackID].Kind != "video" {
			continue
		}
		if int64(s.DecodeTime) <= c.lastDTS || s.Offset < 0 || s.Duration == 0 {
			c.t.Fatalf("video sample at decode time %d after %d, composition offset %d, duration %d", s.DecodeTime, c.lastDTS, s.Offset, s.Duration)
		}
		c.lastDTS = int64(s.DecodeTime)
	}
}

func (c *checkingSink) WriteSegment(s *Segment) {
	if c.init == nil {
		c.t.Fatal("segment before init")
	}
	if c.needKey && s.HasVideo && !s.Keyframe {
		c.t.Fatal("first video segment after init is not a keyframe")
	}
	if s.HasVideo {
		c.needKey = false
		if c.nVideo > 0 && s.Time <= c.lastVideo {
			c.t.Fatalf("video time %v after %v", s.Time, c.lastVideo)
		}
		c.lastVideo = s.Time
		c.nVideo++
	}
	if len(s.Data) < 8 || string(s.Data[4:8]) != "moof" {
		c.t.Fatal("segment does not start with moof")
	}
	c.checkVideoTiming(s.Data)
	c.buf = append(c.buf, s.Data...)
}

func FuzzStreamPackets(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) { pushRecords(t, h264Params(), data, false) })
}

// pushRecords feeds a Stream of video params (and Opus) the packets that
// data encodes, 6-byte records each followed by a payload: flags (bit 0
// audio, bit 1 marker, bit 2 with senderReports: an RTCP sender report, not
// a packet), a sequence number step, a timestamp step in 64-tick units, an
// arrival step in ms, the payload length. Nothing may panic, and what comes
// out must parse as MP4.
func pushRecords(t *testing.T, params *CodecParams, data []byte, senderReports bool) {
	sink := &checkingSink{t: t}
	s, err := NewStream(Config{Video: params, Audio: opusParams(), Sink: sink, RequestKeyframe: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	var seq [2]uint16
	ts := [2]uint32{1<<32 - 5000, 1<<32 - 3000}
	ntp := [2]uint64{0xe000000000000000, 0xe000000000000000}
	now := time.Unix(1000, 0)
	pkt := &rtp.Packet{}
	for n := 0; len(data) >= 6 && n < 2000; n++ {
		fl := data[0]
		k := int(fl & 1)
		dts := int32(int16(binary.BigEndian.Uint16(data[2:])))
		if senderReports && fl&4 != 0 {
			ntp[k] += uint64(int64(dts) << 32 / 1000)
			s.PushSenderReport(TrackKind(k+1), ntp[k], ts[k]+uint32(int32(int8(data[1]))*64))
			data = data[6:]
			continue
		}
		seq[k] += uint16(int8(data[1]))
		ts[k] += uint32(dts * 64)
		now = now.Add(time.Duration(data[4]) * time.Millisecond)
		l := min(int(data[5]), len(data)-6)
		pkt.SequenceNumber = seq[k]
		pkt.Timestamp = ts[k]
		pkt.Marker = fl&2 != 0
		pkt.Payload = data[6 : 6+l]
		data = data[6+l:]
		if k == 0 {
			s.PushVideo(pkt, now)
		} else {
			s.PushAudio(pkt, now)
		}
	}
	if sink.init != nil && len(sink.buf) > len(sink.init.Data) {
		if _, err := mp4.DecodeFile(bytes.NewReader(sink.buf)); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
	}
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpora from the test
// media. Run with REMUX_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("REMUX_WRITE_SEEDS") != "1" {
		t.Skip("set REMUX_WRITE_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(fuzz, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	aus := loadAUs(t, fileSlices)
	// Depacketizer: the packets of a keyframe and of a P frame, MTU 200.
	pk := packetizeH264(aus[:2], pktOpts{mtu: 200})
	var frames [2][][]byte
	for _, p := range pk {
		frames[p.frame] = append(frames[p.frame], p.pkt.Payload)
	}
	write("FuzzH264Depacketize", "keyframe-fua-stapa", joinChunks(frames[0]))
	write("FuzzH264Depacketize", "pframe", joinChunks(frames[1]))
	pk = packetizeH264(aus[:1], pktOpts{mtu: 60000, disableStap: true})
	var single [][]byte
	for _, p := range pk {
		if len(p.pkt.Payload) <= 255 {
			single = append(single, p.pkt.Payload)
		}
	}
	write("FuzzH264Depacketize", "single-nal-params", joinChunks(single))
	// Opus packets.
	opus := readOggOpus(t, fileOpus)
	for i := 0; i < 3; i++ {
		write("FuzzOpusTOC", fmt.Sprintf("sine-%d", i), opus[i*20])
	}
	write("FuzzOpusTOC", "code3-vbr-pad", []byte{0x1f<<3 | 3, 0xc3, 2, 1, 2, 3, 0, 0})
	// SPS of both test files.
	for _, file := range []string{fileSlices, fileResChange} {
		for _, n := range readAnnexB(t, file) {
			if n[0]&0x1f == 7 {
				write("FuzzSPS", fmt.Sprintf("sps-%x", n[1:4]), n)
			}
		}
	}
	// Stream: video at MTU 200 with audio, a few frames.
	vp := packetizeH264(aus[:4], pktOpts{mtu: 200, start: time.Unix(0, 0)})
	ap := packetizeOpus(opus[:8], 0, 0, time.Unix(0, 0))
	write("FuzzStreamPackets", "av-4-frames", encodeRecords(mergeByArrival(vp, ap)))
	write("FuzzStreamPackets", "video-2-frames", encodeRecords(vp[:len(vp)/2]))
}

// h264ReorderFrames walks untrusted SPS bytes: bounded time, no panic, and
// a declared depth within the spec's range.
func FuzzH264ReorderFrames(f *testing.F) {
	for _, name := range []string{"testdata/bframes_320x240.h264", "testdata/slices2_320x240.h264"} {
		for _, au := range splitAUs(readAnnexB(f, name))[:1] {
			for _, nal := range au.nals {
				if len(nal) > 0 && nal[0]&0x1f == 7 {
					f.Add(nal)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, sps []byte) {
		if n, ok := h264ReorderFrames(sps); n < 0 || n > 16 || (!ok && n != 0) {
			t.Fatalf("reorder %d, %v", n, ok)
		}
	})
}

func TestH264ReorderFrames(t *testing.T) {
	for _, c := range []struct {
		file string
		want int
		ok   bool
	}{
		{"testdata/bframes_320x240.h264", 1, true}, // x264 main, 2 B-frames, no pyramid
		{"testdata/slices2_320x240.h264", 0, true}, // x264 baseline: declared, none
	} {
		var sps []byte
		for _, nal := range splitAUs(readAnnexB(t, c.file))[0].nals {
			if nal[0]&0x1f == 7 {
				sps = nal
			}
		}
		if n, ok := h264ReorderFrames(sps); n != c.want || ok != c.ok {
			t.Errorf("%s: reorder %d %v, want %d %v", c.file, n, ok, c.want, c.ok)
		}
	}
	// The crafted SPS that kept mp4ff's full VUI parse busy for 30 s.
	crafted := []byte("'20017\xbe\xbd\xbe0007\xbe\xe5\x17\x7f\x00\x00\x000\xffz70\xaf12<z\xee2\xb4#A10\xcdA0")
	h264ReorderFrames(crafted)
}
