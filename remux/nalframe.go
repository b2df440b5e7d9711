package remux

import (
	"encoding/binary"

	"github.com/mseway/mseway/bitstream"
)

// nalFrame is the sample data of one H.264 or H.265 frame being assembled
// from NAL units: 4-byte length-prefixed units (the MP4 form), bounded by
// maxFrameBytes. The codec assemblers embed it and decide, per unit, what
// stays in the sample (endNAL).
type nalFrame struct {
	buf     []byte
	nalus   int
	fuStart int // offset of the fragmented NAL unit being reassembled, -1 if none
	broken  bool
	key     bool // a random access point (IDR, IRAP) was seen
	sawVCL  bool // a slice was seen
}

func newNALFrame() nalFrame { return nalFrame{fuStart: -1, buf: make([]byte, 0, 64<<10)} }

func (f *nalFrame) reset() {
	f.buf = f.buf[:0]
	f.nalus = 0
	f.fuStart = -1
	f.broken = false
	f.key = false
	f.sawVCL = false
}

// status is the state of the frame when it ends.
func (f *nalFrame) status() frameStatus {
	switch {
	case f.broken || f.fuStart >= 0:
		return frameBroken
	case !f.sawVCL:
		return frameEmpty
	}
	return frameOK
}

// addAnnexB takes a whole access unit in Annex-B form: each NAL unit goes to
// appendNAL (the codec's), unless rtpOnly says its type cannot stand in a
// coded stream, which breaks the frame.
func (f *nalFrame) addAnnexB(au []byte, rtpOnly func(nal []byte) bool, appendNAL func(nal []byte)) {
	for _, nal := range bitstream.SplitAnnexB(au) {
		if f.broken {
			return
		}
		if rtpOnly(nal) {
			f.broken = true
			return
		}
		appendNAL(nal)
	}
}

// room checks that n more bytes fit in the frame; the frame is broken when not.
func (f *nalFrame) room(n int) bool {
	if len(f.buf)+n > maxFrameBytes {
		f.broken = true
		return false
	}
	return true
}

// appendRaw appends nal behind a length prefix still to be filled in and
// returns the unit's offset, for the caller's endNAL.
func (f *nalFrame) appendRaw(nal []byte) (int, bool) {
	if !f.room(4 + len(nal)) {
		return 0, false
	}
	s := len(f.buf)
	f.buf = append(f.buf, 0, 0, 0, 0)
	f.buf = append(f.buf, nal...)
	return s, true
}

// nextUnit takes the next unit of an aggregation packet (STAP-A, AP: a
// 16-bit size, then the unit) off q; a unit shorter than minLen or past the
// end breaks the frame (nal is then nil).
func (f *nalFrame) nextUnit(q []byte, minLen int) (nal, rest []byte) {
	if len(q) < 2 {
		f.broken = true
		return nil, nil
	}
	n := int(binary.BigEndian.Uint16(q))
	q = q[2:]
	if n < minLen || n > len(q) {
		f.broken = true
		return nil, nil
	}
	return q[:n], q[n:]
}

// fragment adds one fragmentation unit (FU-A, H.265 FU): at its start, the
// unit's header, rebuilt by the codec, opens a new unit. It returns the
// offset of the unit its end completes (for the codec's endNAL), or -1.
func (f *nalFrame) fragment(start, end bool, header, payload []byte) int {
	if start {
		if f.fuStart >= 0 {
			f.broken = true // the previous unit never ended
			return -1
		}
		if !f.room(4 + len(header) + len(payload)) {
			return -1
		}
		f.fuStart = len(f.buf)
		f.buf = append(f.buf, 0, 0, 0, 0)
		f.buf = append(f.buf, header...)
	} else if f.fuStart < 0 {
		f.broken = true // the continuation of a unit whose start is missing
		return -1
	}
	if !f.room(len(payload)) {
		return -1
	}
	f.buf = append(f.buf, payload...)
	if !end {
		return -1
	}
	s := f.fuStart
	f.fuStart = -1
	return s
}

// keepNAL keeps the unit at buf[s:] in the sample: it fills in the length
// prefix, within the bound on units per frame.
func (f *nalFrame) keepNAL(s int) {
	f.nalus++
	if f.nalus > maxFrameNALUs {
		f.broken = true
		return
	}
	binary.BigEndian.PutUint32(f.buf[s:], uint32(len(f.buf)-s-4))
}

// keepParam copies a parameter set into dst (reused), within maxParamSetLen.
func (f *nalFrame) keepParam(dst, nal []byte) []byte {
	if len(nal) > maxParamSetLen {
		f.broken = true
		return dst
	}
	return append(dst[:0], nal...)
}
