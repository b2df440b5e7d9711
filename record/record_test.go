package record

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/logbuf"
)

func TestPattern(t *testing.T) {
	p, err := parsePattern("")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 9, 5, 7, 123456789, time.UTC)
	name := p.name("cam-1.a", at)
	if name != "recordings/cam-1.a/2026-12-06_09-05-07-123456.mp4" {
		t.Fatalf("name %q", name)
	}
	stream, got, err := p.parse(name)
	if err != nil || stream != "cam-1.a" || !got.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("parse: %q %v %v", stream, got, err)
	}
	if m, _ := filepath.Match(p.glob("cam-1.a"), name); !m {
		t.Errorf("glob %q does not match %q", p.glob("cam-1.a"), name)
	}
	if m, _ := filepath.Match(p.glob(""), name); !m {
		t.Errorf("glob %q does not match %q", p.glob(""), name)
	}
	if m, _ := filepath.Match(p.glob("cam"), name); m {
		t.Errorf("the glob of another stream matches %q", name)
	}
	if _, _, err := p.parse("recordings/cam/2026-02-30_09-05-07-000000.mp4"); err == nil {
		t.Error("February 30th parsed")
	}
	if _, _, err := p.parse("recordings/cam/notes.txt"); err == nil {
		t.Error("a stranger's file parsed")
	}
	// Two uses of %stream, brackets in the literal part.
	p2, err := parsePattern("/rec [x]/%stream/%Y%m%d/%stream-%H%M%S.%f.mp4")
	if err != nil {
		t.Fatal(err)
	}
	name = p2.name("s", at)
	if stream, _, err := p2.parse(name); err != nil || stream != "s" {
		t.Fatalf("%q: %q %v", name, stream, err)
	}
	if m, err := filepath.Match(p2.glob("s"), name); !m || err != nil {
		t.Errorf("glob %q does not match %q: %v", p2.glob("s"), name, err)
	}
	if p2.root() != "/rec [x]" {
		t.Errorf("root %q", p2.root())
	}
	for _, bad := range []string{"rec/%Y-%m-%d_%H-%M-%S-%f.mp4", "rec/%stream/%Y-%m-%d.mp4", "rec/%stream/%Y-%m-%d_%H-%M-%S-%f-%q.mp4", "rec/%stream/%Y%Y-%m-%d_%H-%M-%S-%f.mp4", "rec/"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func newTestRecorder(t *testing.T, cfg Config) (*Recorder, *fakeClock, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	clock := &fakeClock{now: time.Now()}
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "rec", "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Now = clock.Now
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, clock, logs
}

// record plays events into a new recording of stream and waits for it to
// end.
func record(t *testing.T, r *Recorder, clock *fakeClock, stream string, events []event) time.Time {
	t.Helper()
	got := make(chan Output, 1)
	r.Start(stream, attachTo(got))
	out := <-got
	start := clock.Now()
	play(clock, start, out, events, true)
	waitStopped(t, r, stream)
	return start
}

func waitStopped(t *testing.T, r *Recorder, stream string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); r.Recording(stream); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the recording did not end")
		}
	}
}

