package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// The aiortc test runs inside a private network namespace: aiortc ignores
// loopback candidates, so the gateway and the publisher meet on a veth pair
// with addresses of their own. The test re-executes itself under
// `unshare --net --map-root-user` (no root needed where user namespaces
// are allowed); this variable marks the inner run.
const netnsEnv = "MSEWAY_TEST_IN_NETNS"

const (
	nsGatewayIP   = "10.99.0.1"
	nsPublisherIP = "10.99.0.2"
)

// requireInterop fails (in CI) or skips (elsewhere) when what the aiortc
// test needs is missing: python3 with aiortc, unshare and ip.
func requireInterop(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (apt-get install python3-aiortc iproute2)", what)
		}
		t.Skipf("%s not available", what)
	}
	python := "/usr/bin/python3" // the system Python, where apt puts aiortc
	if out, err := exec.Command(python, "-c", "import aiortc").CombinedOutput(); err != nil {
		missing(fmt.Sprintf("python3-aiortc (%v: %s)", err, strings.TrimSpace(string(out))))
	}
	for _, bin := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(bin)
		}
	}
	return python
}

// TestAiortcPublisher: an independent WebRTC stack publishes over WHIP
// (non-trickle, VP8 offered first, H.264 and Opus after it); the gateway
// picks H.264, a viewer's fMP4 holds both tracks and decodes with ffmpeg,
// and the publisher's DELETE gives the viewer eos.
func TestAiortcPublisher(t *testing.T) {
	python := requireInterop(t)
	fmp4check.RequireFFmpeg(t)
	if os.Getenv(netnsEnv) != "1" {
		runInNetns(t)
		return
	}
	setupVeth(t)

	cfg := configs.Default()
	cfg.Listen = nsGatewayIP + ":0"
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = nsGatewayIP
	cfg.WebRTC.IncludeLoopback = false
	gw := startGatewayConfig(t, cfg, gateway.Options{})

	v := watch(t, gw, "aiortc")
	v.expectControl("waiting", 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script := filepath.Join("testdata", "aiortc_whip.py")
	cmd := exec.CommandContext(ctx, python, script, gw.base+"/whip/aiortc", "8")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cancel()
		<-done
		t.Logf("aiortc publisher output:\n%s", out.String())
	}()

	// aiortc's H.264 encoder (libx264 through PyAV) is slow to start on a busy machine.
	ctl, init := v.expectInit(45 * time.Second)
	if !strings.HasPrefix(ctl.MIME, `video/mp4; codecs="avc1.`) || !strings.Contains(ctl.MIME, "opus") {
		t.Fatalf("init mime = %q: want H.264 and Opus chosen from aiortc's offer", ctl.MIME)
	}
	if len(ctl.Tracks) != 2 || ctl.Tracks[0].Width != 320 || ctl.Tracks[0].Height != 240 {
		t.Fatalf("init tracks = %+v", ctl.Tracks)
	}
	// Everything until the publisher's DELETE ends the stream.
	var segs [][]byte
	for {
		more, stop := v.collect(30 * time.Second)
		segs = append(segs, more...)
		if stop != nil {
			if stop.Type != "eos" {
				t.Fatalf("viewer: got %+v, want eos after the publisher's DELETE", stop)
			}
			break
		}
		if len(more) == 0 {
			t.Fatalf("viewer: no segment and no eos for 30 s (%d segments so far)", len(segs))
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("aiortc publisher: %v\n%s", err, out.String())
	}
	done <- nil // for the deferred wait
	if !strings.Contains(out.String(), "deleted 200") {
		t.Fatalf("publisher did not end with DELETE 200:\n%s", out.String())
	}

	frames := checkPlayable(t, "aiortc viewer", init, segs)
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatal(err)
	}
	var audio int
	for _, seg := range segs {
		samples, err := fmp4check.ParseSegment(in, seg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if in.Tracks[s.TrackID].Kind == "audio" {
				audio++
			}
		}
	}
	// 8 s at 30 fps and 50 audio frames a second; aiortc may start slowly
	// and drop frames under load, so ask for a fraction of it.
	if frames < 60 || audio < 100 {
		t.Fatalf("got %d video and %d audio samples, want >= 60 and >= 100", frames, audio)
	}
	t.Logf("aiortc: %d video frames (%s), %d audio frames, decoded by ffmpeg", frames, ctl.MIME, audio)
}

// runInNetns runs the calling test again in a new network namespace and
// reports its result.
func runInNetns(t *testing.T) {
	t.Helper()
	args := []string{"--net", "--map-root-user", "--", os.Args[0], "-test.run=^" + t.Name() + "$", "-test.v", "-test.timeout=4m"}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	passed := false
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if strings.HasPrefix(line, "--- PASS: "+t.Name()) {
			passed = true
		}
	}
	err = cmd.Wait()
	if err != nil || !passed {
		t.Fatalf("the test in a network namespace failed (%v); its output is above", err)
	}
}

// setupVeth brings up loopback and a veth pair inside the namespace.
func setupVeth(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "mv0", "type", "veth", "peer", "name", "mv1"},
		{"addr", "add", nsGatewayIP + "/24", "dev", "mv0"},
		{"addr", "add", nsPublisherIP + "/24", "dev", "mv1"},
		{"link", "set", "mv0", "up"},
		{"link", "set", "mv1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}
