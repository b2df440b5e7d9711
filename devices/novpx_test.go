//go:build cgo && !vpx

package devices

import (
	"errors"
	"strings"
	"testing"
)

// TestVP9NeedsVpxTag: in a build without the vpx tag a VP9 capture fails at
// start with ErrNoVP9, whose message says how to get one.
// A capture without video does not need a video encoder.
func TestVP9NeedsVpxTag(t *testing.T) {
	if VP9Encoder != "" {
		t.Fatalf("VP9Encoder = %q in a build without the vpx tag", VP9Encoder)
	}
	cfg := Config{Video: VideoTest, Audio: AudioTest, VideoCodec: VP9, Width: 160, Height: 120, FPS: 10, Logger: quietLogger()}
	if _, err := Open(cfg); !errors.Is(err, ErrNoVP9) || !strings.Contains(err.Error(), "-tags vpx") {
		t.Fatalf("Open: %v, want ErrNoVP9 naming -tags vpx", err)
	}
	if err := cfg.CheckBuild(); !errors.Is(err, ErrNoVP9) {
		t.Fatalf("CheckBuild: %v, want ErrNoVP9", err)
	}
	audioOnly := Config{Video: None, Audio: AudioTest, VideoCodec: VP9, Logger: quietLogger()}
	c, err := Open(audioOnly)
	if err != nil {
		t.Fatalf("audio-only capture with VideoCodec vp9: %v", err)
	}
	c.Close()
}
