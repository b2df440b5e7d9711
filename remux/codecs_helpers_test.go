package remux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/ivf"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/bitstream"
)

// Test media made by testdata/gen_codecs.sh (ffmpeg testsrc2, keyframe every
// 30 frames, no B-frames / alt-ref, like WebRTC encoders).
const (
	fileVP9      = "testdata/vp9_320x240.ivf"
	fileVP9Small = "testdata/vp9_160x120.ivf"
	fileVP9P2    = "testdata/vp9p2_160x120.ivf"
	fileAV1      = "testdata/av1_320x240.ivf"
	fileAV1Small = "testdata/av1_160x120.ivf"
	fileH265     = "testdata/h265_320x240.h265"
	fileH265Sm   = "testdata/h265_160x120.h265"
)

// codecFrame is one coded picture of a test file: what is sent (wire) and
// what remux must store in mdat (sample).
type codecFrame struct {
	wire   []byte
	sample []byte
	key    bool
}

// readIVFFrames reads the frames of an IVF file.
func readIVFFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ivf.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		fr, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fr.Data)
	}
	return out
}

func loadVP9(t testing.TB, path string) []codecFrame {
	var out []codecFrame
	for _, f := range readIVFFrames(t, path) {
		key, ok := bitstream.VP9IsKeyframe(f)
		if !ok {
			t.Fatal("not a VP9 frame")
		}
		out = append(out, codecFrame{wire: f, sample: f, key: key})
	}
	return out
}

// av1OBUs splits a low-overhead AV1 temporal unit (every OBU with a size
// field) into whole OBUs.
func av1OBUs(t testing.TB, tu []byte) [][]byte {
	var out [][]byte
	for len(tu) > 0 {
		h := tu[0]
		hl := 1
		if h&4 != 0 {
			hl = 2
		}
		if h&2 == 0 {
			t.Fatal("OBU without size field in test data")
		}
		l, n := readLEB128(tu[hl:])
		end := hl + n + int(l)
		out = append(out, tu[:end])
		tu = tu[end:]
	}
	return out
}

func loadAV1(t testing.TB, path string) []codecFrame {
	var out []codecFrame
	for _, tu := range readIVFFrames(t, path) {
		var sample []byte
		key := false
		for _, o := range av1OBUs(t, tu) {
			typ := (o[0] >> 3) & 0xf
			if typ == obuTemporalDelimiter || typ == obuPadding {
				continue
			}
			if typ == obuSequenceHeader {
				key = true // libaom sends one with every keyframe, only then
			}
			sample = append(sample, o...)
		}
		out = append(out, codecFrame{wire: tu, sample: sample, key: key})
	}
	return out
}

// loadH265 splits an Annex B H.265 stream into access units: a new one
// starts at a VPS/SPS/PPS/AUD/prefix SEI after a slice, or at a slice with
// first_slice_segment_in_pic_flag after a slice.
func loadH265(t testing.TB, path string) []codecFrame {
	nals := readAnnexB(t, path)
	var out []codecFrame
	var cur codecFrame
	sawVCL := false
	flush := func() {
		if sawVCL {
			out = append(out, cur)
		}
		cur = codecFrame{}
		sawVCL = false
	}
	for _, n := range nals {
		typ := (n[0] >> 1) & 0x3f
		vcl := typ < 32
		if sawVCL && ((typ >= 32 && typ <= 35) || typ == 39 || (vcl && n[2]&0x80 != 0)) {
			flush()
		}
		cur.wire = append(cur.wire, 0, 0, 0, 1)
		cur.wire = append(cur.wire, n...)
		if vcl || typ == 39 || typ == 40 {
			cur.sample = binary.BigEndian.AppendUint32(cur.sample, uint32(len(n)))
			cur.sample = append(cur.sample, n...)
		}
		if vcl {
			sawVCL = true
			if typ >= 16 && typ <= 21 {
				cur.key = true
			}
		}
	}
	flush()
	return out
}

type codecCase struct {
	name   string
	params *CodecParams
	file   string
	small  string // a second file at another resolution
	load   func(testing.TB, string) []codecFrame
	pay    func() rtp.Payloader
	codec  string // codec string of file
	width  int
	height int
	sample string // sample entry type
}

