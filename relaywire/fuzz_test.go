package relaywire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mseway/mseway/remux"
)

// splitParts cuts fuzz input into wire messages: a big-endian uint16
// length, then that many bytes.
func splitParts(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 && len(out) < 1000 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		out = append(out, data[:n:n])
		data = data[n:]
	}
	return out
}

func joinParts(parts [][]byte) []byte {
	var b []byte
	for _, p := range parts {
		p = p[:min(len(p), 0xffff)]
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// FuzzJoiner feeds arbitrary wire messages to one Joiner: no panic, only
// the package's errors, complete exactly when a message is returned, and
// every message returned encodes back (to the same payload bytes when it
// came in one part) and decodes to itself.
func FuzzJoiner(f *testing.F) {
	for _, parts := range seedJoinerInputs() {
		f.Add(joinParts(parts))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j := Joiner{MaxTotal: 1 << 20}
		var messages uint64
		for _, b := range splitParts(data) {
			in := bytes.Clone(b)
			m, ok, err := j.Add(b)
			if !bytes.Equal(b, in) {
				t.Fatal("Add modified its input")
			}
			if ok != (m != nil) || (err != nil && ok) {
				t.Fatalf("complete=%v message=%v err=%v", ok, m != nil, err)
			}
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("error %v matches no sentinel", err)
				}
				continue
			}
			if !ok {
				continue
			}
			messages++
			parts, err := Encode(m, HeaderSize+len(b)+1<<20)
			if err != nil {
				t.Fatalf("a decoded %v does not encode: %v", m.Kind, err)
			}
			if h, _ := ParseHeader(b); h.Count == 1 && !bytes.Equal(parts[0][HeaderSize:], b[HeaderSize:]) {
				t.Fatalf("%v re-encodes differently:\n% x\n% x", m.Kind, parts[0][HeaderSize:], b[HeaderSize:])
			}
			var j2 Joiner
			if got := join(t, &j2, parts); diffMessage(got, m) != "" {
				t.Fatal(diffMessage(got, m))
			}
		}
		if s := j.Stats(); s.Messages != messages {
			t.Fatalf("stats %+v, %d messages", s, messages)
		}
	})
}

// fuzzMessage builds a valid Message from fuzz values.
func fuzzMessage(epoch, seq uint64, kind, flags uint8, mime string, data []byte, nseg uint8, at int64) *Message {
	m := &Message{Kind: Kind(1 + kind%4), Epoch: epoch, Seq: seq}
	init := func() *remux.Init {
		in := &remux.Init{MIME: mime[:min(len(mime), 0xffff)], Data: data}
		for i := range int(flags>>4) % 3 {
			codec := mime[min(i, len(mime)):]
			in.Tracks = append(in.Tracks, remux.Track{
				ID: uint32(seq) + uint32(i), Kind: []string{"video", "audio"}[i%2], Codec: codec[:min(len(codec), 0xffff)],
				Width: int(uint32(epoch) >> 1), Height: int(uint32(epoch>>32) >> 1),
				SampleRate: int(uint16(at)), Channels: int(flags & 7), Timescale: uint32(at >> 32),
			})
		}
		return in
	}
	seg := func(i int) *remux.Segment {
		f := flags >> (i % 7)
		var d []byte
		if len(data) > 0 {
			d = data[i%len(data):]
		}
		return &remux.Segment{Data: d, Keyframe: f&1 != 0, HasVideo: f&2 != 0,
			Time: time.Duration(at) + time.Duration(i), Duration: time.Duration(at>>3) - time.Duration(i)}
	}
	switch m.Kind {
	case KindInit:
		m.Init = init()
	case KindSegment:
		m.Segment = seg(0)
	case KindSnapshot:
		if flags&8 != 0 {
			m.Init = init()
		}
		for i := range int(nseg % 40) {
			m.Segments = append(m.Segments, seg(i))
		}
	}
	return m
}

