//go:build cgo

package devices

import (
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/opus"
	_ "github.com/pion/mediadevices/pkg/driver/camera"     // V4L2 cameras
	_ "github.com/pion/mediadevices/pkg/driver/microphone" // miniaudio capture
	"github.com/pion/mediadevices/pkg/io/audio"
	"github.com/pion/mediadevices/pkg/prop"
)

const cgoEnabled = true

func newAudioEncoder(r audio.Reader, p prop.Media, bitrate int) (codec.ReadCloser, error) {
	params, err := opus.NewParams()
	if err != nil {
		return nil, err
	}
	params.BitRate = bitrate
	params.Latency = opus.Latency20ms
	return params.BuildAudioEncoder(r, p)
}