var codecCases = []codecCase{
	{
		name: "VP9", params: &CodecParams{MimeType: "video/VP9", ClockRate: 90000}, file: fileVP9, small: fileVP9Small,
		load: loadVP9, pay: func() rtp.Payloader { return &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 100 }} },
		codec: "vp09.00.20.08", width: 320, height: 240, sample: "vp09",
	},
	{
		name: "VP9-flexible", params: &CodecParams{MimeType: "video/vp9"}, file: fileVP9, small: fileVP9Small,
		load: loadVP9, pay: func() rtp.Payloader {
			return &codecs.VP9Payloader{FlexibleMode: true, InitialPictureIDFn: func() uint16 { return 0x7ff0 }}
		},
		codec: "vp09.00.20.08", width: 320, height: 240, sample: "vp09",
	},
	{
		name: "AV1", params: &CodecParams{MimeType: "video/AV1", ClockRate: 90000}, file: fileAV1, small: fileAV1Small,
		load: loadAV1, pay: func() rtp.Payloader { return &codecs.AV1Payloader{} },
		codec: "av01.0.00M.08.0.110.02.02.02.0", width: 320, height: 240, sample: "av01",
	},
	{
		name: "H265", params: &CodecParams{MimeType: "video/H265", ClockRate: 90000}, file: fileH265, small: fileH265Sm,
		load: loadH265, pay: func() rtp.Payloader { return &codecs.H265Payloader{} },
		codec: "hvc1.1.6.L60.90", width: 320, height: 240, sample: "hvc1",
	},
}

// packetizeFrames turns frames into RTP packets with a pion payloader; the
// last packet of each frame has the marker bit.
func packetizeFrames(frames []codecFrame, pay rtp.Payloader, o pktOpts) []timedPacket {
	if o.tsStep == 0 {
		o.tsStep = 3000
	}
	if o.frameDur == 0 {
		o.frameDur = time.Second / 30
	}
	if o.start.IsZero() {
		o.start = time.Unix(1000, 0)
	}
	var out []timedPacket
	seq := o.seq
	for i, f := range frames {
		payloads := pay.Payload(o.mtu, f.wire)
		for j, p := range payloads {
			out = append(out, timedPacket{
				pkt: &rtp.Packet{Header: rtp.Header{
					Version: 2, PayloadType: 96, SequenceNumber: seq,
					Timestamp: o.ts + uint32(i)*o.tsStep, Marker: j == len(payloads)-1, SSRC: 1,
				}, Payload: p},
				arrival: o.start.Add(time.Duration(i)*o.frameDur + time.Duration(j)*50*time.Microsecond),
				frame:   i,
			})
			seq++
		}
	}
	return out
}

func newCodecHarness(t *testing.T, p *CodecParams, audio bool) *harness {
	t.Helper()
	h := &harness{sink: &recSink{}}
	cfg := Config{Sink: h.sink, Video: p, RequestKeyframe: func() { h.kf.Add(1) }}
	if audio {
		cfg.Audio = opusParams()
	}
	s, err := NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	return h
}

// checkCodecOutput checks one init's file against the frames it must hold:
// same sample bytes, sync flags, and ffmpeg decodes every frame cleanly.
func checkCodecOutput(t *testing.T, data []byte, in *Init, want []codecFrame) {
	t.Helper()
	ps := videoSamples(parseMP4(t, data, in))
	if len(ps) != len(want) {
		t.Fatalf("%d video samples, want %d", len(ps), len(want))
	}
	for i, p := range ps {
		if !bytes.Equal(p.data, want[i].sample) {
			t.Fatalf("sample %d: %d bytes differ from the input frame (%d bytes)", i, len(p.data), len(want[i].sample))
		}
		wantFlags := uint32(flagsNonSync)
		if want[i].key {
			wantFlags = flagsSync
		}
		if p.flags != wantFlags {
			t.Fatalf("sample %d: flags %#x, want %#x", i, p.flags, wantFlags)
		}
	}
	if !want[0].key {
		t.Fatal("first sample after an init is not a keyframe")
	}
	path := ffmpegDecode(t, data)
	if n := ffprobeCount(t, path, "v:0", false); n != len(want) {
		t.Fatalf("ffprobe decoded %d frames, want %d", n, len(want))
	}
}
