package remux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/mseway/mseway/bitstream"
)

// fuzzAssembler feeds chunks of data as RTP payloads of one frame, twice
// (the second round sees the configuration the first one left), checks the
// sample data of a complete frame with check, and builds an init from any
// configuration a keyframe commits: it must parse back.
func fuzzAssembler(t *testing.T, a videoAssembler, data []byte, check func(*testing.T, []byte)) {
	for round := 0; round < 2; round++ {
		a.reset()
		for _, p := range splitChunks(data, 512) {
			a.add(p)
		}
		fr := a.finish()
		if fr.status == frameOK {
			if len(fr.data) == 0 {
				t.Fatal("complete frame without data")
			}
			check(t, fr.data)
		}
		if fr.status == frameOK && fr.key && a.commit() == nil {
			in, err := buildInit(a, &audioTrackInfo{channels: 2})
			if err != nil {
				continue // refused by the descriptor: an error, never a panic
			}
			tr := in.Tracks[0]
			if tr.Width <= 0 || tr.Height <= 0 || tr.Codec == "" {
				t.Fatalf("init track %+v", tr)
			}
			if _, err := mp4.DecodeFile(bytes.NewReader(in.Data)); err != nil {
				t.Fatalf("init does not parse: %v", err)
			}
		}
	}
}

func checkVP9Sample(t *testing.T, b []byte) {
	if _, ok := bitstream.VP9IsKeyframe(b); !ok {
		t.Fatalf("sample is not a VP9 frame: % x", b[:min(len(b), 4)])
	}
}

// checkAV1Sample: OBUs with size fields, none of the dropped kinds.
func checkAV1Sample(t *testing.T, b []byte) {
	for len(b) > 0 {
		h := b[0]
		if h&2 == 0 || h&0x80 != 0 {
			t.Fatalf("OBU header %#x", h)
		}
		switch typ := (h >> 3) & 0xf; typ {
		case obuTemporalDelimiter, obuTileList, obuPadding:
			t.Fatalf("OBU type %d in sample data", typ)
		}
		hl := 1 + int(h>>2&1)
		if len(b) < hl {
			t.Fatal("truncated OBU header")
		}
		l, n := readLEB128(b[hl:])
		if n == 0 || l > uint64(len(b)-hl-n) {
			t.Fatal("bad OBU size")
		}
		b = b[hl+n+int(l):]
	}
}

// checkHEVCSample: length-prefixed NAL units of the kinds remux keeps.
func checkHEVCSample(t *testing.T, b []byte) {
	for len(b) > 0 {
		if len(b) < 7 {
			t.Fatal("truncated NAL unit")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n < 3 || n > len(b)-4 {
			t.Fatalf("bad NAL length %d of %d", n, len(b)-4)
		}
		typ := (b[4] >> 1) & 0x3f
		if !(typ <= 9 || (typ >= 16 && typ <= 21) || typ == 39 || typ == 40) {
			t.Fatalf("NAL type %d in sample data", typ)
		}
		b = b[4+n:]
	}
}

func FuzzVP9Depacketize(f *testing.F) {
	f.Add(joinChunks([][]byte{{0x88, 0x80, 0x01, 0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0e, 0xf6}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzAssembler(t, newVP9Assembler(), data, checkVP9Sample)
	})
}

func FuzzAV1Depacketize(f *testing.F) {
	f.Add(joinChunks([][]byte{{0x18, 0x0b, 0x08, 0, 0, 0, 0x04, 0x3c, 0xff, 0xbc, 0xff, 0xf9, 0x80, 0x30, 0x10, 0x00}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzAssembler(t, newAV1Assembler(), data, checkAV1Sample)
	})
}

func FuzzH265Depacketize(f *testing.F) {
	f.Add(joinChunks([][]byte{{0x60, 0x01, 0, 4, 0x40, 0x01, 0x0c, 0x01}, {0x62, 0x01, 0x93, 0xaf, 0x01}, {0x62, 0x01, 0x53, 0x02}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzAssembler(t, newH265Assembler(), data, checkHEVCSample)
	})
}

// FuzzVP9Header: the uncompressed header of a keyframe, straight into the
// configuration, codec string and vpcC.
func FuzzVP9Header(f *testing.F) {
	f.Add([]byte{0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0e, 0xf6})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := newVP9Assembler()
		a.buf = append(a.buf, data...)
		a.inspect()
		if a.broken || !a.gotCfg {
			return
		}
		if key, ok := bitstream.VP9IsKeyframe(data); !ok || !key {
			t.Fatal("configuration from a frame that is not a keyframe")
		}
		a.frames = 1
		fuzzAssemblerInit(t, a)
	})
}

// FuzzAV1SequenceHeader: a sequence header OBU payload into av1C and the
// codec string.
func FuzzAV1SequenceHeader(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xff, 0xf9, 0x80, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxParamSetLen {
			return
		}
		_, _ = parseAV1SequenceHeader(data)
		a := newAV1Assembler()
		a.newSeq = append(a.newSeq, data...)
		fuzzAssemblerInit(t, a)
	})
}

