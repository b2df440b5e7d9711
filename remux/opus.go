package remux

import "errors"

var errBadOpus = errors.New("remux: invalid opus packet")

// opusFrameSamples48k is the frame size, in 48 kHz samples, of each of the 32
// TOC configurations (RFC 6716 section 3.1, table 2).
var opusFrameSamples48k = [32]uint32{
	// SILK NB, MB, WB: 10, 20, 40, 60 ms
	480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 1920, 2880,
	// Hybrid SWB, FB: 10, 20 ms
	480, 960, 480, 960,
	// CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
	120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960,
}

// opusMaxPacketSamples is 120 ms at 48 kHz, the longest packet RFC 6716 allows.
const opusMaxPacketSamples = 5760

// opusDuration returns the duration of an Opus packet in 48 kHz samples, from
// its TOC byte and frame count (RFC 6716 section 3.1). It checks the packet
// against the framing rules of section 3.4 (R1-R7) so that an undecodable
// packet never reaches a player. The result is never zero when err is nil.
func opusDuration(p []byte) (uint32, error) {
	if len(p) < 1 {
		return 0, errBadOpus // R1: at least one byte
	}
	toc := p[0]
	frameSize := opusFrameSamples48k[toc>>3]
	rest := len(p) - 1
	var frames int
	switch toc & 3 {
	case 0: // one frame
		frames = 1
		if rest > 1275 { // R2
			return 0, errBadOpus
		}
	case 1: // two frames of equal size
		frames = 2
		if rest%2 != 0 || rest/2 > 1275 { // R3
			return 0, errBadOpus
		}
	case 2: // two frames, first length coded
		frames = 2
		n, l, ok := opusFrameLen(p[1:])
		if !ok || l > rest-n { // R4
			return 0, errBadOpus
		}
		if rest-n-l > 1275 {
			return 0, errBadOpus
		}
	case 3: // arbitrary number of frames
		if rest < 1 { // R6/R7 need the frame count byte
			return 0, errBadOpus
		}
		fc := p[1]
		frames = int(fc & 0x3f)
		if frames == 0 { // R5
			return 0, errBadOpus
		}
		if uint32(frames)*frameSize > opusMaxPacketSamples { // R5
			return 0, errBadOpus
		}
		q := p[2:]
		// Padding.
		pad := 0
		if fc&0x40 != 0 {
			for {
				if len(q) == 0 {
					return 0, errBadOpus
				}
				b := q[0]
				q = q[1:]
				if b == 255 {
					pad += 254
				} else {
					pad += int(b)
					break
				}
			}
		}
		if pad > len(q) {
			return 0, errBadOpus
		}
		avail := len(q) - pad
		if fc&0x80 == 0 { // CBR: R6
			if avail%frames != 0 || avail/frames > 1275 {
				return 0, errBadOpus
			}
		} else { // VBR: R7
			total := 0
			for i := 0; i < frames-1; i++ {
				n, l, ok := opusFrameLen(q)
				if !ok {
					return 0, errBadOpus
				}
				q = q[n:]
				avail -= n
				total += l
				if avail < 0 || total > avail {
					return 0, errBadOpus
				}
			}
			if last := avail - total; last < 0 || last > 1275 {
				return 0, errBadOpus
			}
		}
	}
	d := uint32(frames) * frameSize
	if d == 0 || d > opusMaxPacketSamples {
		return 0, errBadOpus
	}
	return d, nil
}

// opusFrameLen decodes a frame length coded in one or two bytes (RFC 6716
// section 3.2.1). It returns the bytes used and the length.
func opusFrameLen(p []byte) (n, length int, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	if p[0] < 252 {
		return 1, int(p[0]), true
	}
	if len(p) < 2 {
		return 0, 0, false
	}
	return 2, int(p[1])*4 + int(p[0]), true
}
