package devices

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// ErrNoEncoder is returned by Open in a build without cgo.
var ErrNoEncoder = errors.New("no H.264/Opus encoder in this build (it was built with CGO_ENABLED=0)")

// ErrNoVP9 is returned by Open (and sources.Start) for VideoCodec VP9 in a build
// without the vpx build tag (VP9Encoder is then "").
var ErrNoVP9 = errors.New("video codec vp9: this build has no VP9 encoder (build with -tags vpx, which needs cgo and apt libvpx-dev)")

// Video codecs (Config.VideoCodec). VP8 is not one: the gateway never
// accepts VP8.
const (
	H264 = "h264" // H264Encoder: openh264, or x264 with the x264 build tag
	VP9  = "vp9"  // VP9Encoder: libvpx with the vpx build tag, profile 0
)

// Config selects the devices to capture and how to encode them.
type Config struct {
	Video string // VideoTest, Camera, Screen, a device name/label/ID from List, or "" / None
	Audio string // AudioTest, Microphone, a device name/label/ID from List, or "" / None
	// VideoCodec is H264 ("" is H264) or VP9 (needs the vpx build tag).
	VideoCodec string

	Width, Height int // wanted video size; a camera delivers its closest mode
	FPS           int // wanted frame rate

	VideoBitrate int // bits/s
	AudioBitrate int // bits/s
	// KeyframeInterval is the time between keyframes; 0 = only when the
	// receiver asks (PLI) and at the start.
	KeyframeInterval time.Duration

	Logger *slog.Logger
}

// Defaults for zero Config fields.
const (
	DefaultWidth        = 640
	DefaultHeight       = 480
	DefaultFPS          = 30
	DefaultVideoBitrate = 1_000_000
	DefaultAudioBitrate = 64_000
)

// Validate fills defaults and checks the values.
func (c *Config) Validate() error {
	if c.Video == "" {
		c.Video = None
	}
	if c.Audio == "" {
		c.Audio = None
	}
	c.VideoCodec = strings.ToLower(c.VideoCodec)
	if c.VideoCodec == "" {
		c.VideoCodec = H264
	}
	if c.Width == 0 {
		c.Width = DefaultWidth
	}
	if c.Height == 0 {
		c.Height = DefaultHeight
	}
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.VideoBitrate == 0 {
		c.VideoBitrate = DefaultVideoBitrate
	}
	if c.AudioBitrate == 0 {
		c.AudioBitrate = DefaultAudioBitrate
	}
	switch {
	case c.Video == None && c.Audio == None:
		return errors.New("nothing to capture: both video and audio are none")
	case c.Width < 16 || c.Width > 7680 || c.Width%2 != 0:
		return fmt.Errorf("width %d: want an even number of pixels in 16-7680", c.Width)
	case c.Height < 16 || c.Height > 4320 || c.Height%2 != 0:
		return fmt.Errorf("height %d: want an even number of pixels in 16-4320", c.Height)
	case c.FPS < 1 || c.FPS > 120:
		return fmt.Errorf("fps %d: want 1-120", c.FPS)
	case c.VideoBitrate < 10_000 || c.VideoBitrate > 100_000_000:
		return fmt.Errorf("video bitrate %d: want 10000-100000000 bits/s", c.VideoBitrate)
	case c.AudioBitrate < 6_000 || c.AudioBitrate > 510_000:
		return fmt.Errorf("audio bitrate %d: want 6000-510000 bits/s", c.AudioBitrate)
	case c.KeyframeInterval < 0:
		return errors.New("keyframe interval must not be negative")
	case strings.EqualFold(c.VideoCodec, "vp8"):
		return errors.New("video codec vp8: not supported (the gateway never accepts VP8); want h264 or vp9")
	case c.VideoCodec != H264 && c.VideoCodec != VP9:
		return fmt.Errorf("video codec %q: want h264 or vp9", c.VideoCodec)
	}
	return nil
}

// CheckBuild reports whether this build can encode c (after Validate):
// ErrNoEncoder without cgo, ErrNoVP9 for VP9 video without the vpx tag.
func (c *Config) CheckBuild() error {
	if !cgoEnabled {
		return ErrNoEncoder
	}
	if c.Video != None && c.VideoCodec == VP9 && VP9Encoder == "" {
		return ErrNoVP9
	}
	return nil
}
