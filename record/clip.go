package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// fragment is one moof (with the boxes after it, its mdat) of a file.
type fragment struct {
	off, size int64
	decode    uint64 // the decode time of its first sample (tfdt), in timescale units
	keyframe  bool   // it starts with a sync sample of the first track
	// keep and whole: fragments without the first track were added to it
	// (size grew); whole is its size before the last of them.
	keep  bool
	whole int64
}

// fileIndex is what a file holds: its init (ftyp+moov) and fragments.
type fileIndex struct {
	init      []byte
	timescale uint32
	frags     []fragment
}

const (
	maxInitBytes = 1 << 20
	maxMoofBytes = 4 << 20
)

var errNotFMP4 = errors.New("not a fragmented MP4 of the recorder")

// indexFile reads a recording's boxes up to size. A box cut short (the file
// is being written, or the process was killed) ends the index; so does a
// moof without its complete mdat. The boxes are read by hand, bounded: a
// damaged file is refused, never trusted for a size or a count.
func indexFile(r io.ReaderAt, size int64) (fileIndex, error) {
	var ix fileIndex
	var hdr [16]byte
	var first trackInfo
	haveMoov := false
	pendingMdat := false // the last fragment still needs its mdat
	for off := int64(0); off+8 <= size; {
		if _, err := r.ReadAt(hdr[:8], off); err != nil {
			return ix, err
		}
		boxSize, typ := int64(binary.BigEndian.Uint32(hdr[:4])), string(hdr[4:8])
		head := int64(8)
		switch boxSize {
		case 0: // to the end of the file
			boxSize = size - off
		case 1:
			if off+16 > size {
				boxSize = -1
				break
			}
			if _, err := r.ReadAt(hdr[8:16], off+8); err != nil {
				return ix, err
			}
			boxSize, head = int64(min(binary.BigEndian.Uint64(hdr[8:16]), 1<<62)), 16
		}
		if boxSize < head || boxSize > size-off {
			break // cut short
		}
		switch typ {
		case "ftyp":
		case "moov":
			if off+boxSize > maxInitBytes {
				return ix, fmt.Errorf("%w: init over %d bytes", errNotFMP4, maxInitBytes)
			}
			ix.init = make([]byte, off+boxSize)
			if _, err := r.ReadAt(ix.init, 0); err != nil {
				return ix, err
			}
			var err error
			if first, err = firstTrack(ix.init[off+head:]); err != nil {
				return ix, err
			}
			ix.timescale, haveMoov = first.timescale, true
		case "moof":
			if !haveMoov {
				return ix, fmt.Errorf("%w: moof before moov", errNotFMP4)
			}
			if pendingMdat { // the moof before had no mdat
				ix.dropPending()
				pendingMdat = false
			}
			if boxSize > maxMoofBytes {
				return ix, fmt.Errorf("%w: moof over %d bytes", errNotFMP4, maxMoofBytes)
			}
			buf := make([]byte, boxSize-head)
			if _, err := r.ReadAt(buf, off+head); err != nil {
				return ix, err
			}
			decode, key, found, err := moofFirstTrack(buf, first)
			if err != nil {
				return ix, err
			}
			if !found {
				// A fragment without the first track (audio alone while
				// video pauses) belongs to the one before.
				if n := len(ix.frags); n > 0 {
					last := &ix.frags[n-1]
					last.whole, last.keep = last.size, true
					last.size = off + boxSize - last.off
					pendingMdat = true
				}
				break
			}
			ix.frags = append(ix.frags, fragment{off: off, size: boxSize, decode: decode, keyframe: key})
			pendingMdat = true
		case "mdat":
			if n := len(ix.frags); n > 0 && pendingMdat {
				pendingMdat = false
				ix.frags[n-1].size = off + boxSize - ix.frags[n-1].off
				ix.frags[n-1].keep = false
			}
		default:
			// styp, prft, sidx...: part of the fragment around them.
			if n := len(ix.frags); n > 0 && !pendingMdat {
				ix.frags[n-1].size = off + boxSize - ix.frags[n-1].off
			}
		}
		off += boxSize
	}
	if pendingMdat {
		ix.dropPending()
	}
	if !haveMoov {
		return ix, fmt.Errorf("%w: no moov", errNotFMP4)
	}
	return ix, nil
}

