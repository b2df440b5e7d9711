package bitstream

import "bytes"

// SplitAnnexB returns the NAL units of an Annex-B byte stream, without
// their start codes (3 or 4 bytes) or the zero bytes that trail them.
func SplitAnnexB(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	i := 0
	for i+2 < len(b) {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				nals = append(nals, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		nals = append(nals, b[start:])
	}
	return nals
}

// H264IsKeyframe reports whether an Annex-B access unit holds an IDR slice
// (NAL unit type 5).
func H264IsKeyframe(au []byte) bool {
	zeros := 0
	for i := 0; i < len(au); i++ {
		b := au[i]
		if b == 0 {
			zeros++
			continue
		}
		if b == 1 && zeros >= 2 && i+1 < len(au) && au[i+1]&0x1f == 5 {
			return true
		}
		zeros = 0
	}
	return false
}

// VP9IsKeyframe reads frame_marker, profile, show_existing_frame and
// frame_type from the first bits of a VP9 frame (or the first frame of a
// superframe; VP9 spec 6.2). ok is false when f does not start like a VP9
// frame; a frame that shows an existing one is not a keyframe.
func VP9IsKeyframe(f []byte) (key, ok bool) {
	if len(f) < 2 || f[0]>>6 != 2 {
		return false, false
	}
	v := uint(f[0])<<8 | uint(f[1])
	n := 13 // next bit; bits 15 and 14 are frame_marker
	profile := (v>>n)&1 | ((v>>(n-1))&1)<<1
	n -= 2
	if profile == 3 {
		n-- // reserved_zero
	}
	if (v>>n)&1 == 1 { // show_existing_frame
		return false, true
	}
	n--
	return (v>>n)&1 == 0, true // frame_type: 0 = KEY_FRAME
}

// Unit locates one NAL unit in an Annex-B stream: Start is where its start
// code begins (with the leading zero of a 4-byte one), Payload its first
// byte, End where the next start code begins (or the stream ends).
type Unit struct{ Start, Payload, End int }

// Units returns where the NAL units of an Annex-B stream are, for callers
// that cut the stream into access units and keep the start codes.
func Units(b []byte) []Unit {
	var out []Unit
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte{0, 0, 1})
		if j < 0 {
			return out
		}
		start := i + j
		if start > 0 && b[start-1] == 0 {
			start--
		}
		if len(out) > 0 {
			out[len(out)-1].End = start
		}
		i += j + 3
		out = append(out, Unit{Start: start, Payload: i, End: len(b)})
	}
}
