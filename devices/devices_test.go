package devices

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/viewerclient"
	"github.com/mseway/mseway/mseout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestConfigValidate(t *testing.T) {
	ok := Config{Video: VideoTest, Audio: AudioTest}
	if err := ok.Validate(); err != nil || ok.Width != DefaultWidth || ok.FPS != DefaultFPS || ok.VideoCodec != H264 {
		t.Fatalf("defaults: %v %+v", err, ok)
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Video: None, Audio: None}, "nothing to capture"},
		{Config{Video: VideoTest, Width: 15}, "width 15"},
		{Config{Video: VideoTest, Height: 99}, "height 99"},
		{Config{Video: VideoTest, FPS: 500}, "fps 500"},
		{Config{Video: VideoTest, VideoBitrate: 5}, "video bitrate"},
		{Config{Audio: AudioTest, AudioBitrate: 1_000_000}, "audio bitrate"},
		{Config{Video: VideoTest, KeyframeInterval: -time.Second}, "keyframe interval"},
		{Config{Video: VideoTest, VideoCodec: "VP8"}, "video codec vp8: not supported (the gateway never accepts VP8)"},
		{Config{Video: VideoTest, VideoCodec: "av1"}, `video codec "av1": want h264 or vp9`},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

func TestFindDevices(t *testing.T) {
	for _, name := range []string{VideoTest, "VideoTest"} {
		if _, err := findDriver("video", name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := findDriver("audio", AudioTest); err != nil {
		t.Error(err)
	}
	_, err := findDriver("video", "no-such-camera")
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "-list") {
		t.Errorf("unknown device: %v", err)
	}
	var names []string
	for _, d := range List() {
		names = append(names, d.Kind+":"+d.Name)
	}
	if len(names) < 2 || names[0] != "video:videotest" || !strings.Contains(strings.Join(names, " "), "audio:audiotest") {
		t.Errorf("List() = %v", names)
	}
}

func TestExpGolomb(t *testing.T) {
	w := &bitWriter{}
	for v := uint32(0); v < 300; v++ {
		w.ue(v)
	}
	r := &bitReader{b: w.b}
	for v := uint32(0); v < 300; v++ {
		got, ok := r.ue()
		if !ok || got != v {
			t.Fatalf("ue %d: got %d %v", v, got, ok)
		}
	}
	raw := []byte{0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 9}
	if got := unescapeRBSP(escapeRBSP(raw)); !bytes.Equal(got, raw) {
		t.Fatalf("escape round trip: %x -> %x", raw, got)
	}
}

// frameRecorder keeps what a capture delivers.
type frameRecorder struct {
	mu     sync.Mutex
	video  []Frame
	audio  []Frame
	enough chan struct{}
	want   int
}

func (r *frameRecorder) WriteVideo(f Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.video = append(r.video, f)
	if len(r.video) == r.want {
		close(r.enough)
	}
}

func (r *frameRecorder) WriteAudio(f Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audio = append(r.audio, f)
}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required in CI")
		}
		t.Skip("ffmpeg not installed")
	}
}

// TestCaptureEncodes: a test-pattern capture delivers H.264 with keyframes
// on request whose parameter sets are byte-identical across keyframes (ids
// normalized), frame times on the frame grid, 20 ms Opus packets, and the
// H.264 decodes with ffmpeg without an error.
func TestCaptureEncodes(t *testing.T) {
	requireFFmpeg(t)
	c, err := Open(Config{Video: VideoTest, Audio: AudioTest, Width: 160, Height: 120, FPS: 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := &frameRecorder{enough: make(chan struct{}), want: 30}
	c.SetSink(rec)
	// Ask for keyframes while frames come.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				c.RequestKeyframe()
			}
		}
	}()
	select {
	case <-rec.enough:
	case <-time.After(60 * time.Second):
		t.Fatal("no frames")
	}
	close(stop)
	wg.Wait()
	c.Close()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var stream []byte
	var sps [][]byte
	keyframes := 0
	grid := time.Second / 20
	for i, f := range rec.video {
		if f.Time%grid != 0 || (i > 0 && f.Time <= rec.video[i-1].Time) {
			t.Fatalf("frame %d time %v: off the %v grid or not rising", i, f.Time, grid)
		}
		if f.Keyframe {
			keyframes++
			for _, nal := range splitAnnexB(f.Data) {
				if nal[0]&0x1f == 7 {
					sps = append(sps, nal)
				}
			}
		}
		stream = append(stream, f.Data...)
	}
	if keyframes < 2 || len(sps) < 2 {
		t.Fatalf("%d keyframes, %d SPS in %d frames", keyframes, len(sps), len(rec.video))
	}
	for _, s := range sps[1:] {
		if !bytes.Equal(s, sps[0]) {
			t.Fatalf("SPS changed between keyframes: %x vs %x", sps[0], s)
		}
	}
	if len(rec.audio) < 10 || rec.audio[1].Time-rec.audio[0].Time != 20*time.Millisecond {
		t.Fatalf("audio: %d packets", len(rec.audio))
	}
	path := filepath.Join(t.TempDir(), "v.h264")
	if err := os.WriteFile(path, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(probe))); n != len(rec.video) {
		t.Fatalf("ffprobe decoded %d frames of %d", n, len(rec.video))
	}
}

