package relaywire

// Wire format, version 1. All integers are big-endian.
//
// Every wire message (one NATS message) is a fixed 30-byte header followed
// by one part of the message's payload:
//
//	offset  size  field
//	------  ----  -----------------------------------------------------------
//	     0     2  magic 0x8F 'R' (0x8F is no UTF-8 lead byte: never text/JSON)
//	     2     1  version, 1; any other value is refused (ErrVersion)
//	     3     1  kind: 1 Init, 2 Segment, 3 End, 4 Snapshot
//	     4     8  epoch: the stream's publish (origin) generation
//	    12     8  seq: +1 per Init/Segment/End of the epoch; for a Snapshot,
//	              the seq of the newest message the snapshot includes
//	    20     2  flags: bit 0 keyframe, bit 1 has video (Segment);
//	              bit 2 has init (Snapshot); every other bit must be 0
//	    22     2  part index, 0 <= index < count
//	    24     2  part count, >= 1
//	    26     4  total payload length (all parts)
//	    30     -  this part's payload bytes
//
// A payload of P bytes sent with a max payload M is cut into
// count = max(1, ceil(P/(M-30))) parts, in order; every part but the last
// carries M-30 bytes. Every part of a multi-part message carries at least one
// byte, and all its parts repeat the same header but for the index.
//
// Payload by kind (strN = uint N length then that many bytes; time values are
// time.Duration nanoseconds as two's complement int64):
//
//	Init      init
//	Segment   segment                     (flags in the header)
//	End       nothing
//	Snapshot  [init if flag has-init] u32 count, count x (u8 flags, segment)
//
//	init      str16 MIME, u16 track count, tracks, str32 data (ftyp+moov)
//	track     u32 ID, str16 kind, str16 codec, u32 width, u32 height,
//	          u32 sample rate, u32 channels, u32 timescale
//	segment   i64 time, i64 duration, str32 data (moof+mdat)
//
// The payload must be consumed exactly: trailing bytes are refused.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mseway/mseway/remux"
)

// Version is the wire format version this package writes and reads.
const Version = 1

// HeaderSize is the size of the fixed header in front of every wire message.
const HeaderSize = 30

// MaxParts is the most parts one message can be split into.
const MaxParts = math.MaxUint16

const (
	magic0 = 0x8F
	magic1 = 'R'
)

// Kind is the type of a Message.
type Kind uint8

const (
	KindInit     Kind = 1 // a stream's init segment and announcement
	KindSegment  Kind = 2 // one media segment
	KindEnd      Kind = 3 // the publisher left (end of stream)
	KindSnapshot Kind = 4 // the current state, in reply to a joining edge
)

