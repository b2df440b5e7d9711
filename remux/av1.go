package remux

import (
	"bytes"
	"fmt"

	"github.com/Eyevinn/mp4ff/av1"
	"github.com/Eyevinn/mp4ff/mp4"
)

// MimeTypeAV1 is pion/webrtc's MimeTypeAV1.
const MimeTypeAV1 = "video/AV1"

// AV1 OBU types (AV1 spec 6.2.2).
const (
	obuSequenceHeader       = 1
	obuTemporalDelimiter    = 2
	obuFrameHeader          = 3
	obuTileGroup            = 4
	obuMetadata             = 5
	obuFrame                = 6
	obuRedundantFrameHeader = 7
	obuTileList             = 8
	obuPadding              = 15
)

// maxOBUsPerFrame bounds the OBUs of one temporal unit.
const maxOBUsPerFrame = 1024

// av1Assembler depacketizes AV1 (the AV1 RTP payload format, section 4)
// into a temporal unit in the low-overhead bitstream format MP4 stores
// (every OBU with obu_has_size_field set), without temporal delimiters, tile
// lists or padding. OBU elements fragmented across packets (Z/Y bits) are
// reassembled; a missing fragment breaks the frame. The sequence header OBU
// stays in band (the decoder sees resolution changes) and also configures
// av1C and the codec string.
type av1Assembler struct {
	buf    []byte
	frag   []byte // OBU element continued in the next packet
	inFrag bool
	broken bool
	obus   int

	sawFrame  bool // a frame, frame header or tile group OBU
	sawHeader bool // the first frame header was looked at
	key       bool
	gotSeq    bool   // this temporal unit carried a sequence header
	newSeq    []byte // latest sequence header OBU payload seen (kept across frames)

	seq    []byte // committed sequence header payload
	sh     *av1.SequenceHeader
	codec  string
	width  int
	height int
}

func newAV1Assembler() *av1Assembler {
	return &av1Assembler{buf: make([]byte, 0, 64<<10)}
}

func (a *av1Assembler) reset() {
	a.buf = a.buf[:0]
	a.frag = a.frag[:0]
	a.inFrag = false
	a.broken = false
	a.obus = 0
	a.sawFrame = false
	a.sawHeader = false
	a.key = false
	a.gotSeq = false
}

