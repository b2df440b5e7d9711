package relaywire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/mseway/mseway/remux"
)

func TestRoundTripKinds(t *testing.T) {
	msgs := map[string]*Message{
		"init": {Kind: KindInit, Epoch: 1, Seq: 0, Init: testInit()},
		"init-no-tracks-no-data": {Kind: KindInit, Epoch: 1, Seq: 1,
			Init: &remux.Init{MIME: `audio/mp4; codecs="opus"`}},
		"segment-key": {Kind: KindSegment, Epoch: 1, Seq: 2, Segment: testSegment(5000, 1, true)},
		"segment-delta": {Kind: KindSegment, Epoch: math.MaxUint64, Seq: math.MaxUint64,
			Segment: &remux.Segment{Data: []byte{1, 2, 3}, HasVideo: true, Time: 10 * time.Hour, Duration: time.Nanosecond}},
		"segment-audio-only-key": {Kind: KindSegment, Epoch: 3, Seq: 4,
			Segment: &remux.Segment{Data: []byte{9}, Keyframe: true, Time: -time.Second, Duration: math.MinInt64}},
		"segment-empty":      {Kind: KindSegment, Epoch: 3, Seq: 5, Segment: &remux.Segment{}},
		"end":                {Kind: KindEnd, Epoch: 1 << 40, Seq: 77},
		"snapshot":           testSnapshot(30, 300),
		"snapshot-empty":     {Kind: KindSnapshot, Epoch: 9, Seq: 0},
		"snapshot-noinit":    {Kind: KindSnapshot, Epoch: 9, Seq: 3, Segments: testSnapshot(3, 10).Segments},
		"snapshot-init-only": {Kind: KindSnapshot, Epoch: 9, Seq: 1, Init: testInit()},
	}
	for name, m := range msgs {
		for _, maxPayload := range []int{HeaderSize + 1, HeaderSize + 7, 200, 1 << 10, 1 << 20} {
			parts := mustEncode(t, m, maxPayload)
			var j Joiner
			got := join(t, &j, parts)
			if d := diffMessage(got, m); d != "" {
				t.Errorf("%s at %d: %s", name, maxPayload, d)
			}
			if s := j.Stats(); s != (JoinerStats{Messages: 1}) {
				t.Errorf("%s at %d: stats %+v", name, maxPayload, s)
			}
		}
	}
}

func TestRoundTripTimescale(t *testing.T) {
	// remux.Track.Timescale is json:"-": make sure it travels anyway.
	m := &Message{Kind: KindInit, Epoch: 1, Seq: 1, Init: testInit()}
	var j Joiner
	got := join(t, &j, mustEncode(t, m, 1<<20))
	if got.Init.Tracks[0].Timescale != 90000 || got.Init.Tracks[1].Timescale != 48000 {
		t.Fatalf("tracks %+v", got.Init.Tracks)
	}
}

func TestRoundTripSplitLarge(t *testing.T) {
	big := &Message{Kind: KindSegment, Epoch: 5, Seq: 6, Segment: testSegment(3<<20, 42, true)}
	snap := testSnapshot(30, 40<<10)
	for _, m := range []*Message{big, snap} {
		for _, maxPayload := range []int{200, 1 << 10, 1 << 20} {
			parts := mustEncode(t, m, maxPayload)
			size := 0
			for _, p := range parts {
				size += len(p) - HeaderSize
			}
			chunk := maxPayload - HeaderSize
			if want := (size + chunk - 1) / chunk; len(parts) != want {
				t.Errorf("%v at %d: %d parts for %d bytes, want %d", m.Kind, maxPayload, len(parts), size, want)
			}
			var j Joiner
			got := join(t, &j, parts)
			if d := diffMessage(got, m); d != "" {
				t.Errorf("%v at %d (%d parts): %s", m.Kind, maxPayload, len(parts), d)
			}
		}
	}
}

func TestEncodeOneAllocation(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 2, Segment: testSegment(16<<10, 3, true)}
	var size int
	allocs := testing.AllocsPerRun(100, func() {
		parts, err := Encode(m, 1<<20)
		if err != nil || len(parts) != 1 {
			t.Fatal(err, len(parts))
		}
		size = len(parts[0])
	})
	if allocs != 1 {
		t.Errorf("Encode of a 16 KiB segment: %v allocations, want 1", allocs)
	}
	if want := HeaderSize + 20 + 16<<10; size != want {
		t.Errorf("%d bytes, want %d", size, want)
	}
}