// TestLocalSourceOnDemand: an on-demand local source is not live until a
// viewer waits; then it captures and the viewer gets an init and media; when
// the last viewer leaves it stops after the linger time, and a new viewer
// starts it again.
func TestLocalSourceOnDemand(t *testing.T) {
	reg := mseout.NewRegistry(mseout.Options{Limits: configs.Default().Limits, Logger: quietLogger()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeViewer(w, r, strings.TrimPrefix(r.URL.Path, "/ws/watch/"))
	}))
	defer srv.Close()
	defer reg.Close()
	src, err := StartLocal(LocalConfig{
		Stream:   "pattern",
		Capture:  Config{Video: VideoTest, Audio: AudioTest, Width: 160, Height: 120, FPS: 15},
		Registry: reg, OnDemand: true, Linger: 200 * time.Millisecond,
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	live := func() bool {
		for _, s := range reg.Streams() {
			if s.Name == "pattern" {
				return s.Live
			}
		}
		return false
	}
	time.Sleep(200 * time.Millisecond)
	if live() || src.Captures() != 0 {
		t.Fatalf("on-demand source live (%v) or capturing (%d) with no viewer", live(), src.Captures())
	}
	for round := 1; round <= 2; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, _, err := viewerclient.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/watch/pattern")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		gotInit, media := false, 0
		for media < 5 {
			m, err := v.Next(20 * time.Second)
			if err != nil {
				t.Fatalf("round %d: %v (init %v, media %d)", round, err, gotInit, media)
			}
			switch {
			case m.Control != nil && m.Control.Type == "init":
				if len(m.Control.Tracks) != 2 {
					t.Fatalf("init tracks %+v", m.Control.Tracks)
				}
				gotInit = true
			case m.Control != nil && m.Control.Type != "waiting":
				t.Fatalf("round %d: unexpected %+v", round, m.Control)
			case m.Binary != nil && gotInit:
				media++
			}
		}
		if src.Captures() != int64(round) || !live() {
			t.Fatalf("round %d: captures %d, live %v", round, src.Captures(), live())
		}
		v.Close()
		deadline := time.Now().Add(20 * time.Second)
		for live() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: source still live after its viewer left", round)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestLocalSourceTakeover: an always-on local source publishes at start; a
// publisher that takes the stream over ends the source's publication; when
// that publisher leaves, the source publishes again.
func TestLocalSourceTakeover(t *testing.T) {
	reg := mseout.NewRegistry(mseout.Options{Limits: configs.Default().Limits, Logger: quietLogger()})
	defer reg.Close()
	src, err := StartLocal(LocalConfig{
		Stream:   "pattern",
		Capture:  Config{Video: VideoTest, Audio: None, Width: 160, Height: 120, FPS: 10},
		Registry: reg, Retry: 100 * time.Millisecond, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	publisher := func() string {
		for _, s := range reg.Streams() {
			if s.Name == "pattern" && s.Publisher != nil {
				return s.Publisher.Protocol
			}
		}
		return ""
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for publisher() != want {
			if time.Now().After(deadline) {
				t.Fatalf("publisher %q, want %q", publisher(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("local")
	other, err := reg.Publish("pattern", mseout.PublisherInfo{Protocol: "whip", RemoteAddr: "test"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("whip")
	time.Sleep(300 * time.Millisecond) // a few retry periods: the source must not take it back
	if p := publisher(); p != "whip" {
		t.Fatalf("the local source took the stream back from a live publisher: %q", p)
	}
	other.Close()
	waitFor("local")
	deadline := time.Now().Add(20 * time.Second)
	for src.Captures() != 2 { // the devices were closed while taken over, reopened now
		if time.Now().After(deadline) {
			t.Fatalf("captures = %d, want 2", src.Captures())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
