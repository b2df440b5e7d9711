package viewerclient

import (
	"encoding/binary"
	"errors"
)

// SegmentHeader is what ParseSegmentHeader reads from the first moof of a
// media segment: enough for a load client to follow decode times without
// parsing the whole message.
type SegmentHeader struct {
	MoofSize int
	// First is the first traf of the moof (the gateway writes video first).
	First TrafHeader
	// Trafs is the number of trafs in the moof.
	Trafs int
}

// TrafHeader summarises one traf.
type TrafHeader struct {
	TrackID     uint32
	BaseTime    uint64 // tfdt
	Samples     int
	FirstDur    uint32 // duration of the first sample (0 when the trun has none)
	SampleFlags uint32 // flags of the first sample (0 when the trun has none)
	DataOffset  int    // offset of the first sample from the start of the moof (-1 when absent)
	FirstSize   uint32 // size of the first sample (0 when the trun has none)
}

// ErrShortSegment means b ends before the moof does.
var ErrShortSegment = errors.New("viewerclient: segment shorter than its moof")

// ParseSegmentHeader parses the moof at the start of b (one media segment
// message). Only the moof must be present in b, not the mdat: a load client
// reads the first few hundred bytes of a message and discards the rest. It
// does not allocate.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	var sh SegmentHeader
	if len(b) < 8 || string(b[4:8]) != "moof" {
		return sh, errors.New("viewerclient: segment does not start with moof")
	}
	size := int(binary.BigEndian.Uint32(b))
	if size < 8 {
		return sh, errors.New("viewerclient: bad moof size")
	}
	if size > len(b) {
		return sh, ErrShortSegment
	}
	sh.MoofSize = size
	for off := 8; off+8 <= size; {
		bs := int(binary.BigEndian.Uint32(b[off:]))
		if bs < 8 || off+bs > size {
			return sh, errors.New("viewerclient: bad box in moof")
		}
		if string(b[off+4:off+8]) == "traf" {
			if sh.Trafs == 0 {
				t, err := parseTraf(b[off+8 : off+bs])
				if err != nil {
					return sh, err
				}
				sh.First = t
			}
			sh.Trafs++
		}
		off += bs
	}
	if sh.Trafs == 0 {
		return sh, errors.New("viewerclient: moof without traf")
	}
	return sh, nil
}

func parseTraf(b []byte) (TrafHeader, error) {
	t := TrafHeader{DataOffset: -1}
	be := binary.BigEndian
	for off := 0; off+8 <= len(b); {
		bs := int(be.Uint32(b[off:]))
		if bs < 8 || off+bs > len(b) {
			return t, errors.New("viewerclient: bad box in traf")
		}
		body := b[off+8 : off+bs]
		switch string(b[off+4 : off+8]) {
		case "tfhd":
			if len(body) < 8 {
				return t, errors.New("viewerclient: short tfhd")
			}
			t.TrackID = be.Uint32(body[4:])
		case "tfdt":
			if len(body) < 8 {
				return t, errors.New("viewerclient: short tfdt")
			}
			if body[0] == 1 {
				if len(body) < 12 {
					return t, errors.New("viewerclient: short tfdt")
				}
				t.BaseTime = be.Uint64(body[4:])
			} else {
				t.BaseTime = uint64(be.Uint32(body[4:]))
			}
		case "trun":
			if len(body) < 8 {
				return t, errors.New("viewerclient: short trun")
			}
			flags := be.Uint32(body) & 0xffffff
			t.Samples = int(be.Uint32(body[4:]))
			p := body[8:]
			if flags&0x1 != 0 {
				if len(p) < 4 {
					return t, errors.New("viewerclient: short trun")
				}
				t.DataOffset = int(int32(be.Uint32(p)))
				p = p[4:]
			}
			if flags&0x4 != 0 {
				if len(p) < 4 {
					return t, errors.New("viewerclient: short trun")
				}
				t.SampleFlags = be.Uint32(p)
				p = p[4:]
			}
			if t.Samples > 0 {
				if flags&0x100 != 0 && len(p) >= 4 {
					t.FirstDur = be.Uint32(p)
					p = p[4:]
				}
				if flags&0x200 != 0 && len(p) >= 4 {
					t.FirstSize = be.Uint32(p)
					p = p[4:]
				}
				if flags&0x400 != 0 && len(p) >= 4 {
					t.SampleFlags = be.Uint32(p)
				}
			}
		}
		off += bs
	}
	return t, nil
}

// IsSync reports whether sample flags mark a sync sample (keyframe).
func IsSync(flags uint32) bool { return flags&0x00010000 == 0 }
