package whipclient

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/Eyevinn/mp4ff/ivf"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/bitstream"
	"github.com/mseway/mseway/internal/testkit/mediafile"
)

// ReadVideo reads a video file into the frames Publish sends and returns the
// MIME type to send them as: .h264 (Annex B), .h265/.hevc (Annex B) or .ivf
// holding VP9 or AV1 (low-overhead OBUs). Keyframes are found in the
// bitstream.
func ReadVideo(path string) (string, []mediafile.AccessUnit, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".h264", ".264":
		aus, err := mediafile.ReadH264(path)
		return webrtc.MimeTypeH264, aus, err
	case ".h265", ".265", ".hevc":
		data, err := os.ReadFile(path)
		if err != nil {
			return "", nil, err
		}
		aus := SplitH265(data)
		if len(aus) == 0 {
			return "", nil, fmt.Errorf("%s: no H.265 access units", path)
		}
		return webrtc.MimeTypeH265, aus, nil
	case ".ivf":
		return readIVF(path)
	}
	return "", nil, fmt.Errorf("%s: unknown video file type", path)
}

func readIVF(path string) (string, []mediafile.AccessUnit, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	r, err := ivf.NewReader(f)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	var mime string
	var key func([]byte) bool
	switch r.Header.FourCC {
	case ivf.CodecVP9:
		mime, key = webrtc.MimeTypeVP9, vp9Key
	case ivf.CodecAV1:
		mime, key = webrtc.MimeTypeAV1, av1Key
	default:
		return "", nil, fmt.Errorf("%s: IVF with %q, want VP90 or AV01", path, r.Header.FourCC)
	}
	var aus []mediafile.AccessUnit
	for {
		fr, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
		aus = append(aus, mediafile.AccessUnit{Data: fr.Data, Keyframe: key(fr.Data)})
	}
	if len(aus) == 0 || !aus[0].Keyframe {
		return "", nil, fmt.Errorf("%s: no frames, or the first is not a keyframe", path)
	}
	return mime, aus, nil
}

// vp9Key reports whether a VP9 frame is a keyframe.
func vp9Key(f []byte) bool {
	key, _ := bitstream.VP9IsKeyframe(f)
	return key
}

// av1Key reports whether a temporal unit's first frame header is a shown
// KEY_FRAME.
func av1Key(tu []byte) bool {
	for len(tu) > 0 {
		h := tu[0]
		hl := 1
		if h&4 != 0 {
			hl = 2
		}
		if h&2 == 0 || len(tu) < hl {
			return false
		}
		size, n := leb128(tu[hl:])
		if n == 0 || int(size) > len(tu)-hl-n {
			return false
		}
		payload := tu[hl+n : hl+n+int(size)]
		if typ := (h >> 3) & 0xf; typ == 3 || typ == 6 {
			return len(payload) > 0 && payload[0]&0xe0 == 0
		}
		tu = tu[hl+n+int(size):]
	}
	return false
}

func leb128(p []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 8 && i < len(p); i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// SplitH265 splits an Annex B H.265 stream into access units: a new unit
// starts at a VPS/SPS/PPS/AUD/prefix SEI after a slice, or at a slice whose
// first_slice_segment_in_pic_flag is set after another slice.
func SplitH265(data []byte) []mediafile.AccessUnit {
	var out []mediafile.AccessUnit
	nals := bitstream.Units(data)
	curStart, sawVCL, key := -1, false, false
	for _, n := range nals {
		if n.End-n.Payload < 3 {
			continue
		}
		typ := (data[n.Payload] >> 1) & 0x3f
		vcl := typ < 32
		first := vcl && data[n.Payload+2]&0x80 != 0
		if sawVCL && ((typ >= 32 && typ <= 35) || typ == 39 || first) {
			out = append(out, mediafile.AccessUnit{Data: data[curStart:n.Start], Keyframe: key})
			curStart, sawVCL, key = -1, false, false
		}
		if curStart < 0 {
			curStart = n.Start
		}
		if vcl {
			sawVCL = true
			if typ >= 16 && typ <= 21 {
				key = true
			}
		}
	}
	if sawVCL {
		out = append(out, mediafile.AccessUnit{Data: data[curStart:], Keyframe: key})
	}
	return out
}