func TestDecodeZeroCopy(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 2, Segment: testSegment(1000, 3, true)}
	parts := mustEncode(t, m, 1<<20)
	var j Joiner
	got := join(t, &j, parts)
	b, d := parts[0], got.Segment.Data
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
	if p < start || p+uintptr(len(d)) > start+uintptr(len(b)) {
		t.Fatalf("segment data does not alias the wire message")
	}
	if cap(d) != len(d) {
		t.Fatalf("segment data cap %d > len %d: an append would overwrite the buffer", cap(d), len(d))
	}
	allocs := testing.AllocsPerRun(100, func() {
		var j Joiner
		if _, ok, err := j.Add(parts[0]); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	if allocs > 1 {
		t.Errorf("decoding a segment: %v allocations, want 1", allocs)
	}
}

func TestPartsDoNotOverlap(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 2, Segment: testSegment(1000, 3, true)}
	parts := mustEncode(t, m, 300)
	saved := append([]byte(nil), parts[1]...)
	_ = append(parts[0], 0xff, 0xff, 0xff)
	if !bytes.Equal(parts[1], saved) {
		t.Fatal("appending to part 0 changed part 1")
	}
}

// twoMessages returns a 3-part segment (seq 10) and a 2-part one (seq 11).
func twoMessages(t *testing.T) (a, b *Message, pa, pb [][]byte) {
	a = &Message{Kind: KindSegment, Epoch: 1, Seq: 10, Segment: testSegment(2500, 1, true)}
	b = &Message{Kind: KindSegment, Epoch: 1, Seq: 11, Segment: testSegment(1500, 2, false)}
	pa, pb = mustEncode(t, a, 1000), mustEncode(t, b, 1000)
	if len(pa) != 3 || len(pb) != 2 {
		t.Fatalf("%d and %d parts", len(pa), len(pb))
	}
	return a, b, pa, pb
}

func TestJoinerMissingMiddlePart(t *testing.T) {
	_, b, pa, pb := twoMessages(t)
	var j Joiner
	if _, ok, err := j.Add(pa[0]); ok || err != nil {
		t.Fatal(ok, err)
	}
	m, ok, err := j.Add(pa[2])
	if !errors.Is(err, ErrIncomplete) || ok || m != nil {
		t.Fatalf("part 2 after a lost part 1: %v %v %v", m, ok, err)
	}
	if got := join(t, &j, pb); diffMessage(got, b) != "" {
		t.Fatal(diffMessage(got, b))
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 1, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestJoinerMissingFirstPart(t *testing.T) {
	_, b, pa, pb := twoMessages(t)
	var j Joiner
	for _, p := range pa[1:] {
		if _, _, err := j.Add(p); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("a part without its first part: %v", err)
		}
	}
	if got := join(t, &j, pb); diffMessage(got, b) != "" {
		t.Fatal(diffMessage(got, b))
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 1, Dropped: 1}) {
		t.Fatalf("stats %+v (the message counted once)", s)
	}
}