// TestRecordFiles: 12 s of real media with a resolution change at 6 s and
// 4 s files: files cut at keyframes every 4 s and at the new init, each a
// valid fMP4 that ffmpeg decodes without an error, with video and audio,
// its duration what was given to it, named by its start.
func TestRecordFiles(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	events := realMedia(t, 12, true)
	r, clock, logs := newTestRecorder(t, Config{SegmentDuration: 4 * time.Second})
	start := record(t, r, clock, "cam", events)
	files, err := r.List("cam", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("%d files, want 4 or more (4 s files, a new init at 6 s):\n%s", len(files), logs)
	}
	var total float64
	sizes := map[[2]int]bool{}
	for i, f := range files {
		p, err := fmp4check.Probe(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: start +%v, %d bytes, %+v", filepath.Base(f.Path), f.Start.Sub(start), f.Bytes, p)
		if p.Errors != "" {
			t.Errorf("%s: ffmpeg: %s", f.Path, p.Errors)
		}
		if !p.Video || !p.Audio || p.VideoFrames < 30 {
			t.Errorf("%s: video %v audio %v, %d frames", f.Path, p.Video, p.Audio, p.VideoFrames)
		}
		if p.VideoDuration > 4.5 {
			t.Errorf("%s: %.2f s of video in a 4 s file", f.Path, p.VideoDuration)
		}
		sizes[[2]int{p.Width, p.Height}] = true
		total += p.VideoDuration
		if f.Recording {
			t.Errorf("%s is still marked as being written", f.Path)
		}
		if i > 0 && !f.Start.After(files[i-1].Start) {
			t.Errorf("files out of order")
		}
	}
	if !sizes[[2]int{640, 360}] || !sizes[[2]int{1280, 720}] {
		t.Errorf("sizes %v: the new init did not start a file of its own", sizes)
	}
	if math.Abs(total-12) > 0.2 {
		t.Errorf("%.2f s of video recorded in all, want 12", total)
	}
	if !strings.Contains(logs.String(), "recording ended") {
		t.Errorf("no end logged:\n%s", logs)
	}
}

// TestClip: a range from the middle of a file starts at the keyframe at or
// before it and ends at the range's end or the file's; ffmpeg decodes it;
// reads at any offset give the same bytes; its media time is the file's.
func TestClip(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	events := realMedia(t, 12, true)
	r, clock, _ := newTestRecorder(t, Config{SegmentDuration: 4 * time.Second})
	start := record(t, r, clock, "cam", events)
	files, _ := r.List("cam", time.Time{}, time.Time{})

	from, to := start.Add(2500*time.Millisecond), start.Add(3500*time.Millisecond)
	c, err := r.Clip("cam", from, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("clip of %s: +%v .. +%v (media %v), %d bytes", filepath.Base(c.Path), c.Start.Sub(start), c.End.Sub(start), c.MediaStart, c.Size)
	if c.Path != files[0].Path {
		t.Errorf("clip from %s, want the first file", c.Path)
	}
	if c.Start.After(from) || c.Start.Before(start) {
		t.Errorf("clip starts at +%v, want the keyframe at or before +2.5 s", c.Start.Sub(start))
	}
	if c.End.Before(to) || c.End.After(to.Add(100*time.Millisecond)) {
		t.Errorf("clip ends at +%v, want +3.5 s (one frame more at most)", c.End.Sub(start))
	}
	if d := c.MediaStart - c.Start.Sub(files[0].Start); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("media start %v for a fragment %v into its file", c.MediaStart, c.Start.Sub(files[0].Start))
	}
	all, err := io.ReadAll(c)
	if err != nil || int64(len(all)) != c.Size {
		t.Fatalf("read %d of %d bytes: %v", len(all), c.Size, err)
	}
	for _, off := range []int64{0, 7, c.Size / 3, c.Size - 1} {
		if _, err := c.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5000)
		n, _ := io.ReadFull(c, buf)
		if !bytes.Equal(buf[:n], all[off:off+int64(n)]) {
			t.Errorf("bytes at %d differ from a whole read", off)
		}
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, all, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := fmp4check.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clip probe: %+v", p)
	if p.Errors != "" || !p.Video || !p.Audio || p.Width != 640 {
		t.Errorf("clip: %+v", p)
	}
	if want := c.End.Sub(c.Start).Seconds(); math.Abs(float64(p.VideoFrames)/30-want) > 0.05 {
		t.Errorf("clip of %d frames, want %.2f s of them", p.VideoFrames, want)
	}

	// From +5 s to +9 s: the second file ends at the new init (+6 s).
	c2, err := r.Clip("cam", start.Add(5*time.Second), start.Add(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Path != files[1].Path || c2.End.After(start.Add(6100*time.Millisecond)) || c2.End.Before(start.Add(5900*time.Millisecond)) {
		t.Errorf("a clip from +5 s: %s to +%v, want the second file to the new init at +6 s", filepath.Base(c2.Path), c2.End.Sub(start))
	}
	// Asking from its end gives the next file.
	c3, err := r.Clip("cam", c2.End, start.Add(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if c3.Path != files[2].Path || c3.Start.Sub(c2.End).Abs() > 50*time.Millisecond {
		t.Errorf("the part after +%v: %s from +%v", c2.End.Sub(start), filepath.Base(c3.Path), c3.Start.Sub(start))
	}
	// ClipAfter from the end of a clip: the next fragment, no overlap, no
	// step back to a keyframe.
	c4, err := r.ClipAfter("cam", c.End, c.End.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if c4.Path != c.Path || c4.Start.Sub(c.End).Abs() > time.Millisecond || c4.MediaStart <= c.MediaStart {
		t.Errorf("ClipAfter +%v: %s from +%v (media %v), want the fragment at the end of the clip before", c.End.Sub(start), filepath.Base(c4.Path), c4.Start.Sub(start), c4.MediaStart)
	}
	// From the last fragment's end of a file: the next file.
	c5, err := r.ClipAfter("cam", c2.End.Add(-time.Millisecond/2), start.Add(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c5.Close()
	if c5.Path != files[2].Path {
		t.Errorf("ClipAfter at a file's end gives %s, want the next file", filepath.Base(c5.Path))
	}
	if _, err := r.Clip("cam", start.Add(time.Hour), start.Add(2*time.Hour)); err != ErrNoRecording {
		t.Errorf("a range with no recording: %v", err)
	}
}

// TestRetention: files over max_bytes go oldest first, files older than
// max_age go, a file being written stays.
func TestRetention(t *testing.T) {
	events := realMedia(t, 8, false)
	r, clock, logs := newTestRecorder(t, Config{SegmentDuration: 2 * time.Second})
	start := record(t, r, clock, "a", events)
	files, _ := r.List("a", time.Time{}, time.Time{})
	if len(files) < 3 {
		t.Fatalf("%d files", len(files))
	}
	var total int64
	for _, f := range files {
		total += f.Bytes
	}
	r.cfg.MaxBytes = total - files[0].Bytes/2 // one file too many
	r.enforceRetention(start.Add(time.Minute))
	left, _ := r.List("a", time.Time{}, time.Time{})
	if len(left) != len(files)-1 || left[0].Path != files[1].Path {
		t.Fatalf("max_bytes: %d of %d files left, first %s:\n%s", len(left), len(files), left[0].Path, logs)
	}
	// max_age: every file ended before now - max_age.
	r.cfg.MaxBytes, r.cfg.MaxAge = 0, time.Hour
	r.enforceRetention(time.Now().Add(30 * time.Minute))
	if left, _ := r.List("a", time.Time{}, time.Time{}); len(left) != len(files)-1 {
		t.Fatalf("max_age: files younger than max_age deleted (%d left)", len(left))
	}
	r.enforceRetention(time.Now().Add(2 * time.Hour))
	if left, _ := r.List("a", time.Time{}, time.Time{}); len(left) != 0 {
		t.Fatalf("max_age: %d files older than max_age left", len(left))
	}
	if _, err := os.Stat(filepath.Dir(files[0].Path)); !os.IsNotExist(err) {
		t.Errorf("the stream's emptied directory is left: %v", err)
	}

	// A file being written is never deleted.
	got := make(chan Output, 1)
	r.Start("b", attachTo(got))
	out := <-got
	play(clock, clock.Now(), out, events[:len(events)/2], false)
	var open []File
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if open, _ = r.List("b", time.Time{}, time.Time{}); len(open) > 0 && open[len(open)-1].Recording {
			break
		}
	}
	if len(open) == 0 || !open[len(open)-1].Recording {
		t.Fatalf("no file being written: %+v", open)
	}
	r.cfg.MaxBytes, r.cfg.MaxAge = 1, time.Nanosecond
	r.enforceRetention(time.Now().Add(time.Hour))
	if _, err := os.Stat(open[len(open)-1].Path); err != nil {
		t.Errorf("the file being written was deleted: %v", err)
	}
	out.WriteEnd()
	waitStopped(t, r, "b")
}

// TestRecordingStops: a disk that does not keep up (the queue over its
// bound) or a path that cannot be written stops that recording with a log
// line and a counted failure; it never blocks the hub.
func TestRecordingStops(t *testing.T) {
	events := realMedia(t, 3, false)
	t.Run("queue full", func(t *testing.T) {
		r, clock, logs := newTestRecorder(t, Config{QueueBytes: 1000})
		got := make(chan Output, 1)
		r.Start("s", attachTo(got))
		out := <-got
		play(clock, clock.Now(), out, events, false) // never blocks, never ends
		waitStopped(t, r, "s")
		if n := r.m.failureCount("queue_full"); n != 1 {
			t.Errorf("queue_full failures %d", n)
		}
		if !strings.Contains(logs.String(), "does not keep up") {
			t.Errorf("no reason logged:\n%s", logs)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r, clock, logs := newTestRecorder(t, Config{Path: filepath.Join(dir, "file", "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")})
		got := make(chan Output, 1)
		r.Start("s", attachTo(got))
		play(clock, clock.Now(), <-got, events, false)
		waitStopped(t, r, "s")
		if n := r.m.failureCount("open"); n != 1 {
			t.Errorf("open failures %d", n)
		}
		if !strings.Contains(logs.String(), "recording of this stream stopped") {
			t.Errorf("no reason logged:\n%s", logs)
		}
	})
}

// TestCutFileIndexed: a file cut anywhere (a process killed mid-write) is
// indexed up to its last complete fragment.
func TestCutFileIndexed(t *testing.T) {
	events := realMedia(t, 4, false)
	r, clock, _ := newTestRecorder(t, Config{})
	record(t, r, clock, "c", events)
	files, _ := r.List("c", time.Time{}, time.Time{})
	if len(files) != 1 {
		t.Fatalf("%d files", len(files))
	}
	data, err := os.ReadFile(files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := indexFile(bytes.NewReader(data), int64(len(data)))
	if err != nil || len(whole.frags) < 100 {
		t.Fatalf("%d fragments: %v", len(whole.frags), err)
	}
	keys := 0
	for _, f := range whole.frags {
		if f.keyframe {
			keys++
		}
	}
	if keys < 2 || !whole.frags[0].keyframe {
		t.Errorf("%d keyframes, first %v", keys, whole.frags[0].keyframe)
	}
	for _, cut := range []int64{whole.frags[10].off + 3, whole.frags[10].off + whole.frags[10].size - 1, whole.frags[10].off + whole.frags[10].size} {
		ix, err := indexFile(bytes.NewReader(data[:cut]), cut)
		if err != nil {
			t.Fatal(err)
		}
		want := 10
		if cut == whole.frags[10].off+whole.frags[10].size {
			want = 11
		}
		if len(ix.frags) != want {
			t.Errorf("cut at %d: %d fragments, want %d", cut, len(ix.frags), want)
		}
	}
	if _, err := indexFile(bytes.NewReader([]byte("garbage that is not mp4")), 23); err == nil {
		t.Error("garbage indexed")
	}
}
