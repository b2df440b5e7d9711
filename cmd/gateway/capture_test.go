package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/logbuf"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/gateway"
)

// TestCaptureErrors: bad flags, unknown devices and unreachable gateways end
// `gateway capture` with a clear message and a non-zero exit, no stack trace.
func TestCaptureErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/whip/x" // nobody listens there
	ln.Close()
	small := []string{"-video", "videotest", "-audio", "audiotest", "-width", "160", "-height", "120", "-fps", "5", "-loopback"}
	cases := []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"capture"}, 2, "-url is required"},
		{[]string{"capture", "-nope"}, 2, "flag provided but not defined"},
		{[]string{"capture", "-url", "ftp://x/whip/a"}, 2, "want http(s)://"},
		{[]string{"capture", "-url", dead, "-width", "15"}, 2, "width 15"},
		{[]string{"capture", "-url", dead, "-fps", "0"}, 2, "-fps 0"},
		{[]string{"capture", "-url", dead, "-bitrate", "fast"}, 2, "not a bit rate"},
		{[]string{"capture", "-url", dead, "-keyint", "-1s"}, 2, "keyframe interval"},
		{[]string{"capture", "-url", dead, "-video", "none", "-audio", "none"}, 2, "nothing to capture"},
		{[]string{"capture", "-url", dead, "-log-level", "loud"}, 2, "-log-level"},
		{[]string{"capture", "-url", dead, "-log-format", "xml"}, 2, `-log-format "xml": want text or json`},
		{[]string{"capture", "-url", dead, "-codec", "vp8"}, 2, "the gateway never accepts VP8"},
		{[]string{"capture", "-url", dead, "-codec", "av1"}, 2, `video codec "av1": want h264 or vp9`},
		{[]string{"capture", "-url", dead, "extra"}, 2, "unexpected argument"},
		{[]string{"capture", "-url", dead, "-video", "no-such-camera", "-audio", "none"}, 1, "no such device"},
		{append([]string{"capture", "-url", dead}, small...), 1, "connection refused"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.has) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, errOut.String(), tc.code, tc.has)
		}
		if strings.Contains(errOut.String(), "goroutine ") || strings.Contains(errOut.String(), "panic") {
			t.Errorf("%v: stack trace printed: %s", tc.args, errOut.String())
		}
	}
}

// TestCaptureCodecVP9: without the vpx build tag, -codec vp9 is a bad flag
// (exit 2) whose message says the build lacks vpx; with it, the VP9 encoder
// opens and the agent gets as far as the (unreachable) gateway.
func TestCaptureCodecVP9(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/whip/x"
	ln.Close()
	args := []string{"capture", "-url", dead, "-codec", "vp9", "-video", "videotest", "-audio", "none",
		"-width", "160", "-height", "120", "-fps", "5", "-loopback"}
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	if devices.VP9Encoder == "" {
		if code != 2 || !strings.Contains(errOut.String(), "-codec vp9: this build lacks vpx") ||
			!strings.Contains(errOut.String(), "-tags vpx") {
			t.Fatalf("exit %d, stderr %q; want exit 2 saying the build lacks vpx", code, errOut.String())
		}
	} else if code != 1 || !strings.Contains(errOut.String(), "connection refused") ||
		!strings.Contains(errOut.String(), "codec=vp9") {
		t.Fatalf("exit %d, stderr %q; want the VP9 capture opened and exit 1 for the refused connection", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "goroutine ") || strings.Contains(errOut.String(), "panic") {
		t.Errorf("stack trace printed: %s", errOut.String())
	}
}

func TestCaptureList(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"capture", "-list"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"videotest", "audiotest", "H.264 encoder", "VP9 encoder (-codec vp9): " + vp9EncoderName()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-list output lacks %q:\n%s", want, out.String())
		}
	}
}

// syncBuffer is a log sink for several goroutines (internal/testkit/logbuf).
type syncBuffer = logbuf.Buffer

// TestCaptureStopsCleanly: `gateway capture` publishes to a gateway, and when
// its context ends (SIGINT/SIGTERM in main) it sends the WHIP DELETE, the
// stream stops being live and it exits 0.
func TestCaptureStopsCleanly(t *testing.T) {
	cfg := configs.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = "127.0.0.1"
	cfg.WebRTC.IncludeLoopback = true
	g, err := gateway.New(cfg, slog.New(slog.DiscardHandler), gateway.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Close(ctx)
		<-served
	}()
	base := "http://" + ln.Addr().String()
	live := func() bool {
		resp, err := http.Get(base + "/api/streams")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var streams []struct {
			Name string `json:"name"`
			Live bool   `json:"live"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&streams); err != nil {
			t.Fatal(err)
		}
		for _, s := range streams {
			if s.Name == "agent" && s.Live {
				return true
			}
		}
		return false
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- runCapture(ctx, []string{"-url", base + "/whip/agent", "-video", "videotest", "-audio", "audiotest",
			"-width", "160", "-height", "120", "-fps", "10", "-loopback"}, &out, &errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !live() {
		select {
		case code := <-exit:
			t.Fatalf("capture exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream never went live; agent log:\n%s", errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("capture did not exit")
	}
	if !strings.Contains(errOut.String(), `msg="stopped; WHIP DELETE sent" status=200`) {
		t.Fatalf("no acknowledged WHIP DELETE in the log:\n%s", errOut.String())
	}
	if live() {
		t.Fatal("stream still live after the agent stopped")
	}
}
