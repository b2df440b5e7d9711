package bitstream

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestExpGolomb(t *testing.T) {
	w := &bitWriter{}
	for v := uint32(0); v < 300; v++ {
		w.ue(v)
	}
	r := &bitReader{b: w.b}
	for v := uint32(0); v < 300; v++ {
		got, ok := r.ue()
		if !ok || got != v {
			t.Fatalf("ue %d: got %d %v", v, got, ok)
		}
	}
	raw := []byte{0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 9}
	if got := unescapeRBSP(escapeRBSP(raw)); !bytes.Equal(got, raw) {
		t.Fatalf("escape round trip: %x -> %x", raw, got)
	}
}

func TestSplitAnnexB(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"empty", nil, nil},
		{"no start code", []byte{1, 2, 3, 4}, nil},
		{"4-byte start codes", []byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1, 2}, {0x68, 3}}},
		{"3-byte start codes, trailing zeros dropped", []byte{0, 0, 1, 0x65, 9, 0, 0, 0, 0, 1, 0x41}, [][]byte{{0x65, 9}, {0x41}}},
		{"start code at the end", []byte{0, 0, 1, 0x09, 0x10, 0, 0, 1}, [][]byte{{0x09, 0x10}}},
	} {
		got := SplitAnnexB(c.in)
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d NAL units %x, want %x", c.name, len(got), got, c.want)
		}
		for i := range got {
			if !bytes.Equal(got[i], c.want[i]) {
				t.Fatalf("%s: NAL %d = %x, want %x", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// The keyframe tests agree with the frames of the checked-in test media.
func TestKeyframes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	if !H264IsKeyframe(b[:4096]) {
		t.Fatal("the file's first access unit is not an IDR")
	}
	if H264IsKeyframe([]byte{0, 0, 0, 1, 0x41, 0x9a, 0, 0, 1, 0x01}) {
		t.Fatal("a non-IDR slice taken for a keyframe")
	}
	for _, c := range []struct {
		f        []byte
		key, ok  bool
		whatItIs string
	}{
		{[]byte{0x82, 0x49}, true, true, "profile 0 keyframe"},
		{[]byte{0x86, 0x00}, false, true, "profile 0 inter frame"},
		{[]byte{0x88, 0x00}, false, true, "profile 0 show_existing_frame"},
		{[]byte{0xb0, 0x00}, true, true, "profile 3 keyframe (reserved bit)"},
		{[]byte{0x42, 0x00}, false, false, "no frame marker"},
		{[]byte{0x82}, false, false, "too short"},
	} {
		key, ok := VP9IsKeyframe(c.f)
		if key != c.key || ok != c.ok {
			t.Errorf("%s %x: key %v ok %v, want %v %v", c.whatItIs, c.f, key, ok, c.key, c.ok)
		}
	}
}

// Normalize makes the parameter set ids of a Baseline stream 0 and keeps the
// stream otherwise the same: a second pass changes nothing.
func TestNormalizeIDs(t *testing.T) {
	// SPS: profile 66, constraints 0xc0, level 30, sps id 1 (ue "010"), then
	// the rest of the RBSP and a stop bit. PPS: pps id 2, sps id 1, CAVLC.
	// IDR slice: first_mb 0, slice_type 7, pps id 2.
	au := []byte{0, 0, 0, 1, 0x67, 66, 0xc0, 30, 0b0101_1111, 0x80,
		0, 0, 0, 1, 0x68, 0b0110_1001, 0b0000_0000, 0x80,
		0, 0, 0, 1, 0x65, 0b1000_1000, 0b0110_0000, 0x80}
	var z H264IDNormalizer
	out := z.Normalize(au)
	if bytes.Equal(out, au) {
		t.Fatal("nothing rewritten")
	}
	nals := SplitAnnexB(out)
	if len(nals) != 3 {
		t.Fatalf("%d NAL units after the rewrite", len(nals))
	}
	ids := func(nal []byte, skip int, n int) []uint32 {
		r := &bitReader{b: unescapeRBSP(nal[1:])}
		_, _ = r.bits(skip)
		var v []uint32
		for range n {
			x, ok := r.ue()
			if !ok {
				t.Fatalf("%x: cannot read ids", nal)
			}
			v = append(v, x)
		}
		return v
	}
	if id := ids(nals[0], 24, 1); id[0] != 0 {
		t.Errorf("sps id %d", id[0])
	}
	if id := ids(nals[1], 0, 2); id[0] != 0 || id[1] != 0 {
		t.Errorf("pps ids %v", id)
	}
	if id := ids(nals[2], 0, 3); id[0] != 0 || id[1] != 7 || id[2] != 0 {
		t.Errorf("slice header %v, want first_mb 0, type 7, pps 0", id)
	}
	var z2 H264IDNormalizer
	if again := z2.Normalize(out); !bytes.Equal(again, out) {
		t.Fatalf("second pass changed the stream: %x -> %x", out, again)
	}
}
