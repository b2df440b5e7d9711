package remux

import (
	"encoding/binary"
	"strings"
)

// PictureSize reports the picture size announced by an RTP payload that
// carries a sequence parameter set: an H.264 SPS (single NAL unit or inside
// a STAP-A) or an H.265 SPS (single NAL unit or inside an aggregation
// packet). Other payloads, and other codecs, give ok == false. It is cheap
// for payloads without one (a byte check), so a caller can run it on every
// packet; the gateway uses it to tell simulcast layers apart by size.
func PictureSize(mimeType string, payload []byte) (width, height int, ok bool) {
	if len(payload) < 2 {
		return 0, 0, false
	}
	switch strings.ToLower(mimeType) {
	case "video/h264":
		switch payload[0] & 0x1f {
		case 7:
			return h264SPSSize(payload)
		case 24: // STAP-A
			for q := payload[1:]; len(q) >= 3; {
				n := int(binary.BigEndian.Uint16(q))
				if n == 0 || n+2 > len(q) {
					return 0, 0, false
				}
				if q[2]&0x1f == 7 {
					return h264SPSSize(q[2 : 2+n])
				}
				q = q[2+n:]
			}
		}
	case "video/h265":
		switch (payload[0] >> 1) & 0x3f {
		case 33:
			return h265SPSSize(payload)
		case 48: // aggregation packet
			for q := payload[2:]; len(q) >= 4; {
				n := int(binary.BigEndian.Uint16(q))
				if n < 2 || n+2 > len(q) {
					return 0, 0, false
				}
				if (q[2]>>1)&0x3f == 33 {
					return h265SPSSize(q[2 : 2+n])
				}
				q = q[2+n:]
			}
		}
	}
	return 0, 0, false
}

// PictureSizeReadable reports whether PictureSize reads sizes of
// mimeType's payloads (H.264 and H.265).
func PictureSizeReadable(mimeType string) bool {
	switch strings.ToLower(mimeType) {
	case "video/h264", "video/h265":
		return true
	}
	return false
}

func h264SPSSize(nal []byte) (int, int, bool) {
	if len(nal) > maxParamSetLen {
		return 0, 0, false
	}
	sps, err := parseSPS(nal)
	if err != nil {
		return 0, 0, false
	}
	return validSize(uint64(sps.Width), uint64(sps.Height))
}

func h265SPSSize(nal []byte) (int, int, bool) {
	if len(nal) > maxParamSetLen {
		return 0, 0, false
	}
	sps, err := parseHEVCSPS(nal)
	if err != nil {
		return 0, 0, false
	}
	w, h := sps.ImageSize()
	return validSize(uint64(w), uint64(h))
}

// validSize accepts what commit accepts: 1..16384 each way (cropping in a
// broken SPS can wrap the parser's unsigned sizes).
func validSize(w, h uint64) (int, int, bool) {
	if w == 0 || h == 0 || w > 16384 || h > 16384 {
		return 0, 0, false
	}
	return int(w), int(h), true
}
