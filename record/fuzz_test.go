package record

import (
	"bytes"
	"testing"
)

// FuzzRebase: any bytes: no panic; a fragment rebased by nothing is
// unchanged; rebasing keeps the length and the box structure, and the
// decode times never rise.
func FuzzRebase(f *testing.F) {
	events := realMedia(f, 1, false)
	for _, e := range events[:min(len(events), 8)] {
		if e.seg != nil {
			f.Add(e.seg.Data, uint64(1000), uint64(48000))
		}
	}
	f.Add([]byte{0, 0, 0, 8, 'm', 'o', 'o', 'f'}, uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, b1, b2 uint64) {
		same, err := rebase(nil, data, nil)
		if err == nil && !bytes.Equal(same, data) {
			t.Fatal("rebased by nothing, yet changed")
		}
		out, err := rebase(nil, data, map[uint32]uint64{1: b1, 2: b2})
		if err != nil {
			return
		}
		if len(out) != len(data) {
			t.Fatalf("length %d -> %d", len(data), len(out))
		}
		var before, after []uint64
		_ = eachTfdt(data, func(_ uint32, at, size int) error { before = append(before, readTime(data, at, size)); return nil })
		if err := eachTfdt(out, func(_ uint32, at, size int) error { after = append(after, readTime(out, at, size)); return nil }); err != nil {
			t.Fatalf("the rebased bytes do not walk: %v", err)
		}
		if len(before) != len(after) {
			t.Fatalf("%d decode times, then %d", len(before), len(after))
		}
		for i := range before {
			if after[i] > before[i] {
				t.Fatalf("decode time rose: %d -> %d", before[i], after[i])
			}
		}
	})
}

// FuzzIndexFile: any bytes index without a panic, and every fragment found
// lies within them.
func FuzzIndexFile(f *testing.F) {
	events := realMedia(f, 1, false)
	var file []byte
	for _, e := range events[:min(len(events), 3)] {
		if e.init != nil {
			file = append(file, e.init.Data...)
		} else {
			file = append(file, e.seg.Data...)
		}
	}
	f.Add(file)
	f.Add(file[:len(file)-5])
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := indexFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, fr := range ix.frags {
			if fr.off < 0 || fr.size <= 0 || fr.off+fr.size > int64(len(data)) {
				t.Fatalf("fragment %+v outside %d bytes", fr, len(data))
			}
		}
	})
}