// readLEB128 decodes an unsigned LEB128 value of at most 8 bytes (AV1 spec
// 4.10.5) that fits in 32 bits. n is 0 when the input is invalid.
func readLEB128(p []byte) (v uint64, n int) {
	for i := 0; i < 8 && i < len(p); i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			if v > 1<<32-1 {
				return 0, 0
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func appendLEB128(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func (a *av1Assembler) add(p []byte) {
	if a.broken {
		return
	}
	if len(p) < 2 {
		a.broken = true
		return
	}
	agg := p[0]
	z, y, w := agg&0x80 != 0, agg&0x40 != 0, int(agg>>4)&3
	if z != a.inFrag {
		// A continuation without its start, or a fragment that never ended.
		a.broken = true
		return
	}
	q := p[1:]
	for i := 0; len(q) > 0; i++ {
		var n int
		if w == 0 || i < w-1 {
			l, ln := readLEB128(q)
			if ln == 0 || l > uint64(len(q)-ln) {
				a.broken = true
				return
			}
			n = int(l)
			q = q[ln:]
		} else {
			n = len(q)
		}
		elem := q[:n]
		q = q[n:]
		last := len(q) == 0
		if i == 0 && z {
			if len(a.frag)+len(elem) > maxFrameBytes {
				a.broken = true
				return
			}
			a.frag = append(a.frag, elem...)
			if last && y {
				return // continues in the next packet
			}
			a.inFrag = false
			a.obu(a.frag)
			a.frag = a.frag[:0]
		} else if last && y {
			a.frag = append(a.frag[:0], elem...)
			a.inFrag = true
			return
		} else {
			a.obu(elem)
		}
		if a.broken {
			return
		}
	}
}

// addFrame takes a temporal unit in the low-overhead format (AV1 spec
// 5.2): OBUs one after the other, each with its size field but the last,
// which may run to the end.
func (a *av1Assembler) addFrame(tu []byte) {
	for len(tu) > 0 && !a.broken {
		h := tu[0]
		hl := 1
		if h&4 != 0 { // obu_extension_flag
			hl = 2
		}
		n := len(tu)
		if h&2 != 0 && len(tu) > hl { // obu_has_size_field
			size, ln := readLEB128(tu[hl:])
			if ln == 0 || size > uint64(len(tu)-hl-ln) {
				a.broken = true
				return
			}
			n = hl + ln + int(size)
		}
		a.obu(tu[:n])
		tu = tu[n:]
	}
}

// obu appends one complete OBU (with or without its size field) to the
// temporal unit.
func (a *av1Assembler) obu(o []byte) {
	if len(o) == 0 {
		return
	}
	h := o[0]
	if h&0x80 != 0 || h&1 != 0 { // forbidden bit, reserved bit
		a.broken = true
		return
	}
	typ := (h >> 3) & 0xf
	hl := 1
	if h&4 != 0 {
		hl = 2
	}
	if len(o) < hl {
		a.broken = true
		return
	}
	payload := o[hl:]
	if h&2 != 0 { // obu_has_size_field
		l, n := readLEB128(payload)
		if n == 0 || l > uint64(len(payload)-n) {
			a.broken = true
			return
		}
		payload = payload[n : n+int(l)]
	}
	switch typ {
	case obuTemporalDelimiter, obuTileList, obuPadding:
		return
	case obuSequenceHeader:
		if len(payload) == 0 || len(payload) > maxParamSetLen {
			a.broken = true
			return
		}
		a.newSeq = append(a.newSeq[:0], payload...)
		a.gotSeq = true
	case obuFrameHeader, obuFrame:
		if !a.sawHeader {
			a.sawHeader = true
			if len(payload) == 0 {
				a.broken = true
				return
			}
			// show_existing_frame (1 bit), then frame_type (2 bits):
			// KEY_FRAME is 0 (AV1 spec 5.9.2; no reduced still picture header
			// over RTP).
			a.key = payload[0]&0x80 == 0 && payload[0]&0x60 == 0
		}
		a.sawFrame = true
	case obuTileGroup:
		if !a.sawHeader {
			a.broken = true // its frame header was lost
			return
		}
	case obuMetadata, obuRedundantFrameHeader:
	default:
		return // reserved: ignored (AV1 spec 6.2.2)
	}
	a.obus++
	if a.obus > maxOBUsPerFrame || len(a.buf)+hl+8+len(payload) > maxFrameBytes {
		a.broken = true
		return
	}
	a.buf = append(a.buf, h|2)
	if hl == 2 {
		a.buf = append(a.buf, o[1])
	}
	a.buf = appendLEB128(a.buf, uint64(len(payload)))
	a.buf = append(a.buf, payload...)
}

func (a *av1Assembler) finish() videoFrame {
	f := videoFrame{data: a.buf, key: a.key, hasConfig: a.gotSeq}
	f.configChanged = len(a.newSeq) > 0 && !bytes.Equal(a.newSeq, a.seq)
	switch {
	case a.broken || a.inFrag:
		f.status = frameBroken
	case !a.sawFrame:
		f.status = frameEmpty
	default:
		f.status = frameOK
	}
	return f
}

func (a *av1Assembler) haveConfig() bool { return len(a.seq) > 0 }

func (a *av1Assembler) reorderDepth() int { return 0 } // no reordering in RTP

func (a *av1Assembler) commit() error {
	if len(a.newSeq) == 0 {
		return errNoConfig
	}
	if bytes.Equal(a.newSeq, a.seq) {
		return nil
	}
	sh, err := parseAV1SequenceHeader(a.newSeq)
	if err != nil {
		return err
	}
	w, h := sh.Width(), sh.Height()
	if w == 0 || h == 0 || w > 16384 || h > 16384 {
		return fmt.Errorf("remux: AV1 sequence header with frame size %dx%d", w, h)
	}
	a.seq = append(a.seq[:0], a.newSeq...)
	a.sh = sh
	a.width, a.height = int(w), int(h)
	a.codec = sh.CodecString("av01")
	return nil
}

// parseAV1SequenceHeader parses a sequence header OBU payload with mp4ff,
// turning a panic on untrusted bytes into an error.
func parseAV1SequenceHeader(payload []byte) (sh *av1.SequenceHeader, err error) {
	err = safeCall(func() error {
		var e error
		sh, e = av1.ParseSequenceHeader(payload)
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("remux: bad AV1 sequence header: %w", err)
	}
	if sh.SeqProfile > 2 || sh.BitDepth == 0 {
		return nil, fmt.Errorf("remux: AV1 sequence header with profile %d, bit depth %d", sh.SeqProfile, sh.BitDepth)
	}
	return sh, nil
}

func (a *av1Assembler) addTrack(init *mp4.InitSegment) (tr Track, err error) {
	if !a.haveConfig() {
		return tr, errNoConfig
	}
	obu := []byte{obuSequenceHeader<<3 | 2}
	obu = appendLEB128(obu, uint64(len(a.seq)))
	obu = append(obu, a.seq...)
	av1C := &mp4.Av1CBox{CodecConfRec: av1.CodecConfRecFromSequenceHeader(a.sh, obu)}
	trak := init.AddEmptyTrack(90000, "video", "und")
	if err := safeCall(func() error {
		return trak.SetAV1Descriptor("av01", av1C, uint16(a.width), uint16(a.height))
	}); err != nil {
		return tr, err
	}
	return Track{ID: trak.Tkhd.TrackID, Kind: "video", Codec: a.codec, Width: a.width, Height: a.height, Timescale: 90000}, nil
}
