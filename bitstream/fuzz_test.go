package bitstream

import (
	"bytes"
	"testing"
)

// FuzzSplitAnnexB: any input splits without a panic into NAL units that are
// pieces of the input, none holding a start code.
func FuzzSplitAnnexB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68})
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, nal := range SplitAnnexB(b) {
			if !bytes.Contains(b, nal) || bytes.Contains(nal, []byte{0, 0, 1}) {
				t.Fatalf("NAL %x is not a start-code-free piece of %x", nal, b)
			}
		}
		H264IsKeyframe(b)
		VP9IsKeyframe(b)
	})
}

// FuzzNormalizeIDs: any access unit is rewritten without a panic, and a
// rewritten one is stable (normalizing it again changes nothing).
func FuzzNormalizeIDs(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 66, 0xc0, 30, 0b0101_1111, 0x80,
		0, 0, 0, 1, 0x68, 0b0110_1001, 0b0000_0000, 0x80,
		0, 0, 0, 1, 0x65, 0b1000_1000, 0b0110_0000, 0x80})
	f.Add([]byte{0, 0, 0, 1, 0x67, 77, 0, 30, 0xff})
	f.Fuzz(func(t *testing.T, au []byte) {
		var z H264IDNormalizer
		out := z.Normalize(au)
		var z2 H264IDNormalizer
		if again := z2.Normalize(out); !bytes.Equal(again, out) {
			t.Fatalf("not stable: %x -> %x -> %x", au, out, again)
		}
	})
}
