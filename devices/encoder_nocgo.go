//go:build !cgo

package devices

import (
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/io/audio"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

const cgoEnabled = false

// H264Encoder names the H.264 encoder linked into this build.
const H264Encoder = "none (built without cgo)"

func newVideoEncoder(video.Reader, prop.Media, int, int) (codec.ReadCloser, error) {
	return nil, ErrNoEncoder
}

func newAudioEncoder(audio.Reader, prop.Media, int) (codec.ReadCloser, error) {
	return nil, ErrNoEncoder
}
