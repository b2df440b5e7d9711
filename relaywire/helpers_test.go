package relaywire

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mseway/mseway/remux"
)

// payloadBytes returns n bytes that differ with seed.
func payloadBytes(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func testInit() *remux.Init {
	return &remux.Init{
		MIME: `video/mp4; codecs="avc1.640028,opus"`,
		Tracks: []remux.Track{
			{ID: 1, Kind: "video", Codec: "avc1.640028", Width: 1920, Height: 1080, Timescale: 90000},
			{ID: 2, Kind: "audio", Codec: "opus", SampleRate: 48000, Channels: 2, Timescale: 48000},
		},
		Data: payloadBytes(700, 1),
	}
}

func testSegment(n int, seed uint32, key bool) *remux.Segment {
	return &remux.Segment{
		Data:     payloadBytes(n, seed),
		Keyframe: key,
		HasVideo: true,
		Time:     time.Duration(seed) * 33 * time.Millisecond,
		Duration: 33*time.Millisecond + time.Duration(seed),
	}
}

// testSnapshot returns a snapshot with an init and n segments of size bytes,
// the first a keyframe.
func testSnapshot(n, size int) *Message {
	m := &Message{Kind: KindSnapshot, Epoch: 7, Seq: 1000, Init: testInit()}
	for i := range n {
		s := testSegment(size+i, uint32(100+i), i == 0)
		s.HasVideo = i%3 != 2 // some audio-only segments
		m.Segments = append(m.Segments, s)
	}
	return m
}

// canon returns a deep copy of m with empty byte fields, Tracks and Segments
// set to nil, as decoding returns them.
func canon(m *Message) *Message {
	if m == nil {
		return nil
	}
	c := *m
	bs := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return append([]byte(nil), b...)
	}
	if m.Init != nil {
		in := *m.Init
		in.Data = bs(in.Data)
		in.Tracks = nil
		if len(m.Init.Tracks) > 0 {
			in.Tracks = append([]remux.Track(nil), m.Init.Tracks...)
		}
		c.Init = &in
	}
	if m.Segment != nil {
		s := *m.Segment
		s.Data = bs(s.Data)
		c.Segment = &s
	}
	c.Segments = nil
	for _, s := range m.Segments {
		s2 := *s
		s2.Data = bs(s2.Data)
		c.Segments = append(c.Segments, &s2)
	}
	return &c
}

// diffMessage describes how got differs from want (after canon), or "".
func diffMessage(got, want *Message) string {
	g, w := canon(got), canon(want)
	if reflect.DeepEqual(g, w) {
		return ""
	}
	if g == nil || w == nil {
		return fmt.Sprintf("got %v, want %v", g, w)
	}
	if g.Kind != w.Kind || g.Epoch != w.Epoch || g.Seq != w.Seq {
		return fmt.Sprintf("got %v %d/%d, want %v %d/%d", g.Kind, g.Epoch, g.Seq, w.Kind, w.Epoch, w.Seq)
	}
	if !reflect.DeepEqual(g.Init, w.Init) {
		if g.Init == nil || w.Init == nil {
			return fmt.Sprintf("init: got %v, want %v", g.Init != nil, w.Init != nil)
		}
		return fmt.Sprintf("init: got MIME %q tracks %+v %d bytes, want MIME %q tracks %+v %d bytes",
			g.Init.MIME, g.Init.Tracks, len(g.Init.Data), w.Init.MIME, w.Init.Tracks, len(w.Init.Data))
	}
	if !reflect.DeepEqual(g.Segment, w.Segment) {
		return fmt.Sprintf("segment: got %s, want %s", segString(g.Segment), segString(w.Segment))
	}
	if len(g.Segments) != len(w.Segments) {
		return fmt.Sprintf("got %d segments, want %d", len(g.Segments), len(w.Segments))
	}
	for i := range g.Segments {
		if !reflect.DeepEqual(g.Segments[i], w.Segments[i]) {
			return fmt.Sprintf("segment %d: got %s, want %s", i, segString(g.Segments[i]), segString(w.Segments[i]))
		}
	}
	return "differs"
}

func segString(s *remux.Segment) string {
	if s == nil {
		return "nil"
	}
	return fmt.Sprintf("{%d bytes key=%v video=%v time=%v dur=%v}", len(s.Data), s.Keyframe, s.HasVideo, s.Time, s.Duration)
}

// mustEncode encodes m and checks every part against maxPayload and its
// header.
func mustEncode(t testing.TB, m *Message, maxPayload int) [][]byte {
	t.Helper()
	parts, err := Encode(m, maxPayload)
	if err != nil {
		t.Fatalf("Encode(%v, %d): %v", m.Kind, maxPayload, err)
	}
	var total int
	for i, p := range parts {
		if len(p) > maxPayload {
			t.Fatalf("part %d: %d bytes > max payload %d", i, len(p), maxPayload)
		}
		h, err := ParseHeader(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if h.Kind != m.Kind || h.Epoch != m.Epoch || h.Seq != m.Seq || int(h.Index) != i || int(h.Count) != len(parts) {
			t.Fatalf("part %d of %d: header %+v", i, len(parts), h)
		}
		if i < len(parts)-1 && len(p) != maxPayload {
			t.Fatalf("part %d of %d: %d bytes, want %d", i, len(parts), len(p), maxPayload)
		}
		total += len(p) - HeaderSize
		if i == len(parts)-1 && total != int(h.Total) {
			t.Fatalf("parts carry %d payload bytes, header says %d", total, h.Total)
		}
	}
	return parts
}

// join adds parts to j and returns the message the last one completes,
// failing on any error or an early completion.
func join(t testing.TB, j *Joiner, parts [][]byte) *Message {
	t.Helper()
	for i, p := range parts {
		m, ok, err := j.Add(p)
		if err != nil {
			t.Fatalf("Add part %d of %d: %v", i, len(parts), err)
		}
		if ok != (m != nil) {
			t.Fatalf("Add part %d: complete=%v with message %v", i, ok, m != nil)
		}
		if ok != (i == len(parts)-1) {
			t.Fatalf("Add part %d of %d: complete=%v", i, len(parts), ok)
		}
		if ok {
			return m
		}
	}
	t.Fatalf("no parts")
	return nil
}

var sentinels = []error{ErrMagic, ErrVersion, ErrTruncated, ErrTooLarge, ErrMalformed, ErrIncomplete}

// isSentinel reports whether err matches one of the package's decode errors.
func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