func TestJoinerMissingLastPart(t *testing.T) {
	_, b, pa, pb := twoMessages(t)
	var j Joiner
	join(t, &Joiner{}, pa) // sanity
	for _, p := range pa[:2] {
		if _, ok, err := j.Add(p); ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	// The next message's first part drops it: counted, and a gap in Seq.
	if got := join(t, &j, pb); diffMessage(got, b) != "" {
		t.Fatal(diffMessage(got, b))
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 1, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
	// A single-part message drops a partial too.
	c := mustEncode(t, &Message{Kind: KindSegment, Epoch: 1, Seq: 12, Segment: testSegment(1500, 3, false)}, 1000)
	end := mustEncode(t, &Message{Kind: KindEnd, Epoch: 1, Seq: 13}, 1000)
	if _, ok, err := j.Add(c[0]); ok || err != nil {
		t.Fatal(ok, err)
	}
	if m, ok, err := j.Add(end[0]); !ok || err != nil || m.Kind != KindEnd {
		t.Fatal(m, ok, err)
	}
	if s := j.Stats(); s.Dropped != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestJoinerInterleaved(t *testing.T) {
	_, b, pa, pb := twoMessages(t)
	var j Joiner
	var got *Message
	for i, p := range [][]byte{pa[0], pb[0], pa[1], pb[1], pa[2]} {
		m, ok, err := j.Add(p)
		switch i {
		case 2, 4: // A's leftovers: refused, B untouched
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("step %d: %v", i, err)
			}
		default:
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if ok {
			got = m
		}
	}
	if d := diffMessage(got, b); d != "" {
		t.Fatal(d)
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 1, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestJoinerNewEpochDropsOld(t *testing.T) {
	old := mustEncode(t, &Message{Kind: KindSegment, Epoch: 1, Seq: 50, Segment: testSegment(3000, 1, false)}, 1000)
	init := &Message{Kind: KindInit, Epoch: 2, Seq: 0, Init: testInit()}
	key := &Message{Kind: KindSegment, Epoch: 2, Seq: 1, Segment: testSegment(3000, 2, true)}
	var j Joiner
	j.Add(old[0])
	if got := join(t, &j, mustEncode(t, init, 1000)); diffMessage(got, init) != "" {
		t.Fatal(diffMessage(got, init))
	}
	pk := mustEncode(t, key, 1000)
	j.Add(pk[0])
	if _, _, err := j.Add(old[1]); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("old epoch's leftover: %v", err)
	}
	if got := join(t, &j, pk[1:]); diffMessage(got, key) != "" {
		t.Fatal(diffMessage(got, key))
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 2, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestJoinerDuplicates(t *testing.T) {
	a, b, pa, pb := twoMessages(t)
	var j Joiner
	var got []*Message
	// Duplicates of a part in assembly, and of the message just completed
	// (its last part, then its first).
	for _, p := range [][]byte{pa[0], pa[0], pa[1], pa[0], pa[1], pa[2], pa[2], pa[0], pb[0], pb[1], pb[1]} {
		m, ok, err := j.Add(p)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got = append(got, m)
		}
	}
	if len(got) != 2 || diffMessage(got[0], a) != "" || diffMessage(got[1], b) != "" {
		t.Fatalf("got %d messages", len(got))
	}
	if s := j.Stats(); s != (JoinerStats{Messages: 2, Duplicates: 6}) {
		t.Fatalf("stats %+v", s)
	}
	// A single-part message twice in a row: delivered once.
	end := mustEncode(t, &Message{Kind: KindEnd, Epoch: 1, Seq: 12}, 1000)
	if _, ok, _ := j.Add(end[0]); !ok {
		t.Fatal("end not delivered")
	}
	if m, ok, err := j.Add(end[0]); ok || m != nil || err != nil {
		t.Fatal("duplicate end:", m, ok, err)
	}
}

func TestJoinerSnapshotAndLiveShareSeq(t *testing.T) {
	snap := testSnapshot(2, 100)
	live := &Message{Kind: KindSegment, Epoch: snap.Epoch, Seq: snap.Seq, Segment: testSegment(10, 1, false)}
	var j Joiner
	join(t, &j, mustEncode(t, snap, 1<<20))
	if got := join(t, &j, mustEncode(t, live, 1<<20)); diffMessage(got, live) != "" {
		t.Fatal("a segment with the snapshot's epoch and seq taken for a duplicate")
	}
}

// rawPart builds a wire message with an arbitrary header.
func rawPart(h Header, payload []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	putHeader(b, &h)
	return append(b, payload...)
}

func TestHostileParts(t *testing.T) {
	seg := mustEncode(t, &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(100, 1, true)}, 1<<20)[0]
	good := Header{Kind: KindSegment, Epoch: 1, Seq: 1, Count: 1, Total: uint32(len(seg) - HeaderSize)}
	with := func(f func(b []byte)) []byte {
		b := bytes.Clone(seg)
		f(b)
		return b
	}
	hdr := func(f func(h *Header)) []byte {
		h := good
		f(&h)
		return rawPart(h, seg[HeaderSize:])
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	single := func(k Kind, flags uint16, payload []byte) []byte {
		return rawPart(Header{Kind: k, Epoch: 1, Seq: 2, Flags: flags, Count: 1, Total: uint32(len(payload))}, payload)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	segBody := func(dataLen uint32, data []byte) []byte { return cat(make([]byte, 16), u32(dataLen), data) }

	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"one byte", []byte{magic0}, ErrTruncated},
		{"wrong magic", with(func(b []byte) { b[0] = '{' }), ErrMagic},
		{"json", []byte(`{"kind":"segment"}`), ErrMagic},
		{"wrong magic 2", with(func(b []byte) { b[1] = 'X' }), ErrMagic},
		{"version 0", with(func(b []byte) { b[2] = 0 }), ErrVersion},
		{"version 2", with(func(b []byte) { b[2] = 2 }), ErrVersion},
		{"version 2 short", []byte{magic0, magic1, 2}, ErrVersion},
		{"truncated header", seg[:HeaderSize-1], ErrTruncated},
		{"header only", seg[:HeaderSize], ErrTruncated},
		{"unknown kind 0", hdr(func(h *Header) { h.Kind = 0 }), ErrMalformed},
		{"unknown kind 5", hdr(func(h *Header) { h.Kind = 5 }), ErrMalformed},
		{"unknown flag", hdr(func(h *Header) { h.Flags = 1 << 15 }), ErrMalformed},
		{"has-init on a segment", hdr(func(h *Header) { h.Flags = FlagHasInit }), ErrMalformed},
		{"count 0", hdr(func(h *Header) { h.Count = 0 }), ErrMalformed},
		{"index = count", hdr(func(h *Header) { h.Index = 1 }), ErrMalformed},
		{"index > count", hdr(func(h *Header) { h.Index, h.Count = 9, 3 }), ErrMalformed},
		{"more parts than bytes", hdr(func(h *Header) { h.Count, h.Total = 50, 10 }), ErrMalformed},
		{"total 4 GiB", hdr(func(h *Header) { h.Total = math.MaxUint32 }), ErrTooLarge},
		{"total 4 GiB in parts", hdr(func(h *Header) { h.Total, h.Count = math.MaxUint32, math.MaxUint16 }), ErrTooLarge},
		{"total past the end", hdr(func(h *Header) { h.Total++ }), ErrTruncated},
		{"bytes past the total", hdr(func(h *Header) { h.Total-- }), ErrMalformed},
		{"data length past the end", single(KindSegment, 0, segBody(101, make([]byte, 100))), ErrTruncated},
		{"data length 4 GiB", single(KindSegment, 0, segBody(math.MaxUint32, make([]byte, 100))), ErrTruncated},
		{"segment bytes after data", single(KindSegment, 0, segBody(99, make([]byte, 100))), ErrMalformed},
		{"segment short timing", single(KindSegment, 0, make([]byte, 10)), ErrTruncated},
		{"end with payload", single(KindEnd, 0, []byte{0}), ErrMalformed},
		{"init empty", single(KindInit, 0, nil), ErrTruncated},
		{"init MIME past the end", single(KindInit, 0, cat(u16(100), []byte("video/mp4"))), ErrTruncated},
		{"init 65535 tracks", single(KindInit, 0, cat(u16(0), u16(math.MaxUint16), make([]byte, 100))), ErrTruncated},
		{"init track string past the end", single(KindInit, 0, cat(u16(0), u16(1), u32(1), u16(500), make([]byte, 40))), ErrTruncated},
		{"init data past the end", single(KindInit, 0, cat(u16(0), u16(0), u32(10), []byte{1})), ErrTruncated},
		{"init trailing", single(KindInit, 0, cat(u16(0), u16(0), u32(1), []byte{1, 2})), ErrMalformed},
		{"snapshot 4G segments", single(KindSnapshot, 0, cat(u32(math.MaxUint32), make([]byte, 100))), ErrTruncated},
		{"snapshot segment flags", single(KindSnapshot, 0, cat(u32(1), []byte{0x80}, segBody(0, nil))), ErrMalformed},
		{"snapshot segment past the end", single(KindSnapshot, 0, cat(u32(2), []byte{1}, segBody(30, make([]byte, 30)))), ErrTruncated},
		{"snapshot has-init without one", single(KindSnapshot, FlagHasInit, cat(u32(0))), ErrTruncated},
		{"snapshot trailing", single(KindSnapshot, 0, cat(u32(0), []byte{0})), ErrMalformed},
	}
	for _, c := range cases {
		var j Joiner
		m, ok, err := j.Add(c.b)
		if !errors.Is(err, c.want) || ok || m != nil {
			t.Errorf("%s: got %v %v %v, want %v", c.name, m, ok, err, c.want)
		}
		if s := j.Stats(); s.Refused != 1 || s.Messages != 0 {
			t.Errorf("%s: stats %+v", c.name, s)
		}
	}
	// A refused part leaves the Joiner usable.
	var j Joiner
	for _, c := range cases {
		j.Add(c.b)
	}
	if _, ok, err := j.Add(seg); !ok || err != nil {
		t.Fatalf("after hostile parts: %v %v", ok, err)
	}
}

func TestHostileMultiPart(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(500, 1, true)}
	parts := mustEncode(t, m, 200) // 3 parts
	h, _ := ParseHeader(parts[0])
	mod := func(i int, f func(h *Header), payload []byte) [][]byte {
		out := append([][]byte(nil), parts...)
		hh := h
		hh.Index = uint16(i)
		f(&hh)
		if payload == nil {
			payload = parts[i][HeaderSize:]
		}
		out[i] = rawPart(hh, payload)
		return out
	}
	cases := []struct {
		name  string
		parts [][]byte
		want  error
	}{
		{"empty first part", mod(0, func(*Header) {}, []byte{}), ErrMalformed},
		{"empty middle part", mod(1, func(*Header) {}, []byte{}), ErrMalformed},
		{"middle part too long", mod(1, func(*Header) {}, make([]byte, 400)), ErrMalformed},
		{"last part short", mod(2, func(*Header) {}, []byte{1}), ErrTruncated},
		{"total changes", mod(1, func(h *Header) { h.Total-- }, nil), ErrMalformed},
		{"count changes", mod(1, func(h *Header) { h.Count++ }, nil), ErrMalformed},
		{"flags change", mod(1, func(h *Header) { h.Flags = 0 }, nil), ErrMalformed},
		{"first part eats all", mod(0, func(*Header) {}, make([]byte, h.Total)), ErrMalformed},
		{"payload garbage", mod(1, func(*Header) {}, bytes.Repeat([]byte{0xff}, len(parts[1])-HeaderSize)), nil},
	}
	for _, c := range cases {
		var j Joiner
		var errs []error
		for _, p := range c.parts {
			m, ok, err := j.Add(p)
			if ok && c.want != nil {
				t.Errorf("%s: a message %+v", c.name, m)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if c.want == nil { // only the decoded data changed
			if len(errs) != 0 {
				t.Errorf("%s: %v", c.name, errs)
			}
			continue
		}
		if len(errs) == 0 || !errors.Is(errs[0], c.want) {
			t.Errorf("%s: errors %v, want %v", c.name, errs, c.want)
		}
		for _, err := range errs {
			if !isSentinel(err) {
				t.Errorf("%s: %v is no sentinel", c.name, err)
			}
		}
		// The next message is fine.
		if got := join(t, &j, mustEncode(t, &Message{Kind: KindEnd, Epoch: 2, Seq: 1}, 200)); got.Kind != KindEnd {
			t.Errorf("%s: next message %v", c.name, got.Kind)
		}
	}
}

func TestJoinerMaxTotal(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(5000, 1, true)}
	parts := mustEncode(t, m, 1000)
	j := Joiner{MaxTotal: 4000}
	if _, _, err := j.Add(parts[0]); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxTotal: %v", err)
	}
	for _, p := range parts[1:] {
		if _, _, err := j.Add(p); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("rest of a refused message: %v", err)
		}
	}
	if s := j.Stats(); s != (JoinerStats{Refused: 1, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
	j.MaxTotal = 5020
	join(t, &j, parts)

	// The default refuses a 4 GiB claim, and allocates nothing for it.
	huge := rawPart(Header{Kind: KindSegment, Epoch: 1, Seq: 2, Count: 2, Total: DefaultMaxTotal + 1}, make([]byte, 100))
	var d Joiner
	if allocated(func() {
		if _, _, err := d.Add(huge); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("64 MiB + 1 by default: %v", err)
		}
	}) > 1<<10 {
		t.Fatal("allocated for a refused part")
	}
}

// allocated returns the bytes f allocates, on average over 20 calls: the
// counter is the whole process's, and the runtime (or the race detector)
// allocates a little now and then on its own; averaged, that noise is a few
// dozen bytes, while what f allocates counts in full every time.
func allocated(f func()) uint64 {
	const runs = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

func TestDecodeAllocationBounded(t *testing.T) {
	// The densest hostile payloads: a snapshot of empty segments and an init
	// of empty tracks. Decoding allocates a bounded multiple of the payload.
	const n = 40000
	snap := binary.BigEndian.AppendUint32(nil, n)
	snap = append(snap, make([]byte, n*(1+segmentMinSize))...)
	init := binary.BigEndian.AppendUint16(nil, 0)
	init = binary.BigEndian.AppendUint16(init, math.MaxUint16)
	init = append(init, make([]byte, math.MaxUint16*trackMinSize+4)...)
	for _, c := range []struct {
		kind    Kind
		flags   uint16
		payload []byte
	}{{KindSnapshot, 0, snap}, {KindInit, 0, init}} {
		b := rawPart(Header{Kind: c.kind, Epoch: 1, Seq: 1, Count: 1, Total: uint32(len(c.payload))}, c.payload)
		var m *Message
		got := allocated(func() {
			var err error
			var j Joiner
			m, _, err = j.Add(b)
			if err != nil {
				t.Fatal(err)
			}
		})
		if got > 4*uint64(len(c.payload))+4096 {
			t.Errorf("%v: %d bytes allocated for a %d-byte payload", c.kind, got, len(c.payload))
		}
		runtime.KeepAlive(m)
	}
}

func TestEncodeErrors(t *testing.T) {
	seg := testSegment(10, 1, true)
	cases := []struct {
		name       string
		m          *Message
		maxPayload int
		want       error
	}{
		{"nil", nil, 1000, ErrInvalid},
		{"kind 0", &Message{}, 1000, ErrInvalid},
		{"kind 9", &Message{Kind: 9}, 1000, ErrInvalid},
		{"init without Init", &Message{Kind: KindInit}, 1000, ErrInvalid},
		{"init with Segment", &Message{Kind: KindInit, Init: testInit(), Segment: seg}, 1000, ErrInvalid},
		{"segment without Segment", &Message{Kind: KindSegment}, 1000, ErrInvalid},
		{"segment with Segments", &Message{Kind: KindSegment, Segment: seg, Segments: []*remux.Segment{seg}}, 1000, ErrInvalid},
		{"end with Init", &Message{Kind: KindEnd, Init: testInit()}, 1000, ErrInvalid},
		{"snapshot with Segment", &Message{Kind: KindSnapshot, Segment: seg}, 1000, ErrInvalid},
		{"snapshot nil segment", &Message{Kind: KindSnapshot, Segments: []*remux.Segment{seg, nil}}, 1000, ErrInvalid},
		{"negative width", &Message{Kind: KindInit, Init: &remux.Init{Tracks: []remux.Track{{Width: -1}}}}, 1000, ErrInvalid},
		{"max payload = header", &Message{Kind: KindEnd}, HeaderSize, ErrInvalid},
		{"max payload 0", &Message{Kind: KindEnd}, 0, ErrInvalid},
		{"MIME over 64 KiB", &Message{Kind: KindInit, Init: &remux.Init{MIME: strings.Repeat("a", 1<<16)}}, 1 << 20, ErrTooLarge},
		{"codec over 64 KiB", &Message{Kind: KindInit, Init: &remux.Init{Tracks: []remux.Track{{Codec: strings.Repeat("a", 1<<16)}}}}, 1 << 20, ErrTooLarge},
		{"more than 65535 parts", &Message{Kind: KindSegment, Segment: testSegment(1<<16, 1, true)}, HeaderSize + 1, ErrTooLarge},
	}
	for _, c := range cases {
		parts, err := Encode(c.m, c.maxPayload)
		if !errors.Is(err, c.want) || parts != nil {
			t.Errorf("%s: %d parts, %v, want %v", c.name, len(parts), err, c.want)
		}
	}
	// The largest payload that fits in 65535 one-byte parts.
	m := &Message{Kind: KindSegment, Segment: &remux.Segment{Data: make([]byte, MaxParts-segmentMinSize)}}
	if parts := mustEncode(t, m, HeaderSize+1); len(parts) != MaxParts {
		t.Fatalf("%d parts", len(parts))
	}
}

func TestParseHeader(t *testing.T) {
	m := &Message{Kind: KindSegment, Epoch: 0x0102030405060708, Seq: 0x1112131415161718, Segment: testSegment(100, 1, true)}
	b := mustEncode(t, m, 1<<20)[0]
	want := []byte{0x8f, 'R', 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 3, 0, 0, 0, 1, 0, 0, 0, 120}
	if !bytes.Equal(b[:HeaderSize], want) {
		t.Fatalf("header % x\nwant   % x", b[:HeaderSize], want)
	}
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h != (Header{Kind: KindSegment, Epoch: m.Epoch, Seq: m.Seq, Flags: FlagKeyframe | FlagHasVideo, Count: 1, Total: 120}) {
		t.Fatalf("%+v", h)
	}
	for _, k := range []Kind{KindInit, KindSegment, KindEnd, KindSnapshot, 0} {
		if k.String() == "" {
			t.Fatal(k)
		}
	}
}