// FuzzDecodeRoundTrip encodes a Message built from fuzz values at a fuzzed
// max payload and joins it back: equal. Then it loses one part of it: the
// message is not returned, and the next message is.
func FuzzDecodeRoundTrip(f *testing.F) {
	for _, s := range seedRoundTrips() {
		f.Add(s.epoch, s.seq, s.kind, s.flags, s.mime, s.data, s.nseg, s.at, s.maxPayload)
	}
	f.Fuzz(func(t *testing.T, epoch, seq uint64, kind, flags uint8, mime string, data []byte, nseg uint8, at int64, maxPayload uint16) {
		m := fuzzMessage(epoch, seq, kind, flags, mime, data, nseg, at)
		mp := HeaderSize + 1 + int(maxPayload)
		parts, err := Encode(m, mp)
		if errors.Is(err, ErrTooLarge) {
			return // more than MaxParts parts
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range parts {
			if len(p) > mp {
				t.Fatalf("part %d: %d bytes > %d", i, len(p), mp)
			}
		}
		var j Joiner
		got := join(t, &j, parts)
		if d := diffMessage(got, m); d != "" {
			t.Fatal(d)
		}
		if len(parts) < 2 {
			return
		}
		lost := int(at&0x7fffffff) % len(parts)
		j = Joiner{}
		for i, p := range parts {
			if i == lost {
				continue
			}
			if msg, ok, err := j.Add(p); ok || msg != nil {
				t.Fatalf("part %d lost, yet a message", lost)
			} else if err != nil && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("part %d lost: %v", lost, err)
			}
		}
		next := &Message{Kind: KindEnd, Epoch: epoch, Seq: seq + 1}
		if got := join(t, &j, mustEncode(t, next, mp)); diffMessage(got, next) != "" {
			t.Fatal(diffMessage(got, next))
		}
		if s := j.Stats(); s.Dropped != 1 || s.Messages != 1 {
			t.Fatalf("part %d of %d lost: stats %+v", lost, len(parts), s)
		}
	})
}

type roundTripSeed struct {
	name        string
	epoch, seq  uint64
	kind, flags uint8
	mime        string
	data        []byte
	nseg        uint8
	at          int64
	maxPayload  uint16
}

func seedRoundTrips() []roundTripSeed {
	mime := `video/mp4; codecs="avc1.42c01f,opus"`
	return []roundTripSeed{
		{"init", 1, 0, 0, 0x20, mime, payloadBytes(300, 1), 0, 90000 << 32, 200},
		{"segment-key-split", 1, 1, 1, 3, "", payloadBytes(2000, 2), 0, int64(33 * time.Millisecond), 500},
		{"end", 1, 2, 2, 0, "", nil, 0, 0, 0},
		{"snapshot", 7, 99, 3, 0x2f, mime, payloadBytes(900, 3), 12, int64(time.Second), 1000},
		{"snapshot-tiny-parts", 7, 99, 3, 0x01, "", payloadBytes(50, 4), 3, -1, 3},
	}
}

// seedJoinerInputs returns sequences of wire messages: clean ones, and ones
// with a lost, duplicated, interleaved or damaged part.
func seedJoinerInputs() map[string][][]byte {
	enc := func(m *Message, mp int) [][]byte {
		parts, err := Encode(m, mp)
		if err != nil {
			panic(err)
		}
		return parts
	}
	seg := enc(&Message{Kind: KindSegment, Epoch: 1, Seq: 5, Segment: testSegment(400, 1, true)}, 150)
	next := enc(&Message{Kind: KindSegment, Epoch: 1, Seq: 6, Segment: testSegment(100, 2, false)}, 150)
	init := enc(&Message{Kind: KindInit, Epoch: 2, Seq: 0, Init: testInit()}, 1<<10)
	snap := enc(testSnapshot(4, 20), 1<<10)
	end := enc(&Message{Kind: KindEnd, Epoch: 2, Seq: 1}, 150)
	cat := func(ps ...[][]byte) [][]byte {
		var out [][]byte
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	damaged := bytes.Clone(seg[1])
	damaged[HeaderSize+3] ^= 0xff
	return map[string][][]byte{
		"clean":       cat(init, seg, next, end),
		"snapshot":    cat(snap, next),
		"lost-middle": cat(seg[:1], seg[2:], next),
		"duplicates":  cat(seg[:2], seg[1:], seg[3:], next, next),
		"interleaved": {seg[0], next[0], seg[1], seg[2]},
		"damaged":     cat(seg[:1], [][]byte{damaged}, seg[2:], end),
		"hostile":     {seg[0][:10], []byte{0x8f, 'R', 2}, []byte("{}"), append(bytes.Clone(end[0][:HeaderSize-4]), 0xff, 0xff, 0xff, 0xff)},
	}
}

// TestWriteSeeds regenerates testdata/fuzz. Run with RELAYWIRE_WRITE_SEEDS=1.
func TestWriteSeeds(t *testing.T) {
	if os.Getenv("RELAYWIRE_WRITE_SEEDS") != "1" {
		t.Skip("set RELAYWIRE_WRITE_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(target, name, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, parts := range seedJoinerInputs() {
		write("FuzzJoiner", name, "[]byte("+strconv.Quote(string(joinParts(parts)))+")\n")
	}
	for _, s := range seedRoundTrips() {
		write("FuzzDecodeRoundTrip", s.name, fmt.Sprintf("uint64(%d)\nuint64(%d)\nbyte(%q)\nbyte(%q)\nstring(%q)\n[]byte(%q)\nbyte(%q)\nint64(%d)\nuint16(%d)\n",
			s.epoch, s.seq, s.kind, s.flags, s.mime, s.data, s.nseg, s.at, s.maxPayload))
	}
}