// FuzzH265ParamSets: VPS, SPS and PPS (three chunks) into hvcC and the codec
// string.
func FuzzH265ParamSets(f *testing.F) {
	f.Add(joinChunks([][]byte{{0x40, 0x01, 0x0c}, {0x42, 0x01, 0x01}, {0x44, 0x01, 0xc1}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps := splitChunks(data, 3)
		if len(ps) != 3 {
			return
		}
		_, _ = parseHEVCSPS(ps[1])
		a := newH265Assembler()
		a.newVPS, a.newSPS, a.newPPS = ps[0], ps[1], ps[2]
		fuzzAssemblerInit(t, a)
	})
}

// fuzzAssemblerInit commits the assembler's pending configuration and
// builds an init from it: errors are fine, panics and unparsable inits are not.
func fuzzAssemblerInit(t *testing.T, a videoAssembler) {
	if a.commit() != nil {
		return
	}
	in, err := buildInit(a, nil)
	if err != nil {
		return
	}
	if in.Tracks[0].Width <= 0 || in.Tracks[0].Height <= 0 {
		t.Fatalf("init track %+v", in.Tracks[0])
	}
	if _, err := mp4.DecodeFile(bytes.NewReader(in.Data)); err != nil {
		t.Fatalf("init does not parse: %v", err)
	}
}

// FuzzStreamCodecs runs packet records (the FuzzStreamPackets format) through
// a Stream of the codec the first byte picks, with sender reports: a record
// whose flags have bit 2 set is a report for that track whose NTP time moves
// by the timestamp delta in ms.
func FuzzStreamCodecs(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 3, 0x88, 0x82, 0x49})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		mimes := []string{MimeTypeH264, MimeTypeVP9, MimeTypeAV1, MimeTypeH265}
		mime := mimes[int(data[0])%len(mimes)]
		data = data[1:]
		pushRecords(t, &CodecParams{MimeType: mime}, data, true)
	})
}

// TestWriteCodecFuzzSeeds regenerates the seed corpora of the codec fuzz
// targets from the test media. Run with REMUX_WRITE_SEEDS=1.
func TestWriteCodecFuzzSeeds(t *testing.T) {
	if os.Getenv("REMUX_WRITE_SEEDS") != "1" {
		t.Skip("set REMUX_WRITE_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	write := writeSeed(t)
	targets := map[string]string{"VP9": "FuzzVP9Depacketize", "VP9-flexible": "FuzzVP9Depacketize", "AV1": "FuzzAV1Depacketize", "H265": "FuzzH265Depacketize"}
	for ci, cc := range codecCases {
		frames := cc.load(t, cc.file)
		// Keyframe and P frame, MTU 200, each as its own seed (chunks are at
		// most 255 bytes: a small MTU keeps every payload whole).
		pk := packetizeFrames(frames[:2], cc.pay(), pktOpts{mtu: 200})
		var per [2][][]byte
		for _, p := range pk {
			per[p.frame] = append(per[p.frame], p.pkt.Payload)
		}
		write(targets[cc.name], cc.name+"-keyframe", joinChunks(per[0]))
		write(targets[cc.name], cc.name+"-pframe", joinChunks(per[1]))
		// Stream records: codec byte, then 3 frames.
		vp := packetizeFrames(frames[:3], cc.pay(), pktOpts{mtu: 200, start: time.Unix(0, 0)})
		opus := readOggOpus(t, fileOpus)
		ap := packetizeOpus(opus[:6], 0, 0, time.Unix(0, 0))
		codecByte := map[string]byte{"VP9": 1, "VP9-flexible": 1, "AV1": 2, "H265": 3}[cc.name]
		if ci != 1 {
			write("FuzzStreamCodecs", cc.name+"-3-frames", append([]byte{codecByte}, encodeRecords(mergeByArrival(vp, ap))...))
		}
	}
	write("FuzzStreamCodecs", "h264-3-frames", append([]byte{0}, encodeRecords(packetizeH264(loadAUs(t, fileSlices)[:3], pktOpts{mtu: 200, start: time.Unix(0, 0)}))...))
	for _, file := range []string{fileVP9, fileVP9Small, fileVP9P2} {
		fr := loadVP9(t, file)[0]
		write("FuzzVP9Header", "key-"+file[9:], fr.sample[:min(len(fr.sample), 64)])
	}
	for _, file := range []string{fileAV1, fileAV1Small} {
		for _, o := range av1OBUs(t, loadAV1(t, file)[0].sample) {
			if (o[0]>>3)&0xf == obuSequenceHeader {
				l, n := readLEB128(o[1:])
				write("FuzzAV1SequenceHeader", "seq-"+file[9:], o[1+n:1+n+int(l)])
			}
		}
	}
	for _, file := range []string{fileH265, fileH265Sm} {
		var ps [3][]byte
		for _, n := range readAnnexB(t, file) {
			if typ := (n[0] >> 1) & 0x3f; typ >= 32 && typ <= 34 && ps[typ-32] == nil {
				ps[typ-32] = n
			}
		}
		write("FuzzH265ParamSets", "ps-"+file[9:], joinChunks(ps[:]))
	}
}

// writeSeed returns a function writing one seed file of a fuzz target.
func writeSeed(t *testing.T) func(fuzz, name string, b []byte) {
	return func(fuzz, name string, b []byte) {
		dir := "testdata/fuzz/" + fuzz
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(dir+"/"+name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
