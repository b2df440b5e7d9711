//go:build cgo && vpx

package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// TestCaptureAgentVP9: the capture agent with -codec vp9 (videotest +
// audiotest) publishes to a gateway: it negotiates VP9 profile 0 with the
// payload type and fmtp the gateway registers (98, profile-id=0); a viewer's
// init has a vp09 profile 0 video track of the capture's size and an Opus
// track, and its fMP4 decodes with ffmpeg (every frame, no error); keyframe
// requests (PLI) from the gateway are answered with VP9 keyframes; cancelling
// the agent sends the WHIP DELETE and the viewer gets eos.
func TestCaptureAgentVP9(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	gw := startGateway(t, func(c *configs.Config) {
		// The gateway asks for a keyframe (PLI) when none came for 1 s; the
		// agent makes keyframes only when asked.
		c.StreamDefaults.KeyframeInterval = time.Second
	})
	c, err := devices.Open(devices.Config{
		Video: devices.VideoTest, Audio: devices.AudioTest, VideoCodec: devices.VP9,
		Width: 320, Height: 240, FPS: 15, VideoBitrate: 300_000, KeyframeInterval: 0,
		Logger: testLogger(),
	})
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent, run := runAgent(t, ctx, c, gw.base+"/whip/vp9agent")
	waitAgentLive(t, agent, run)
	if got, want := agent.Stats().Video, "video/VP9 98 profile-id=0"; got != want {
		t.Fatalf("negotiated video codec %q, want %q", got, want)
	}

	v := watch(t, gw, "vp9agent")
	ctl, init := v.expectInit(20 * time.Second)
	if len(ctl.Tracks) != 2 || ctl.Tracks[0].Kind != "video" || ctl.Tracks[1].Kind != "audio" ||
		!strings.HasPrefix(ctl.Tracks[0].Codec, "vp09.00.") || ctl.Tracks[1].Codec != "opus" ||
		ctl.Tracks[0].Width != 320 || ctl.Tracks[0].Height != 240 {
		t.Fatalf("init tracks = %+v", ctl.Tracks)
	}
	if !strings.Contains(ctl.MIME, "vp09.00.") {
		t.Fatalf("init MIME %q has no vp09 codec", ctl.MIME)
	}
	checkAgentMedia(t, v, "vp9 agent viewer", init)
	keyframeOnRequest(t, agent, c)

	stopAgent(t, cancel, agent, run, v)
}
