package record

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"time"
)

// A recording file starts at time zero: the fragments' decode times (tfdt)
// are the stream's, which started long before the file, so each fragment is
// written with them lowered by the file's start. Players and ffprobe then
// see a file that starts at 0 and lasts what it holds. Pure functions over
// the bytes of whole moof+mdat boxes, fuzzed (FuzzRebase).

var errBadFragment = errors.New("record: malformed fragment")

// box walks the boxes of data: fn gets each box's type, its payload and
// the payload's offset in data.
func walkBoxes(data []byte, fn func(typ string, payload []byte, at int) error) error {
	for off := 0; off < len(data); {
		if len(data)-off < 8 {
			return errBadFragment
		}
		size := uint64(binary.BigEndian.Uint32(data[off:]))
		typ := string(data[off+4 : off+8])
		head := 8
		switch size {
		case 0:
			size = uint64(len(data) - off)
		case 1:
			if len(data)-off < 16 {
				return errBadFragment
			}
			size, head = binary.BigEndian.Uint64(data[off+8:]), 16
		}
		if size < uint64(head) || size > uint64(len(data)-off) {
			return errBadFragment
		}
		if err := fn(typ, data[off+head:off+int(size)], off+head); err != nil {
			return err
		}
		off += int(size)
	}
	return nil
}

// eachTfdt calls fn for every traf of the moofs of data with its track ID
// and the offset and size (4 or 8) of its tfdt's decode time.
func eachTfdt(data []byte, fn func(track uint32, at, size int) error) error {
	return walkBoxes(data, func(typ string, moof []byte, moofAt int) error {
		if typ != "moof" {
			return nil
		}
		return walkBoxes(moof, func(typ string, traf []byte, trafAt int) error {
			if typ != "traf" {
				return nil
			}
			track, tfdtAt, tfdtSize := uint32(0), -1, 0
			err := walkBoxes(traf, func(typ string, p []byte, at int) error {
				switch typ {
				case "tfhd":
					if len(p) < 8 {
						return errBadFragment
					}
					track = binary.BigEndian.Uint32(p[4:])
				case "tfdt":
					if len(p) < 8 {
						return errBadFragment
					}
					tfdtAt, tfdtSize = at+4, 4
					if p[0] == 1 {
						if len(p) < 12 {
							return errBadFragment
						}
						tfdtSize = 8
					}
				}
				return nil
			})
			if err != nil || tfdtAt < 0 {
				return err
			}
			return fn(track, moofAt+trafAt+tfdtAt, tfdtSize)
		})
	})
}

func readTime(data []byte, at, size int) uint64 {
	if size == 4 {
		return uint64(binary.BigEndian.Uint32(data[at:]))
	}
	return binary.BigEndian.Uint64(data[at:])
}

// fileBases returns, for each track of the first fragment of a file, what
// to lower its decode times by: the earliest start among the tracks
// (timescales by track ID), in each track's units, so that the tracks keep
// their relative timing.
func fileBases(first []byte, timescales map[uint32]uint32) (map[uint32]uint64, error) {
	earliest := time.Duration(-1)
	err := eachTfdt(first, func(track uint32, at, size int) error {
		ts := timescales[track]
		if ts == 0 {
			return errBadFragment
		}
		t := ticksToDuration(readTime(first, at, size), ts)
		if earliest < 0 || t < earliest {
			earliest = t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if earliest < 0 {
		return nil, errBadFragment
	}
	bases := make(map[uint32]uint64, len(timescales))
	for track, ts := range timescales {
		bases[track] = durationToTicks(earliest, ts)
	}
	return bases, nil
}

// ticksToDuration converts without overflow for any uint64 tick count
// below ~292 years.
func ticksToDuration(ticks uint64, timescale uint32) time.Duration {
	hi, lo := bits.Mul64(ticks, uint64(time.Second))
	if hi >= uint64(timescale) {
		return time.Duration(1<<63 - 1)
	}
	q, _ := bits.Div64(hi, lo, uint64(timescale))
	return time.Duration(min(q, 1<<63-1))
}

func durationToTicks(d time.Duration, timescale uint32) uint64 {
	hi, lo := bits.Mul64(uint64(d), uint64(timescale))
	q, _ := bits.Div64(hi, lo, uint64(time.Second)) // hi < 1e9: d < 2^63, timescale < 2^32
	return q
}

// rebase appends data to dst with each traf's decode time lowered by
// bases[track] (a time below its base becomes 0; a track without a base is
// left alone).
func rebase(dst, data []byte, bases map[uint32]uint64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, data...)
	out := dst[start:]
	err := eachTfdt(out, func(track uint32, at, size int) error {
		base, ok := bases[track]
		if !ok {
			return nil
		}
		t := readTime(out, at, size)
		t -= min(t, base)
		if size == 4 {
			binary.BigEndian.PutUint32(out[at:], uint32(t))
		} else {
			binary.BigEndian.PutUint64(out[at:], t)
		}
		return nil
	})
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}
