//go:build !(cgo && vpx)

package devices

import (
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// VP9Encoder names the VP9 encoder linked into this build ("" without the
// vpx build tag).
const VP9Encoder = ""

func newVP9Encoder(video.Reader, prop.Media, int, int) (codec.ReadCloser, error) {
	return nil, ErrNoVP9
}
