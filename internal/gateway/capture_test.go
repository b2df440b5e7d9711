package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/agent"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// testCapture opens a small test-pattern capture (videotest + audiotest).
// keyint 0: keyframes only at the start and when asked (PLI).
func testCapture(t *testing.T, keyint time.Duration) *devices.Capture {
	t.Helper()
	c, err := devices.Open(devices.Config{
		Video: devices.VideoTest, Audio: devices.AudioTest,
		Width: 320, Height: 240, FPS: 15, VideoBitrate: 300_000, KeyframeInterval: keyint,
		Logger: testLogger(),
	})
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// agentRun is a capture agent's Run in progress.
type agentRun struct {
	done chan struct{} // closed when Run returned
	err  error         // Run's result, after done
}

// runAgent runs a capture agent until ctx ends or the test ends.
func runAgent(t *testing.T, ctx context.Context, c *devices.Capture, url string) (*agent.Agent, *agentRun) {
	t.Helper()
	a, err := agent.New(c, agent.Config{
		URL: url, LoopbackOnly: true, Wait: true,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	run := &agentRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-run.done
	})
	return a, run
}

// stopAgent cancels a running agent (cancel is its Run's context) and
// checks that it ends cleanly: Run returns nil, its WHIP DELETE is
// acknowledged, and viewer v gets eos.
func stopAgent(t *testing.T, cancel context.CancelFunc, a *agent.Agent, run *agentRun, v *viewer) {
	t.Helper()
	cancel()
	select {
	case <-run.done:
		if run.err != nil {
			t.Fatalf("agent Run: %v", run.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop")
	}
	if s := a.Stats(); s.DeletesSent != 1 || !s.LastDeleteOK {
		t.Fatalf("WHIP DELETE not acknowledged: %+v", s)
	}
	v.expectControl("eos", 10*time.Second)
}

// waitAgentLive waits until the agent's publish is up.
func waitAgentLive(t *testing.T, a *agent.Agent, run *agentRun) {
	t.Helper()
	select {
	case <-a.Connected():
	case <-run.done:
		t.Fatalf("agent ended: %v", run.err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not connect")
	}
}

// checkAgentMedia reads 3 s of what viewer v gets after init: it must
// decode (checkPlayable) and hold both tracks.
func checkAgentMedia(t *testing.T, v *viewer, who string, init []byte) {
	t.Helper()
	segs, end := v.collect(3 * time.Second)
	if end != nil {
		t.Fatalf("unexpected %+v", end)
	}
	frames := checkPlayable(t, who, init, segs)
	video, audio := countSamples(t, init, segs)
	t.Logf("%s: %d segments, %d video frames decoded, %d audio packets", who, len(segs), frames, audio)
	if video < 5 || audio < 10 {
		t.Fatalf("too little media: %d video, %d audio samples", video, audio)
	}
}

// keyframeOnRequest: with no periodic keyframes (the capture makes them
// only when asked), the gateway's keyframe request (PLI) reaches the agent
// and a keyframe answers it.
func keyframeOnRequest(t *testing.T, a *agent.Agent, c *devices.Capture) {
	t.Helper()
	st := a.Stats()
	k0 := c.Stats().Keyframes
	eventually(t, "a keyframe request from the gateway", 20*time.Second, func() bool { return a.Stats().PLIs > st.PLIs })
	eventually(t, "a keyframe answering it", 20*time.Second, func() bool { return c.Stats().Keyframes > k0 })
}

// eventually polls cond until it is true or the deadline passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countSamples counts the video and audio samples in segments.
func countSamples(t *testing.T, init []byte, segs [][]byte) (video, audio int) {
	t.Helper()
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range segs {
		samples, err := fmp4check.ParseSegment(in, seg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			switch in.Tracks[s.TrackID].Kind {
			case "video":
				video++
			case "audio":
				audio++
			}
		}
	}
	return video, audio
}

// TestCaptureAgentPublishes: the capture agent publishes test patterns over
// WHIP; a viewer's fMP4 has both tracks and decodes; keyframe requests from
// the gateway are answered with keyframes; cancelling the agent sends the
// WHIP DELETE and viewers get eos.
func TestCaptureAgentPublishes(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	gw := startGateway(t, func(c *configs.Config) {
		// The gateway asks for a keyframe (PLI) when none came for 1 s; the
		// agent makes keyframes only when asked.
		c.StreamDefaults.KeyframeInterval = time.Second
	})
	c := testCapture(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent, run := runAgent(t, ctx, c, gw.base+"/whip/agent")
	waitAgentLive(t, agent, run)

	v := watch(t, gw, "agent")
	ctl, init := v.expectInit(20 * time.Second)
	if len(ctl.Tracks) != 2 || ctl.Tracks[0].Kind != "video" || ctl.Tracks[1].Kind != "audio" ||
		ctl.Tracks[0].Width != 320 || ctl.Tracks[0].Height != 240 {
		t.Fatalf("init tracks = %+v", ctl.Tracks)
	}
	checkAgentMedia(t, v, "agent viewer", init)
	if kind := publisherKindOf(t, gw, "agent"); kind != "agent" {
		t.Errorf("/api/streams: the capture agent's publisher kind is %q", kind)
	}
	keyframeOnRequest(t, agent, c)

	// An ICE restart (what the agent does when its connection goes
	// disconnected) keeps the publish: no new init, and media keep coming
	// for longer than the gateway keeps a session on stale credentials.
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := agent.RestartICE(rctx)
	rcancel()
	if err != nil {
		t.Fatalf("agent ICE restart: %v", err)
	}
	more, end := v.collect(8 * time.Second)
	if end != nil {
		t.Fatalf("after the ICE restart the viewer got %+v", end)
	}
	if len(more) < 20 || agent.Stats().ICERestarts != 1 || agent.Stats().Sessions != 1 {
		t.Fatalf("after the ICE restart: %d segments in 8 s, stats %+v", len(more), agent.Stats())
	}

	stopAgent(t, cancel, agent, run, v)
}

// restartableGateway is a gateway that can be stopped and started again on
// the same address.
type restartableGateway struct {
	t    *testing.T
	addr string
	g    *gateway.Gateway
	done chan error
}

func (r *restartableGateway) start() {
	r.t.Helper()
	cfg := configs.Default()
	cfg.Listen = r.addr
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = "127.0.0.1"
	cfg.WebRTC.IncludeLoopback = true
	cfg.Sources = nil
	g, err := gateway.New(cfg, testLogger(), gateway.Options{LoopbackOnly: true})
	if err != nil {
		r.t.Fatalf("gateway.New: %v", err)
	}
	var ln net.Listener
	eventually(r.t, "listening on "+r.addr, 10*time.Second, func() bool {
		ln, err = net.Listen("tcp", r.addr)
		return err == nil
	})
	if r.addr == "127.0.0.1:0" {
		r.addr = ln.Addr().String()
	}
	r.g, r.done = g, make(chan error, 1)
	go func(done chan error) { done <- g.Serve(ln) }(r.done)
}

func (r *restartableGateway) stop() {
	if r.g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.g.Close(ctx); err != nil {
		r.t.Errorf("gateway close: %v", err)
	}
	if err := <-r.done; err != nil {
		r.t.Errorf("serve: %v", err)
	}
	r.g = nil
}

// TestCaptureAgentReconnects: the gateway is stopped and started again on
// the same port; the agent republishes by itself and a viewer gets a new
// init and plays.
func TestCaptureAgentReconnects(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	r := &restartableGateway{t: t, addr: "127.0.0.1:0"}
	r.start()
	t.Cleanup(r.stop)
	gw := &testGateway{g: r.g, base: "http://" + r.addr, ws: "ws://" + r.addr}

	c := testCapture(t, time.Second)
	agent, run := runAgent(t, context.Background(), c, gw.base+"/whip/cam")
	eventually(t, "first publish", 30*time.Second, func() bool { return agent.Stats().Sessions == 1 })

	v1 := watch(t, gw, "cam")
	_, init1 := v1.expectInit(20 * time.Second)
	segs1, _ := v1.collect(time.Second)
	checkPlayable(t, "viewer before restart", init1, segs1)

	r.stop()
	// The viewer of the stopped gateway is told and disconnected.
	for {
		m, err := v1.c.Next(10 * time.Second)
		if err != nil {
			break
		}
		if m.Control != nil && m.Control.Type == "error" {
			break
		}
	}
	r.start()
	gw.g = r.g

	v2 := watch(t, gw, "cam")
	// Waiting first (the agent has not reconnected yet) or straight the init.
	var init2 []byte
	for init2 == nil {
		m, err := v2.c.Next(30 * time.Second)
		if err != nil {
			t.Fatalf("viewer after restart: %v", err)
		}
		if m.Control == nil {
			continue
		}
		switch m.Control.Type {
		case "waiting":
		case "init":
			b, err := v2.c.Next(10 * time.Second)
			if err != nil || b.Binary == nil {
				t.Fatalf("init not followed by the init segment: %v", err)
			}
			init2 = b.Binary
		default:
			t.Fatalf("viewer after restart got %+v", m.Control)
		}
	}
	segs2, end := v2.collect(2 * time.Second)
	if end != nil {
		t.Fatalf("unexpected %+v", end)
	}
	frames := checkPlayable(t, "viewer after restart", init2, segs2)
	if frames < 5 {
		t.Fatalf("only %d frames after the restart", frames)
	}
	if s := agent.Stats(); s.Sessions < 2 {
		t.Fatalf("agent stats after restart: %+v", s)
	}
	select {
	case <-run.done:
		t.Fatalf("agent stopped: %v", run.err)
	default:
	}
}

// TestCaptureAgentFirstPublishFails: without Wait, a gateway that is not
// there is an error from Run, not a retry loop.
func TestCaptureAgentFirstPublishFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	c := testCapture(t, time.Second)
	a, err := agent.New(c, agent.Config{URL: "http://" + addr + "/whip/x", LoopbackOnly: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run = %v, want an error naming %s and the refused connection", err, addr)
	}
	t.Logf("error: %v", err)
}

// TestLocalTestPatternBrowser: the default config's on-demand test-pattern
// source plays in headless Chromium (watch.html): the stream is not live
// until the page waits on it, then the source starts, publishes locally (no
// WebRTC hop) and video and audio play.
func TestLocalTestPatternBrowser(t *testing.T) {
	gw := startGateway(t, nil) // configs.Default(): sources.testpattern, on demand
	src, ok := configs.Default().Sources["testpattern"]
	if !ok || !src.OnDemand {
		t.Fatalf("default config has no on-demand testpattern source: %+v", configs.Default().Sources)
	}
	type stream struct {
		Name      string `json:"name"`
		Live      bool   `json:"live"`
		Publisher *struct {
			Protocol string `json:"protocol"`
		} `json:"publisher"`
	}
	var streams []stream
	getJSON(t, gw.base+"/api/streams", &streams)
	if len(streams) != 0 {
		t.Fatalf("an on-demand source is live with nobody watching: %+v", streams)
	}

	browser := newBrowser(t)
	tab := newTab(t, browser, gw.base+"/watch.html?stream=testpattern&muted=0") // with sound: audio decoded too
	start, end := playFor(t, tab, 2, 60*time.Second)
	if end.Width != src.Width || end.Height != src.Height {
		t.Errorf("video %dx%d, want %dx%d", end.Width, end.Height, src.Width, src.Height)
	}
	if end.Total-start.Total < 10 {
		t.Errorf("only %d frames decoded over 2 s of playback", end.Total-start.Total)
	}
	if end.Total > 0 && float64(end.Dropped) > 0.2*float64(end.Total) {
		t.Errorf("dropped %d of %d frames", end.Dropped, end.Total)
	}
	if end.AudioBytes <= start.AudioBytes {
		t.Errorf("no audio decoded: %d -> %d", start.AudioBytes, end.AudioBytes)
	}
	getJSON(t, gw.base+"/api/streams", &streams)
	if len(streams) != 1 || streams[0].Name != "testpattern" || !streams[0].Live ||
		streams[0].Publisher == nil || streams[0].Publisher.Protocol != "local" {
		t.Fatalf("/api/streams while watching = %+v", streams)
	}
	screenshot(t, tab, "testpattern.png")
}
