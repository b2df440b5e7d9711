package record

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRecord720p: the recorder's cost for 10 s of a 720p30 H.264
// (2.5 Mbit/s) + Opus stream, from the hub's hand-over to the bytes in the
// page cache (files of 2 s, synced every second). The share of a core one
// such stream costs is ns/op / 10 s, reported as core-%/stream.
func BenchmarkRecord720p(b *testing.B) {
	events := bigMedia(b, 10)
	dir := b.TempDir()
	r, err := New(Config{Path: filepath.Join(dir, "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4"), SegmentDuration: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var bytes int
	for _, e := range events {
		if e.seg != nil {
			bytes += len(e.seg.Data)
		}
	}
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		got := make(chan Output, 1)
		stream := "s" + string(rune('a'+i%26))
		r.Start(stream, attachTo(got))
		out := <-got
		for _, e := range events {
			if e.init != nil {
				out.WriteInit(e.init)
			} else {
				out.WriteSegment(e.seg)
			}
		}
		out.WriteEnd()
		for r.Recording(stream) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e10*100, "core-%/stream")
}

// bigMedia is realMedia of the 720p file only.
func bigMedia(b *testing.B, secs int) []event {
	all := realMedia(b, secs*2, true) // the second half is 720p
	for i, e := range all {
		if e.init != nil && i > 0 {
			out := []event{e}
			var first time.Duration = -1
			for _, e := range all[i+1:] {
				if e.seg != nil {
					if first < 0 {
						first = e.seg.Time
					}
					s := *e.seg
					s.Time -= first
					out = append(out, event{seg: &s})
				}
			}
			return out
		}
	}
	b.Fatal("no 720p part")
	return nil
}
