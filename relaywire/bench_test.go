package relaywire

import "testing"

var benchSink []byte

// BenchmarkEncodeSegment encodes a 16 KiB segment into one wire message: one
// allocation of 16 KiB + header.
func BenchmarkEncodeSegment(b *testing.B) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(16<<10, 1, true)}
	b.SetBytes(16 << 10)
	b.ReportAllocs()
	for b.Loop() {
		parts, err := Encode(m, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		benchSink = parts[0]
	}
}

// BenchmarkDecodeSegment joins and decodes a 16 KiB single-part segment: one
// allocation (Message and Segment together), the data aliased.
func BenchmarkDecodeSegment(b *testing.B) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(16<<10, 1, true)}
	parts := mustEncode(b, m, 1<<20)
	b.SetBytes(16 << 10)
	b.ReportAllocs()
	var j Joiner
	for b.Loop() {
		j.done, j.hasDone = msgID{}, false // the same message again is a duplicate
		msg, ok, err := j.Add(parts[0])
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
		benchSink = msg.Segment.Data
	}
}

// BenchmarkEncodeSplit encodes a 3 MiB keyframe into 1 MiB NATS messages.
func BenchmarkEncodeSplit(b *testing.B) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(3<<20, 1, true)}
	b.SetBytes(3 << 20)
	b.ReportAllocs()
	for b.Loop() {
		parts, err := Encode(m, 1<<20)
		if err != nil || len(parts) != 4 {
			b.Fatal(err, len(parts))
		}
		benchSink = parts[0]
	}
}

// BenchmarkJoinSplit joins a 3 MiB keyframe from 1 MiB NATS messages: one
// copy into a buffer of the declared size.
func BenchmarkJoinSplit(b *testing.B) {
	m := &Message{Kind: KindSegment, Epoch: 1, Seq: 1, Segment: testSegment(3<<20, 1, true)}
	parts := mustEncode(b, m, 1<<20)
	b.SetBytes(3 << 20)
	b.ReportAllocs()
	var j Joiner
	for b.Loop() {
		j.done, j.hasDone = msgID{}, false
		for i, p := range parts {
			msg, ok, err := j.Add(p)
			if err != nil || ok != (i == len(parts)-1) {
				b.Fatal(ok, err)
			}
			if ok {
				benchSink = msg.Segment.Data
			}
		}
	}
}
