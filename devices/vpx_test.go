//go:build cgo && vpx

package devices

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/vp9"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// keyRequester records video frames and asks its capture for a keyframe
// right after the frames whose index is in at. It runs on the capture's
// video goroutine, so the next frame encoded is the one asked for.
type keyRequester struct {
	c  *Capture
	at map[int]bool

	mu     sync.Mutex
	video  []Frame
	want   int
	enough chan struct{}
}

func (r *keyRequester) WriteVideo(f Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.video) >= r.want {
		return
	}
	r.video = append(r.video, f)
	if r.at[len(r.video)-1] {
		r.c.RequestKeyframe()
	}
	if len(r.video) == r.want {
		close(r.enough)
	}
}

func (r *keyRequester) WriteAudio(Frame) {}

// writeIVF writes VP9 frames to an IVF file for ffmpeg.
func writeIVF(t *testing.T, path string, w, h, fps int, frames []Frame) {
	t.Helper()
	var b bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[4:], 0)  // version
	binary.LittleEndian.PutUint16(hdr[6:], 32) // header size
	copy(hdr[8:], "VP90")
	binary.LittleEndian.PutUint16(hdr[12:], uint16(w))
	binary.LittleEndian.PutUint16(hdr[14:], uint16(h))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(fps)) // time base denominator
	binary.LittleEndian.PutUint32(hdr[20:], 1)           // numerator
	binary.LittleEndian.PutUint32(hdr[24:], uint32(len(frames)))
	b.Write(hdr)
	for i, f := range frames {
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f.Data)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		b.Write(fh)
		b.Write(f.Data)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// decodeIVF decodes an IVF file with ffmpeg: it must decode without an error
// line, and ffprobe must count want frames.
func decodeIVF(t *testing.T, what, path string, want int) {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("%s: ffmpeg: %v\n%s", what, err, out)
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("%s: ffprobe: %v", what, err)
	}
	if got, exp := strings.TrimSpace(string(probe)), "vp9,"+strconv.Itoa(want); got != exp {
		t.Fatalf("%s: ffprobe says %q, want %q", what, got, exp)
	}
}

// TestCaptureVP9Keyframes: a VP9 test-pattern capture without periodic
// keyframes delivers exactly three keyframes: the first frame and the frame
// after each keyframe request. Each is a profile 0, 8-bit keyframe of the
// capture's size; the whole stream decodes with ffmpeg without an error, and
// so does the stream cut at each requested keyframe (it decodes on its own).
func TestCaptureVP9Keyframes(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	const w, h, fps, n = 320, 240, 15, 30
	c, err := Open(Config{Video: VideoTest, Audio: None, VideoCodec: VP9, Width: w, Height: h, FPS: fps,
		VideoBitrate: 300_000, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.VideoCodec() != VP9 {
		t.Fatalf("VideoCodec() = %q", c.VideoCodec())
	}
	rec := &keyRequester{c: c, at: map[int]bool{10: true, 20: true}, want: n, enough: make(chan struct{})}
	c.SetSink(rec)
	select {
	case <-rec.enough:
	case <-time.After(60 * time.Second):
		t.Fatal("no frames")
	}
	c.Close()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	grid := time.Second / fps
	var keys []int
	for i, f := range rec.video {
		if f.Time%grid != 0 || (i > 0 && f.Time <= rec.video[i-1].Time) {
			t.Fatalf("frame %d time %v: off the %v grid or not rising", i, f.Time, grid)
		}
		hdr, err := vp9.ParseFrameHeader(f.Data)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if hdr.KeyFrame != f.Keyframe {
			t.Fatalf("frame %d: Keyframe %v, uncompressed header says %v", i, f.Keyframe, hdr.KeyFrame)
		}
		if !f.Keyframe {
			continue
		}
		keys = append(keys, i)
		if hdr.Profile != 0 || hdr.BitDepth != 8 || hdr.Width != w || hdr.Height != h {
			t.Fatalf("keyframe %d: profile %d, %d bits, %dx%d; want profile 0, 8 bits, %dx%d",
				i, hdr.Profile, hdr.BitDepth, hdr.Width, hdr.Height, w, h)
		}
	}
	if want := []int{0, 11, 21}; !equalInts(keys, want) {
		t.Fatalf("keyframes at %v, want %v (the first frame and the frame after each request)", keys, want)
	}
	if st := c.Stats(); st.Keyframes != 3 || st.KeyframeRequests != 2 || st.VideoFrames < n {
		t.Fatalf("stats %+v", st)
	}
	dir := t.TempDir()
	all := filepath.Join(dir, "all.ivf")
	writeIVF(t, all, w, h, fps, rec.video)
	decodeIVF(t, "whole stream", all, n)
	for _, k := range keys[1:] {
		cut := filepath.Join(dir, "from"+strconv.Itoa(k)+".ivf")
		writeIVF(t, cut, w, h, fps, rec.video[k:])
		decodeIVF(t, "stream from the keyframe at "+strconv.Itoa(k), cut, n-k)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
