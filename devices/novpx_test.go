//go:build cgo && !vpx

package devices

import (
	"errors"
	"strings"
	"testing"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/mseout"
)

// TestVP9NeedsVpxTag: in a build without the vpx tag a VP9 capture or local
// source fails at start with ErrNoVP9, whose message says how to get one.
// A capture without video does not need a video encoder.
func TestVP9NeedsVpxTag(t *testing.T) {
	if VP9Encoder != "" {
		t.Fatalf("VP9Encoder = %q in a build without the vpx tag", VP9Encoder)
	}
	cfg := Config{Video: VideoTest, Audio: AudioTest, VideoCodec: VP9, Width: 160, Height: 120, FPS: 10, Logger: quietLogger()}
	if _, err := Open(cfg); !errors.Is(err, ErrNoVP9) || !strings.Contains(err.Error(), "-tags vpx") {
		t.Fatalf("Open: %v, want ErrNoVP9 naming -tags vpx", err)
	}
	reg := mseout.NewRegistry(mseout.Options{Limits: configs.Default().Limits, Logger: quietLogger()})
	defer reg.Close()
	if _, err := StartLocal(LocalConfig{Stream: "v", Capture: cfg, Registry: reg, Logger: quietLogger()}); !errors.Is(err, ErrNoVP9) {
		t.Fatalf("StartLocal: %v, want ErrNoVP9", err)
	}
	if _, err := StartLocal(LocalConfig{Stream: "v", Capture: cfg, Registry: reg, OnDemand: true, Logger: quietLogger()}); !errors.Is(err, ErrNoVP9) {
		t.Fatalf("StartLocal on demand: %v, want ErrNoVP9", err)
	}
	audioOnly := Config{Video: None, Audio: AudioTest, VideoCodec: VP9, Logger: quietLogger()}
	c, err := Open(audioOnly)
	if err != nil {
		t.Fatalf("audio-only capture with VideoCodec vp9: %v", err)
	}
	c.Close()
}
