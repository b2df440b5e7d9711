package devices

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mseway/mseway/bitstream"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
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

// TestCaptureEncodes: a test-pattern capture delivers H.264 with keyframes
// on request whose parameter sets are byte-identical across keyframes (ids
// normalized), frame times on the frame grid, 20 ms Opus packets, and the
// H.264 decodes with ffmpeg without an error.
func TestCaptureEncodes(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
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
			for _, nal := range bitstream.SplitAnnexB(f.Data) {
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