// dropPending removes what lacks its mdat at the end of the fragments: the
// last fragment, or the part added to it (a fragment without the first
// track).
func (ix *fileIndex) dropPending() {
	n := len(ix.frags)
	if n == 0 {
		return
	}
	if last := &ix.frags[n-1]; last.keep {
		last.size, last.keep = last.whole, false
		return
	}
	ix.frags = ix.frags[:n-1]
}

// trackInfo is what indexing needs of a file's first track.
type trackInfo struct {
	id, timescale uint32
	sound         bool
	defaultFlags  uint32 // trex
}

func be32(b []byte, at int) (uint32, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[at:]), true
}

// afterTimes reads the 32-bit field after the creation and modification
// times of a tkhd or mdhd payload (the track ID, the timescale): 4 bytes
// each in version 0, 8 in version 1.
func afterTimes(p []byte) (uint32, bool) {
	at := 12
	if len(p) > 0 && p[0] == 1 {
		at = 20
	}
	return be32(p, at)
}

// firstTrack reads the first trak of a moov's payload (and its trex).
func firstTrack(moov []byte) (trackInfo, error) {
	var t trackInfo
	haveTrak := false
	var trexes [][]byte
	err := walkBoxes(moov, func(typ string, p []byte, _ int) error {
		switch typ {
		case "trak":
			if haveTrak {
				return nil
			}
			haveTrak = true
			return walkBoxes(p, func(typ string, p []byte, _ int) error {
				switch typ {
				case "tkhd":
					id, ok := afterTimes(p)
					if !ok {
						return errNotFMP4
					}
					t.id = id
				case "mdia":
					return walkBoxes(p, func(typ string, p []byte, _ int) error {
						switch typ {
						case "mdhd":
							ts, ok := afterTimes(p)
							if !ok {
								return errNotFMP4
							}
							t.timescale = ts
						case "hdlr":
							if len(p) >= 12 {
								t.sound = string(p[8:12]) == "soun"
							}
						}
						return nil
					})
				}
				return nil
			})
		case "mvex":
			return walkBoxes(p, func(typ string, p []byte, _ int) error {
				if typ == "trex" {
					trexes = append(trexes, p)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil || !haveTrak || t.timescale == 0 || t.id == 0 {
		return t, fmt.Errorf("%w: moov without a usable track", errNotFMP4)
	}
	for _, p := range trexes {
		if id, _ := be32(p, 4); id == t.id {
			t.defaultFlags, _ = be32(p, 20)
		}
	}
	return t, nil
}

// moofFirstTrack reads, from a moof's payload, the first track's decode
// time and whether its first sample is a sync sample.
func moofFirstTrack(moof []byte, first trackInfo) (decode uint64, key, found bool, err error) {
	err = walkBoxes(moof, func(typ string, traf []byte, _ int) error {
		if typ != "traf" || found {
			return nil
		}
		var id, flags uint32
		var tfdt []byte
		var trun []byte
		haveDefault := false
		err := walkBoxes(traf, func(typ string, p []byte, _ int) error {
			switch typ {
			case "tfhd":
				tf, ok1 := be32(p, 0)
				tid, ok2 := be32(p, 4)
				if !ok1 || !ok2 {
					return errNotFMP4
				}
				id = tid
				at := 8
				for _, opt := range []struct {
					bit  uint32
					size int
				}{{0x1, 8}, {0x2, 4}, {0x8, 4}, {0x10, 4}} {
					if tf&opt.bit != 0 {
						at += opt.size
					}
				}
				if tf&0x20 != 0 {
					f, ok := be32(p, at)
					if !ok {
						return errNotFMP4
					}
					flags, haveDefault = f, true
				}
			case "tfdt":
				tfdt = p
			case "trun":
				if trun == nil {
					trun = p
				}
			}
			return nil
		})
		if err != nil || id != first.id {
			return err
		}
		if len(tfdt) < 8 || (tfdt[0] == 1 && len(tfdt) < 12) {
			return errNotFMP4
		}
		found = true
		if tfdt[0] == 1 {
			decode = binary.BigEndian.Uint64(tfdt[4:])
		} else {
			decode = uint64(binary.BigEndian.Uint32(tfdt[4:]))
		}
		if first.sound {
			key = true
			return nil
		}
		if !haveDefault {
			flags = first.defaultFlags
		}
		if trun != nil {
			tf, _ := be32(trun, 0)
			count, _ := be32(trun, 4)
			at := 8
			if tf&0x1 != 0 {
				at += 4
			}
			switch {
			case count == 0:
				return nil // no sample: not a keyframe
			case tf&0x4 != 0:
				flags, _ = be32(trun, at)
			case tf&0x400 != 0:
				if tf&0x100 != 0 {
					at += 4
				}
				if tf&0x200 != 0 {
					at += 4
				}
				flags, _ = be32(trun, at)
			}
		}
		key = flags&0x00010000 == 0 // sample_is_non_sync_sample unset
		return nil
	})
	if errors.Is(err, errBadFragment) {
		err = fmt.Errorf("%w: a box overruns its parent", errNotFMP4)
	}
	return decode, key, found, err
}

// Clip is a time range of one recording file as an fMP4 of its own: the
// file's init, then its fragments from the keyframe at or before the
// range's start to the range's end (or the file's end: a player asks for
// the next part from End). It reads and seeks (HTTP range requests) over
// the file it keeps open, so retention deleting it meanwhile does not cut
// it short. Close it.
type Clip struct {
	// Path is the recording file.
	Path string
	// Start is the wall-clock time of its first fragment, End of the end of
	// its last one (where the next part starts).
	Start, End time.Time
	// MediaStart is the decode time of its first fragment on the clip's
	// timeline (recording files start at zero): a player that appends the
	// clip plays wall-clock time Start at media time MediaStart.
	MediaStart time.Duration
	Size       int64

	pieces []piece
	pos    int64
	file   *os.File
}

type piece struct {
	r        io.ReaderAt // nil: data
	data     []byte
	off, len int64
	at       int64 // where it starts in the clip
}

// ErrNoRecording: nothing recorded in the range.
var ErrNoRecording = errors.New("no recording in that range")

// Clip returns the part of stream's recordings from from to to, within one
// file: the file holding from (or the first one after it), from the
// keyframe at or before from.
func (r *Recorder) Clip(stream string, from, to time.Time) (*Clip, error) {
	return r.clip(stream, from, to, false)
}

// ClipAfter is Clip for a player that has played up to from: the clip
// starts at the first fragment at or after from (a keyframe or not: the
// decoder goes on), so what it already has is not sent again.
func (r *Recorder) ClipAfter(stream string, from, to time.Time) (*Clip, error) {
	return r.clip(stream, from, to, true)
}

func (r *Recorder) clip(stream string, from, to time.Time, after bool) (*Clip, error) {
	if to.Before(from) {
		return nil, errors.New("the range ends before it starts")
	}
	files, err := r.List(stream, time.Time{}, to)
	if err != nil {
		return nil, err
	}
	// The last file starting at or before from, then the ones after it.
	first := 0
	for i, f := range files {
		if !f.Start.After(from) {
			first = i
		}
	}
	for _, f := range files[first:] {
		c, err := clipOf(f, from, to, after)
		if errors.Is(err, ErrNoRecording) {
			continue
		}
		return c, err
	}
	return nil, ErrNoRecording
}

// afterSlack: a from given by a player to the millisecond still names the
// fragment it was told about (X-Recording-End, to the nanosecond).
const afterSlack = time.Millisecond

func clipOf(f File, from, to time.Time, after bool) (*Clip, error) {
	fh, err := os.Open(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoRecording
	}
	if err != nil {
		return nil, err
	}
	fi, err := fh.Stat()
	if err != nil {
		_ = fh.Close()
		return nil, err
	}
	ix, err := indexFile(fh, fi.Size())
	if err != nil || len(ix.frags) == 0 {
		_ = fh.Close()
		return nil, ErrNoRecording
	}
	media := func(fr fragment) time.Duration { return ticksToDuration(fr.decode, ix.timescale) }
	wall := func(fr fragment) time.Time { return f.Start.Add(media(fr) - media(ix.frags[0])) }
	// A range starting where the file ends is the next file's.
	last := len(ix.frags) - 1
	fileEnd := wall(ix.frags[last])
	if last > 0 {
		fileEnd = fileEnd.Add(wall(ix.frags[last]).Sub(wall(ix.frags[last-1])))
	}
	if !from.Before(fileEnd) {
		_ = fh.Close()
		return nil, ErrNoRecording
	}
	// The last keyframe at or before from (or the first one); after: the
	// first fragment at or after from.
	begin := -1
	for i, fr := range ix.frags {
		if after {
			if !wall(fr).Before(from.Add(-afterSlack)) {
				begin = i
				break
			}
			continue
		}
		if fr.keyframe && (begin < 0 || !wall(fr).After(from)) {
			begin = i
		}
		if wall(fr).After(from) && begin >= 0 {
			break
		}
	}
	if begin < 0 || wall(ix.frags[begin]).After(to) {
		_ = fh.Close()
		return nil, ErrNoRecording
	}
	c := &Clip{Path: f.Path, Start: wall(ix.frags[begin]), MediaStart: media(ix.frags[begin]), file: fh}
	c.add(piece{data: ix.init, len: int64(len(ix.init))})
	end := begin
	for i := begin; i < len(ix.frags) && (i == begin || !wall(ix.frags[i]).After(to)); i++ {
		c.add(piece{r: fh, off: ix.frags[i].off, len: ix.frags[i].size})
		end = i
	}
	c.End = wall(ix.frags[end])
	if end+1 < len(ix.frags) {
		c.End = wall(ix.frags[end+1])
	} else if end > begin {
		// The last fragment lasts about as long as the one before it.
		c.End = c.End.Add(wall(ix.frags[end]).Sub(wall(ix.frags[end-1])))
	}
	return c, nil
}

func (c *Clip) add(p piece) {
	p.at = c.Size
	c.pieces = append(c.pieces, p)
	c.Size += p.len
}

// Read reads the clip's bytes.
func (c *Clip) Read(b []byte) (int, error) {
	if c.pos >= c.Size {
		return 0, io.EOF
	}
	// The piece holding pos (pieces are few: a binary search is not worth it).
	i := 0
	for i+1 < len(c.pieces) && c.pieces[i+1].at <= c.pos {
		i++
	}
	p := c.pieces[i]
	within := c.pos - p.at
	n := int(min(int64(len(b)), p.len-within))
	var err error
	if p.r == nil {
		copy(b[:n], p.data[within:])
	} else {
		n, err = p.r.ReadAt(b[:n], p.off+within)
		if err == io.EOF && n > 0 {
			err = nil
		}
	}
	c.pos += int64(n)
	return n, err
}

// Seek moves where Read reads.
func (c *Clip) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.pos
	case io.SeekEnd:
		offset += c.Size
	default:
		return 0, errors.New("record: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("record: seek before the start")
	}
	c.pos = offset
	return offset, nil
}

// Close closes the clip's file.
func (c *Clip) Close() error {
	if c.file == nil {
		return nil
	}
	err := c.file.Close()
	c.file = nil
	return err
}
