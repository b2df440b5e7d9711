//go:build cgo && !vpx

package sources

import (
	"errors"
	"testing"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/mseout"
)

// TestVP9NeedsVpxTag: in a build without the vpx tag a VP9 local source
// fails at start with devices.ErrNoVP9, on demand or not.
func TestVP9NeedsVpxTag(t *testing.T) {
	cfg := devices.Config{Video: devices.VideoTest, Audio: devices.AudioTest, VideoCodec: devices.VP9, Width: 160, Height: 120, FPS: 10}
	reg := mseout.NewRegistry(mseout.Options{Limits: configs.Default().Limits, Logger: quietLogger()})
	defer reg.Close()
	if _, err := Start(Config{Stream: "v", Capture: cfg, Registry: reg, Logger: quietLogger()}); !errors.Is(err, devices.ErrNoVP9) {
		t.Fatalf("Start: %v, want ErrNoVP9", err)
	}
	if _, err := Start(Config{Stream: "v", Capture: cfg, Registry: reg, OnDemand: true, Logger: quietLogger()}); !errors.Is(err, devices.ErrNoVP9) {
		t.Fatalf("Start on demand: %v, want ErrNoVP9", err)
	}
}
