package remux

import (
	"testing"

	"github.com/pion/rtp/codecs"
)

func TestPictureSize(t *testing.T) {
	// pion's payloaders put SPS and PPS in one STAP-A (H.264) or an
	// aggregation packet (H.265), as browsers do.
	for _, c := range []struct {
		mime, file string
		w, h       int
		pay        interface{ Payload(uint16, []byte) [][]byte }
	}{
		{"video/H264", fileSlices, 320, 240, &codecs.H264Payloader{}},
		{"video/H265", fileH265, 320, 240, &codecs.H265Payloader{}},
	} {
		var au []byte
		switch c.mime {
		case "video/H264":
			for _, nal := range loadAUs(t, c.file)[0].nals {
				au = append(append(au, 0, 0, 0, 1), nal...)
			}
		default:
			au = loadH265(t, c.file)[0].wire
		}
		found := 0
		for _, p := range c.pay.Payload(1200, au) {
			if w, h, ok := PictureSize(c.mime, p); ok {
				found++
				if w != c.w || h != c.h {
					t.Errorf("%s: %dx%d, want %dx%d", c.file, w, h, c.w, c.h)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s: the size was found in %d packets of the first frame, want 1", c.file, found)
		}
		if !PictureSizeReadable(c.mime) {
			t.Errorf("PictureSizeReadable(%s) = false", c.mime)
		}
	}
	for _, mime := range []string{"video/VP8", "video/VP9", "video/AV1", "audio/opus", ""} {
		if PictureSizeReadable(mime) {
			t.Errorf("PictureSizeReadable(%q) = true: PictureSize reads no size of it", mime)
		}
	}
	if _, _, ok := PictureSize("video/VP9", []byte{0x80, 0, 0}); ok {
		t.Error("VP9 payload gave a size")
	}
}

func FuzzPictureSize(f *testing.F) {
	f.Add("video/H264", []byte{0x18, 0x00, 0x04, 0x67, 0x42, 0xc0, 0x0d})
	f.Add("video/H265", []byte{0x60, 0x01, 0x00, 0x04, 0x42, 0x01, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, mime string, p []byte) {
		if w, h, ok := PictureSize(mime, p); ok && (w <= 0 || h <= 0) {
			t.Fatalf("%dx%d reported ok", w, h)
		}
	})
}
