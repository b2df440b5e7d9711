//go:build cgo && !x264

package devices

import (
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/openh264"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// H264Encoder names the H.264 encoder linked into this build.
const H264Encoder = "openh264"

// newVideoEncoder builds the H.264 encoder. keyint is the keyframe period in
// frames (0: only on request).
func newVideoEncoder(r video.Reader, p prop.Media, bitrate, keyint int) (codec.ReadCloser, error) {
	params, err := openh264.NewParams()
	if err != nil {
		return nil, err
	}
	params.BitRate = bitrate
	params.IntraPeriod = uint(keyint)
	// Frame skipping stays on: without it openh264 cannot hold the bitrate.
	return params.BuildVideoEncoder(r, p)
}