func (k Kind) String() string {
	switch k {
	case KindInit:
		return "init"
	case KindSegment:
		return "segment"
	case KindEnd:
		return "end"
	case KindSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Header flags.
const (
	FlagKeyframe uint16 = 1 << 0 // KindSegment: Segment.Keyframe
	FlagHasVideo uint16 = 1 << 1 // KindSegment: Segment.HasVideo
	FlagHasInit  uint16 = 1 << 2 // KindSnapshot: Init is present
)

// allowedFlags returns the flag bits a kind may carry; 0 for an unknown kind.
func allowedFlags(k Kind) (uint16, bool) {
	switch k {
	case KindInit, KindEnd:
		return 0, true
	case KindSegment:
		return FlagKeyframe | FlagHasVideo, true
	case KindSnapshot:
		return FlagHasInit, true
	}
	return 0, false
}

// Errors. Every error returned by this package matches one of these with
// errors.Is.
var (
	// ErrMagic: the bytes are not a relaywire message.
	ErrMagic = errors.New("relaywire: not a relay message (bad magic)")
	// ErrVersion: a relaywire message of a version this package cannot read.
	ErrVersion = errors.New("relaywire: unsupported version")
	// ErrTruncated: a header or a length runs past the end of the bytes.
	ErrTruncated = errors.New("relaywire: truncated")
	// ErrTooLarge: a declared total above Joiner.MaxTotal, or a message too
	// large to encode (a field over its length prefix, more than MaxParts
	// parts).
	ErrTooLarge = errors.New("relaywire: too large")
	// ErrMalformed: bytes that break the format (unknown kind or flags, an
	// index out of range, parts that disagree, trailing bytes...).
	ErrMalformed = errors.New("relaywire: malformed")
	// ErrIncomplete: the part belongs to a message that lost a part (or
	// whose first part never arrived); that message is dropped: a gap.
	ErrIncomplete = errors.New("relaywire: incomplete message dropped")
	// ErrInvalid: Encode was given a Message it cannot represent (missing or
	// extra fields for its kind, negative sizes, maxPayload too small).
	ErrInvalid = errors.New("relaywire: invalid message")
)

// Message is one thing a node tells another about a stream.
type Message struct {
	Kind  Kind
	Epoch uint64 // changes when a new publisher/origin starts the stream
	// Seq is +1 per message (Init, Segment or End) of an epoch. A Snapshot's
	// Seq is that of the newest message it includes: an edge then drops live
	// messages of the same epoch with Seq <= the snapshot's.
	Seq uint64
	// Init: KindInit (required) and KindSnapshot (nil: no init yet).
	Init *remux.Init
	// Segment: KindSegment (required).
	Segment *remux.Segment
	// Segments: KindSnapshot, the segments since the newest keyframe (the
	// GOP), in order; may be empty.
	Segments []*remux.Segment
}

// Header is the fixed header of one wire message.
type Header struct {
	Kind  Kind
	Epoch uint64
	Seq   uint64
	Flags uint16
	Index uint16 // part index
	Count uint16 // part count
	Total uint32 // total payload length of the message (all parts)
}

// ParseHeader reads and checks the header of one wire message: magic,
// version, kind, flags for the kind, count >= 1 and index < count. It does
// not look at the payload beyond the header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < 3 {
		return Header{}, fmt.Errorf("%w: %d bytes, header is %d", ErrTruncated, len(b), HeaderSize)
	}
	if b[0] != magic0 || b[1] != magic1 {
		return Header{}, ErrMagic
	}
	if b[2] != Version {
		return Header{}, fmt.Errorf("%w: %d (this reads %d)", ErrVersion, b[2], Version)
	}
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, header is %d", ErrTruncated, len(b), HeaderSize)
	}
	h := Header{
		Kind:  Kind(b[3]),
		Epoch: binary.BigEndian.Uint64(b[4:]),
		Seq:   binary.BigEndian.Uint64(b[12:]),
		Flags: binary.BigEndian.Uint16(b[20:]),
		Index: binary.BigEndian.Uint16(b[22:]),
		Count: binary.BigEndian.Uint16(b[24:]),
		Total: binary.BigEndian.Uint32(b[26:]),
	}
	allowed, ok := allowedFlags(h.Kind)
	if !ok {
		return Header{}, fmt.Errorf("%w: unknown kind %d", ErrMalformed, uint8(h.Kind))
	}
	if h.Flags&^allowed != 0 {
		return Header{}, fmt.Errorf("%w: flags %#04x on %v", ErrMalformed, h.Flags, h.Kind)
	}
	if h.Count == 0 {
		return Header{}, fmt.Errorf("%w: part count 0", ErrMalformed)
	}
	if h.Index >= h.Count {
		return Header{}, fmt.Errorf("%w: part %d of %d", ErrMalformed, h.Index, h.Count)
	}
	if h.Count > 1 && uint32(h.Count) > h.Total {
		return Header{}, fmt.Errorf("%w: %d parts for %d bytes", ErrMalformed, h.Count, h.Total)
	}
	return h, nil
}

func putHeader(b []byte, h *Header) {
	b[0], b[1], b[2], b[3] = magic0, magic1, Version, byte(h.Kind)
	binary.BigEndian.PutUint64(b[4:], h.Epoch)
	binary.BigEndian.PutUint64(b[12:], h.Seq)
	binary.BigEndian.PutUint16(b[20:], h.Flags)
	binary.BigEndian.PutUint16(b[22:], h.Index)
	binary.BigEndian.PutUint16(b[24:], h.Count)
	binary.BigEndian.PutUint32(b[26:], h.Total)
}

