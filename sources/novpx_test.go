//go:build cgo && !vpx

package sources

import (
	"errors"
	"testing"

	"github.com/mseway/mseway/devices"
)

// TestVP9NeedsVpxTag: in a build without the vpx tag a VP9 local source
// fails at start with devices.ErrNoVP9, on demand or not.
func TestVP9NeedsVpxTag(t *testing.T) {
	cfg := devices.Config{Video: devices.VideoTest, Audio: devices.AudioTest, VideoCodec: devices.VP9, Width: 160, Height: 120, FPS: 10}
	reg := newRegistry(t)
	if _, err := Start(Config{Stream: "v", Capture: cfg, Registry: reg, Logger: quietLogger()}); !errors.Is(err, devices.ErrNoVP9) {
		t.Fatalf("Start: %v, want ErrNoVP9", err)
	}
	if _, err := Start(Config{Stream: "v", Capture: cfg, Registry: reg, OnDemand: true, Logger: quietLogger()}); !errors.Is(err, devices.ErrNoVP9) {
		t.Fatalf("Start on demand: %v, want ErrNoVP9", err)
	}
}
