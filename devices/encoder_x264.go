//go:build cgo && x264

package devices

import (
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/x264"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// H264Encoder names the H.264 encoder linked into this build.
const H264Encoder = "x264"

// newVideoEncoder builds the H.264 encoder. keyint is the keyframe period in
// frames (0: only on request, approximated by a very long period).
func newVideoEncoder(r video.Reader, p prop.Media, bitrate, keyint int) (codec.ReadCloser, error) {
	params, err := x264.NewParams()
	if err != nil {
		return nil, err
	}
	params.BitRate = bitrate
	params.Preset = x264.PresetVeryfast
	params.LogLevel = x264.LogError
	if keyint <= 0 {
		keyint = 1 << 20
	}
	params.KeyFrameInterval = keyint
	return params.BuildVideoEncoder(r, p)
}