// Encode turns m into wire messages of at most maxPayload bytes each, header
// included (NATS max_payload: 1 MiB by default), to be published in order on
// one subject. The parts share one freshly allocated buffer (each capped, so
// appending to one never overwrites another), which the caller owns. A
// message that fits in one part costs one allocation of its size plus
// HeaderSize (plus one for the returned slice if the caller keeps it past
// its own frame); a split one costs two (the buffer, the slice of parts).
//
// Errors: ErrInvalid (m does not fit its Kind, negative track fields,
// maxPayload <= HeaderSize), ErrTooLarge (a string over 65535 bytes, data or
// payload over 4 GiB, more than MaxParts parts).
func Encode(m *Message, maxPayload int) ([][]byte, error) {
	// Small enough to inline: parts then lives on the caller's stack unless
	// the caller keeps the returned slice.
	var parts [1][]byte
	return appendEncode(parts[:0], m, maxPayload)
}

func appendEncode(dst [][]byte, m *Message, maxPayload int) ([][]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil message", ErrInvalid)
	}
	if maxPayload <= HeaderSize {
		return nil, fmt.Errorf("%w: max payload %d <= header size %d", ErrInvalid, maxPayload, HeaderSize)
	}
	flags, size, err := m.check()
	if err != nil {
		return nil, err
	}
	if size > math.MaxUint32 {
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrTooLarge, size)
	}
	chunk := uint64(maxPayload - HeaderSize)
	count := max((size+chunk-1)/chunk, 1)
	if count > MaxParts {
		return nil, fmt.Errorf("%w: %d parts of %d bytes", ErrTooLarge, count, chunk)
	}
	n, c := int(count), int(chunk)
	buf := make([]byte, n*HeaderSize+int(size))
	h := Header{Kind: m.Kind, Epoch: m.Epoch, Seq: m.Seq, Flags: flags, Count: uint16(n), Total: uint32(size)}
	for i := range n {
		h.Index = uint16(i)
		putHeader(buf[i*(HeaderSize+c):], &h)
	}
	dst = slices.Grow(dst, n)
	w := writer{buf: buf, chunk: c}
	m.write(&w)
	if uint64(w.p) != size {
		// A bug in check or write, never the caller's.
		panic(fmt.Sprintf("relaywire: wrote %d payload bytes, sized %d", w.p, size))
	}
	for i := range n {
		start := i * (HeaderSize + c)
		end := min(start+HeaderSize+c, len(buf))
		dst = append(dst, buf[start:end:end])
	}
	return dst, nil
}

// check validates m for its kind and returns its header flags and payload
// size.
func (m *Message) check() (flags uint16, size uint64, err error) {
	switch m.Kind {
	case KindInit:
		if m.Init == nil || m.Segment != nil || m.Segments != nil {
			return 0, 0, fmt.Errorf("%w: %v needs Init only", ErrInvalid, m.Kind)
		}
		size, err = initSize(m.Init)
		return 0, size, err
	case KindSegment:
		if m.Segment == nil || m.Init != nil || m.Segments != nil {
			return 0, 0, fmt.Errorf("%w: %v needs Segment only", ErrInvalid, m.Kind)
		}
		size, err = segmentSize(m.Segment)
		return segmentFlags(m.Segment), size, err
	case KindEnd:
		if m.Init != nil || m.Segment != nil || m.Segments != nil {
			return 0, 0, fmt.Errorf("%w: %v carries nothing", ErrInvalid, m.Kind)
		}
		return 0, 0, nil
	case KindSnapshot:
		if m.Segment != nil {
			return 0, 0, fmt.Errorf("%w: %v carries Segments, not Segment", ErrInvalid, m.Kind)
		}
		if m.Init != nil {
			flags = FlagHasInit
			if size, err = initSize(m.Init); err != nil {
				return 0, 0, err
			}
		}
		if uint64(len(m.Segments)) > math.MaxUint32 {
			return 0, 0, fmt.Errorf("%w: %d segments", ErrTooLarge, len(m.Segments))
		}
		size += 4
		for i, s := range m.Segments {
			if s == nil {
				return 0, 0, fmt.Errorf("%w: snapshot segment %d is nil", ErrInvalid, i)
			}
			n, err := segmentSize(s)
			if err != nil {
				return 0, 0, err
			}
			size += 1 + n
		}
		return flags, size, nil
	}
	return 0, 0, fmt.Errorf("%w: unknown kind %d", ErrInvalid, uint8(m.Kind))
}

