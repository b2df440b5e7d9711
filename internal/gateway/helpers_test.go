package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/testcert"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// testCert is the loopback certificate of the TLS gateways of this test
// binary, made in TestMain; testHTTP trusts it (and speaks plain http).
var (
	testCert *testcert.Cert
	testHTTP *http.Client
)

func TestMain(m *testing.M) {
	if os.Getenv(childNATSEnv) != "" || os.Getenv(childRecordEnv) != "" {
		os.Exit(runChildGateway()) // this binary re-executed as a gateway (child_test.go)
	}
	dir, err := os.MkdirTemp("", "gateway-test-cert")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCert, err = testcert.Write(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = testCert.ClientConfig()
	testHTTP = &http.Client{Transport: tr}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testGateway is a gateway on loopback for one test.
type testGateway struct {
	g     *gateway.Gateway
	base  string       // http://127.0.0.1:port or https://...
	ws    string       // ws://127.0.0.1:port or wss://...
	tls   *tls.Config  // client config trusting the gateway's certificate; nil over plain http
	stop  func() error // closes the gateway (once; also at the end of the test)
	token string       // the publish token publish() presents (the config's publish_token)
}

// transports runs fn once over plain http/ws and once over https/wss (a
// gateway with tls_cert/tls_key, clients trusting the test certificate).
func transports(t *testing.T, fn func(t *testing.T, secure bool)) {
	t.Run("ws", func(t *testing.T) { fn(t, false) })
	t.Run("wss", func(t *testing.T) { fn(t, true) })
}

// startGateway starts a gateway on loopback with ICE restricted to loopback.
func startGateway(t *testing.T, edit func(*configs.Config)) *testGateway {
	t.Helper()
	return startGatewayOn(t, false, edit)
}

// startGatewayOn is startGateway serving TLS when secure is set.
func startGatewayOn(t *testing.T, secure bool, edit func(*configs.Config)) *testGateway {
	t.Helper()
	cfg := loopbackConfig()
	if secure {
		cfg.TLSCert, cfg.TLSKey = testCert.CertFile, testCert.KeyFile
	}
	if edit != nil {
		edit(cfg)
	}
	return startGatewayConfig(t, cfg, gateway.Options{LoopbackOnly: true})
}

// loopbackConfig is the default config on loopback: HTTP on a free port,
// ICE on 127.0.0.1 (any free port).
func loopbackConfig() *configs.Config {
	cfg := configs.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = "127.0.0.1"
	cfg.WebRTC.IncludeLoopback = true
	return cfg
}

// startGatewayConfig starts a gateway with cfg as it is.
func startGatewayConfig(t *testing.T, cfg *configs.Config, opts gateway.Options) *testGateway {
	t.Helper()
	level := slog.LevelError
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(cfg, log, opts)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	// stop closes the gateway once (the test may stop it itself) and
	// returns Close's or Serve's error.
	stop := sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainDelay+10*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			return fmt.Errorf("gateway close: %w", err)
		}
		if err := <-done; err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	addr := ln.Addr().String()
	tg := &testGateway{g: g, base: "http://" + addr, ws: "ws://" + addr, stop: stop, token: cfg.Auth.PublishToken}
	if cfg.TLSCert != "" {
		tg.base, tg.ws, tg.tls = "https://"+addr, "wss://"+addr, testCert.ClientConfig()
	}
	return tg
}

// repoRoot finds the module root from this file's location.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// testMedia loads the checked-in H.264 (640x360, 30 fps, 2 slices) and Opus files.
func testMedia(t *testing.T) ([]mediafile.AccessUnit, [][]byte) {
	t.Helper()
	root := repoRoot(t)
	video, err := mediafile.ReadH264(filepath.Join(root, "testdata/media/h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	audio, err := mediafile.ReadOggOpus(filepath.Join(root, "testdata/media/opus_48k_stereo.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	return video, audio
}

func publish(t *testing.T, gw *testGateway, stream string, video []mediafile.AccessUnit, audio [][]byte) *whipclient.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := whipclient.Publish(ctx, whipclient.Options{
		URL: gw.base + "/whip/" + stream, Video: video, Audio: audio, FPS: 30, LoopbackOnly: true, TLS: gw.tls, Token: gw.token,
	})
	if err != nil {
		t.Fatalf("publish %s: %v", stream, err)
	}
	t.Cleanup(func() { p.Close() })
	// The gateway makes a publish the stream's source once its side of the
	// connection is up too, a moment after the client's: wait for that, so
	// a viewer joining next gets init, not waiting.
	deadline := time.Now().Add(10 * time.Second)
	for !gw.g.Live(stream) {
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: connected, but the stream never went live", stream)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p
}

// viewer records what one viewer socket receives.
type viewer struct {
	t    *testing.T
	name string
	c    *viewerclient.Conn
}

func watch(t *testing.T, gw *testGateway, stream string) *viewer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := viewerclient.DialTLS(ctx, gw.ws+"/ws/watch/"+stream, gw.tls)
	if err != nil {
		t.Fatalf("dial viewer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &viewer{t: t, name: stream, c: c}
}

// expectControl reads until a text message arrives and checks its type.
// Binary messages before it are returned.
func (v *viewer) expectControl(typ string, timeout time.Duration) (*viewerclient.Control, [][]byte) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	var bins [][]byte
	for {
		m, err := v.c.Next(time.Until(deadline))
		if err != nil {
			v.t.Fatalf("viewer %s: waiting for %q: %v", v.name, typ, err)
		}
		if m.Control == nil {
			bins = append(bins, m.Binary)
			continue
		}
		if m.Control.Type == "waiting" && typ == "init" {
			// Joined a moment before the publish went live (once the
			// gateway's side of its connection was up): init follows.
			continue
		}
		if m.Control.Type != typ {
			v.t.Fatalf("viewer %s: got %+v, want type %q", v.name, m.Control, typ)
		}
		return m.Control, bins
	}
}

// expectInit reads an init announcement and the binary init segment after it.
func (v *viewer) expectInit(timeout time.Duration) (*viewerclient.Control, []byte) {
	v.t.Helper()
	ctl, _ := v.expectControl("init", timeout)
	m, err := v.c.Next(timeout)
	if err != nil || m.Binary == nil {
		v.t.Fatalf("viewer %s: init text not followed by a binary init segment: %v %+v", v.name, err, m.Control)
	}
	return ctl, m.Binary
}

// collect reads media segments for d (or until a text message, which is returned).
func (v *viewer) collect(d time.Duration) ([][]byte, *viewerclient.Control) {
	v.t.Helper()
	deadline := time.Now().Add(d)
	var segs [][]byte
	for time.Now().Before(deadline) {
		m, err := v.c.Next(time.Until(deadline))
		if errors.Is(err, viewerclient.ErrTimeout) {
			break
		}
		if err != nil {
			v.t.Fatalf("viewer %s: %v", v.name, err)
		}
		if m.Control != nil {
			return segs, m.Control
		}
		segs = append(segs, m.Binary)
	}
	return segs, nil
}

// checkPlayable parses what a viewer received with mp4ff and decodes it with
// ffmpeg: every segment parses, decode times rise, the first segment starts
// with a video sync sample, every frame decodes without an error line.
func checkPlayable(t *testing.T, who string, init []byte, segs [][]byte) (videoSamples int) {
	t.Helper()
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	var videoID uint32
	for id, tr := range in.Tracks {
		if tr.Kind == "video" {
			videoID = id
		}
	}
	last := map[uint32]uint64{}
	var all []fmp4check.Sample
	for i, seg := range segs {
		samples, err := fmp4check.ParseSegment(in, seg)
		if err != nil {
			t.Fatalf("%s: segment %d: %v", who, i, err)
		}
		all = append(all, samples...)
		if i == 0 && videoID != 0 {
			if len(samples) == 0 || samples[0].TrackID != videoID || !samples[0].Sync {
				t.Fatalf("%s: first segment does not start with a video sync sample: %+v", who, samples)
			}
		}
		for _, s := range samples {
			if s.Duration == 0 {
				t.Fatalf("%s: segment %d: zero-duration sample on track %d", who, i, s.TrackID)
			}
			// Durations are estimated before the next frame is known, so a
			// sample may overlap the previous one slightly; decode times must rise.
			if prev, ok := last[s.TrackID]; ok && s.DecodeTime <= prev {
				t.Fatalf("%s: segment %d: track %d decode time did not rise %d -> %d", who, i, s.TrackID, prev, s.DecodeTime)
			}
			last[s.TrackID] = s.DecodeTime
			if s.TrackID == videoID {
				videoSamples++
			}
		}
	}
	if err := fmp4check.CheckMSEContinuity(all); err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	errs, frames, err := fmp4check.Decode(t.TempDir(), init, segs)
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if errs != "" {
		t.Fatalf("%s: ffmpeg reported errors:\n%s", who, errs)
	}
	if videoID != 0 && frames != videoSamples {
		t.Fatalf("%s: ffmpeg decoded %d frames, the segments held %d video samples", who, frames, videoSamples)
	}
	return videoSamples
}