func segmentFlags(s *remux.Segment) uint16 {
	var f uint16
	if s.Keyframe {
		f |= FlagKeyframe
	}
	if s.HasVideo {
		f |= FlagHasVideo
	}
	return f
}

const (
	trackMinSize   = 4 + 2 + 2 + 5*4
	segmentMinSize = 8 + 8 + 4
)

func str16Size(what, s string) (uint64, error) {
	if len(s) > math.MaxUint16 {
		return 0, fmt.Errorf("%w: %s of %d bytes (max %d)", ErrTooLarge, what, len(s), math.MaxUint16)
	}
	return 2 + uint64(len(s)), nil
}

func str32Size(what string, b []byte) (uint64, error) {
	if uint64(len(b)) > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s of %d bytes", ErrTooLarge, what, len(b))
	}
	return 4 + uint64(len(b)), nil
}

func checkU32(what string, v int) error {
	if v < 0 || uint64(v) > math.MaxUint32 {
		return fmt.Errorf("%w: %s %d out of range", ErrInvalid, what, v)
	}
	return nil
}

func initSize(in *remux.Init) (uint64, error) {
	size, err := str16Size("MIME", in.MIME)
	if err != nil {
		return 0, err
	}
	if len(in.Tracks) > math.MaxUint16 {
		return 0, fmt.Errorf("%w: %d tracks", ErrTooLarge, len(in.Tracks))
	}
	size += 2
	for i := range in.Tracks {
		t := &in.Tracks[i]
		size += trackMinSize - 4
		for _, s := range [...]struct{ what, v string }{{"track kind", t.Kind}, {"codec", t.Codec}} {
			n, err := str16Size(s.what, s.v)
			if err != nil {
				return 0, err
			}
			size += n
		}
		for _, f := range [...]struct {
			what string
			v    int
		}{{"width", t.Width}, {"height", t.Height}, {"sample rate", t.SampleRate}, {"channels", t.Channels}} {
			if err := checkU32(f.what, f.v); err != nil {
				return 0, err
			}
		}
	}
	n, err := str32Size("init data", in.Data)
	return size + n, err
}

func segmentSize(s *remux.Segment) (uint64, error) {
	n, err := str32Size("segment data", s.Data)
	return segmentMinSize - 4 + n, err
}

// writer writes a payload into the parts of an encode buffer: payload byte p
// goes to part p/chunk, after that part's header.
type writer struct {
	buf   []byte
	chunk int
	p     int
}

func (w *writer) write(b []byte) {
	for len(b) > 0 {
		part, off := w.p/w.chunk, w.p%w.chunk
		n := copy(w.buf[part*(HeaderSize+w.chunk)+HeaderSize+off:], b[:min(len(b), w.chunk-off)])
		w.p += n
		b = b[n:]
	}
}

func (w *writer) u8(v uint8) { w.write([]byte{v}) }

func (w *writer) u16(v uint16) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	w.write(b[:])
}

func (w *writer) u32(v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	w.write(b[:])
}

func (w *writer) u64(v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	w.write(b[:])
}

func (w *writer) str16(s string) {
	w.u16(uint16(len(s)))
	for len(s) > 0 {
		part, off := w.p/w.chunk, w.p%w.chunk
		n := copy(w.buf[part*(HeaderSize+w.chunk)+HeaderSize+off:], s[:min(len(s), w.chunk-off)])
		w.p += n
		s = s[n:]
	}
}

func (w *writer) str32(b []byte) {
	w.u32(uint32(len(b)))
	w.write(b)
}

// write writes m's payload; m has passed check.
func (m *Message) write(w *writer) {
	switch m.Kind {
	case KindInit:
		writeInit(w, m.Init)
	case KindSegment:
		writeSegment(w, m.Segment)
	case KindSnapshot:
		if m.Init != nil {
			writeInit(w, m.Init)
		}
		w.u32(uint32(len(m.Segments)))
		for _, s := range m.Segments {
			w.u8(uint8(segmentFlags(s)))
			writeSegment(w, s)
		}
	}
}

func writeInit(w *writer, in *remux.Init) {
	w.str16(in.MIME)
	w.u16(uint16(len(in.Tracks)))
	for i := range in.Tracks {
		t := &in.Tracks[i]
		w.u32(t.ID)
		w.str16(t.Kind)
		w.str16(t.Codec)
		w.u32(uint32(t.Width))
		w.u32(uint32(t.Height))
		w.u32(uint32(t.SampleRate))
		w.u32(uint32(t.Channels))
		w.u32(t.Timescale)
	}
	w.str32(in.Data)
}

func writeSegment(w *writer, s *remux.Segment) {
	w.u64(uint64(s.Time))
	w.u64(uint64(s.Duration))
	w.str32(s.Data)
}

// reader reads a payload; the first short read sets err (ErrTruncated) and
// every later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s of %d bytes, %d left", ErrTruncated, what, n, len(r.b))
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) u8(what string) uint8 {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) int(what string) int {
	v := r.u32(what)
	if uint64(v) > math.MaxInt && r.err == nil { // 32-bit platforms
		r.err = fmt.Errorf("%w: %s %d overflows int", ErrMalformed, what, v)
	}
	return int(v)
}

func (r *reader) str16(what string) string { return string(r.take(uint64(r.u16(what)), what)) }

// bytes32 returns a length-prefixed field aliasing the payload (nil when
// empty).
func (r *reader) bytes32(what string) []byte {
	b := r.take(uint64(r.u32(what)), what)
	if len(b) == 0 {
		return nil
	}
	return b
}

// decode decodes a complete payload under header h. Init and segment data
// alias p.
func decode(h *Header, p []byte) (*Message, error) {
	var m *Message
	if h.Kind == KindSegment {
		ms := &struct { // one allocation for both
			m Message
			s remux.Segment
		}{}
		m, ms.m.Segment = &ms.m, &ms.s
	} else {
		m = &Message{}
	}
	m.Kind, m.Epoch, m.Seq = h.Kind, h.Epoch, h.Seq
	r := reader{b: p}
	switch h.Kind {
	case KindInit:
		m.Init = readInit(&r)
	case KindSegment:
		readSegment(&r, m.Segment, h.Flags)
	case KindSnapshot:
		if h.Flags&FlagHasInit != 0 {
			m.Init = readInit(&r)
		}
		n := uint64(r.u32("segment count"))
		if r.err == nil && n > uint64(len(r.b))/(1+segmentMinSize) {
			return nil, fmt.Errorf("%w: %d segments in %d bytes", ErrTruncated, n, len(r.b))
		}
		if n > 0 {
			segs := make([]remux.Segment, n)
			m.Segments = make([]*remux.Segment, n)
			for i := range segs {
				f := uint16(r.u8("segment flags"))
				if f&^(FlagKeyframe|FlagHasVideo) != 0 && r.err == nil {
					r.err = fmt.Errorf("%w: segment %d flags %#02x", ErrMalformed, i, f)
				}
				readSegment(&r, &segs[i], f)
				m.Segments[i] = &segs[i]
			}
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%v: %w", h.Kind, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after a %v", ErrMalformed, len(r.b), h.Kind)
	}
	return m, nil
}

func readInit(r *reader) *remux.Init {
	in := &remux.Init{MIME: r.str16("MIME")}
	n := uint64(r.u16("track count"))
	if r.err == nil && n > uint64(len(r.b))/trackMinSize {
		r.err = fmt.Errorf("%w: %d tracks in %d bytes", ErrTruncated, n, len(r.b))
	}
	if r.err == nil && n > 0 {
		in.Tracks = make([]remux.Track, n)
		for i := range in.Tracks {
			t := &in.Tracks[i]
			t.ID = r.u32("track ID")
			t.Kind = r.str16("track kind")
			t.Codec = r.str16("codec")
			t.Width = r.int("width")
			t.Height = r.int("height")
			t.SampleRate = r.int("sample rate")
			t.Channels = r.int("channels")
			t.Timescale = r.u32("timescale")
		}
	}
	in.Data = r.bytes32("init data")
	return in
}

func readSegment(r *reader, s *remux.Segment, flags uint16) {
	s.Keyframe = flags&FlagKeyframe != 0
	s.HasVideo = flags&FlagHasVideo != 0
	s.Time = time.Duration(r.u64("segment time"))
	s.Duration = time.Duration(r.u64("segment duration"))
	s.Data = r.bytes32("segment data")
}
