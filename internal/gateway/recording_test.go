package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

type recordingEntry struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Bytes     int64     `json:"bytes"`
	Recording bool      `json:"recording"`
	File      string    `json:"file"`
	URL       string    `json:"url"`
}

// doGet sends GET url with header; the caller closes the body.
func doGet(t *testing.T, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := testHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// getWith GETs url with header, returning the status, the headers and
// the body.
func getWith(t *testing.T, url string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	resp := doGet(t, url, header)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestRecording: a real publish over WHIP to a gateway serving TLS with
// access control on, recorded for 20 s in 6 s files. Every file is valid
// fMP4 that ffmpeg decodes without an error, with video and audio, lasting
// what the wall clock says (the next file's start); the recordings API
// lists them to holders of the view right only; a time range is served as
// fMP4 with range requests.
func TestRecording(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	dir := t.TempDir()
	const viewToken = "view-token-0123456789abcdef"
	gw := startGatewayOn(t, true, func(c *configs.Config) {
		c.Auth.PublishToken, c.Auth.ViewToken = "pub-token-0123456789abcdef", viewToken
		c.StreamDefaults.Record = true
		c.Record.Path = filepath.Join(dir, "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
		c.Record.SegmentDuration = 6 * time.Second
	})
	video, audio := testMedia(t)
	began := time.Now()
	pub := publish(t, gw, "rec", video, audio)
	time.Sleep(20 * time.Second)
	pub.Close()
	viewer := map[string]string{"Authorization": "Bearer " + viewToken}

	// The list, once the last file is closed.
	var files []recordingEntry
	eventually(t, "the recording's last file closed", 20*time.Second, func() bool {
		status, _, body := getWith(t, gw.base+"/api/recordings?stream=rec", viewer)
		if status != http.StatusOK {
			t.Fatalf("GET /api/recordings: %d %s", status, body)
		}
		files = nil
		if err := json.Unmarshal(body, &files); err != nil {
			t.Fatal(err)
		}
		return len(files) > 0 && !files[len(files)-1].Recording
	})
	if len(files) < 3 {
		t.Fatalf("%d files for 20 s in 6 s files: %+v", len(files), files)
	}
	if files[0].Start.Before(began) || files[0].Start.After(began.Add(10*time.Second)) {
		t.Errorf("first file starts %v after the publish began", files[0].Start.Sub(began))
	}
	var total float64
	for i, f := range files {
		p, err := fmp4check.Probe(filepath.Join(dir, "rec", f.File))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes, %+v", f.File, f.Bytes, p)
		// Every file but the last holds a whole segment_duration; the last
		// one what was left when the publish ended.
		minFrames := 30
		if i == len(files)-1 {
			minFrames = 1
		}
		if p.Errors != "" || !p.Video || !p.Audio || p.Width != 640 || p.VideoFrames < minFrames {
			t.Errorf("%s: %+v", f.File, p)
		}
		if math.Abs(p.VideoDuration-p.AudioDuration) > 0.1 {
			t.Errorf("%s: video %.3f s, audio %.3f s", f.File, p.VideoDuration, p.AudioDuration)
		}
		total += p.VideoDuration
		if i+1 < len(files) {
			// Wall-clock times are taken as the fragments reach the
			// recorder: the remuxer's scheduling on a busy machine adds
			// tens of milliseconds to what the file says.
			wall := files[i+1].Start.Sub(f.Start).Seconds()
			t.Logf("%s: %.3f s of video, %.3f s of wall clock to the next file", f.File, p.VideoDuration, wall)
			if math.Abs(p.VideoDuration-wall) > 0.1 {
				t.Errorf("%s lasts %.3f s, the wall clock to the next file %.3f s", f.File, p.VideoDuration, wall)
			}
		}
	}
	if total < 17 || total > 21 {
		t.Errorf("%.1f s recorded of a 20 s publish", total)
	}

	// Access control: no credential, a wrong one, and a stream name that is
	// not one.
	if status, _, _ := getWith(t, gw.base+"/api/recordings?stream=rec", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /api/recordings without a token: %d", status)
	}
	if status, _, _ := getWith(t, gw.base+"/recordings/rec?from="+strconv.FormatInt(files[0].Start.Unix(), 10), map[string]string{"Authorization": "Bearer wrong-token-0123456789"}); status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Errorf("GET /recordings with a wrong token: %d", status)
	}
	if status, _, _ := getWith(t, gw.base+"/api/recordings?stream=../etc", viewer); status != http.StatusBadRequest {
		t.Errorf("GET /api/recordings?stream=../etc: %d", status)
	}
	if status, _, _ := getWith(t, gw.base+"/recordings/rec?from=yesterday", viewer); status != http.StatusBadRequest {
		t.Errorf("GET /recordings?from=yesterday: %d", status)
	}

	// A time range: from 2.5 s into the second file to 5 s into it.
	from := files[1].Start.Add(2500 * time.Millisecond)
	to := files[1].Start.Add(5 * time.Second)
	url := gw.base + "/recordings/rec?from=" + from.UTC().Format(time.RFC3339Nano) + "&to=" + strconv.FormatFloat(float64(to.UnixNano())/1e9, 'f', 3, 64)
	status, h, clip := getWith(t, url, viewer)
	if status != http.StatusOK || h.Get("Content-Type") != "video/mp4" {
		t.Fatalf("GET %s: %d %s", url, status, h.Get("Content-Type"))
	}
	start, err := time.Parse(time.RFC3339Nano, h.Get("X-Recording-Start"))
	if err != nil {
		t.Fatalf("X-Recording-Start %q: %v", h.Get("X-Recording-Start"), err)
	}
	mediaStart, err := strconv.ParseFloat(h.Get("X-Recording-Media-Start"), 64)
	if err != nil {
		t.Fatalf("X-Recording-Media-Start %q: %v", h.Get("X-Recording-Media-Start"), err)
	}
	t.Logf("clip: %d bytes from %v (media %.3f s) to %s", len(clip), start.Sub(files[1].Start), mediaStart, h.Get("X-Recording-End"))
	// A file's time zero is its earliest sample (audio may lead video by a
	// packet): media and wall-clock offsets agree within that.
	if start.After(from) || start.Before(files[1].Start) || math.Abs(mediaStart-start.Sub(files[1].Start).Seconds()) > 0.05 {
		t.Errorf("clip starts %v into the file (media %.3f s), want the keyframe at or before 2.5 s", start.Sub(files[1].Start), mediaStart)
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, clip, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := fmp4check.Probe(path); err != nil || p.Errors != "" || !p.Video || !p.Audio {
		t.Errorf("clip: %+v %v", p, err)
	}
	// Ranges: what a player or a download manager asks for.
	viewerRange := map[string]string{"Authorization": "Bearer " + viewToken, "Range": "bytes=100-1099"}
	status, h, part := getWith(t, url, viewerRange)
	if status != http.StatusPartialContent || !bytes.Equal(part, clip[100:1100]) || h.Get("Content-Range") != "bytes 100-1099/"+strconv.Itoa(len(clip)) {
		t.Errorf("Range bytes=100-1099: %d, %d bytes, Content-Range %q", status, len(part), h.Get("Content-Range"))
	}
	// Long before the recording: nothing.
	if status, _, _ := getWith(t, gw.base+"/recordings/rec?from=1000000000", viewer); status != http.StatusNotFound {
		t.Errorf("a time with no recording: %d", status)
	}
	m, _ := scrape(t, gw.base+"/metrics", map[string]string{"Authorization": "Bearer " + gw.token})
	if m["gateway_recording_files_total"] != float64(len(files)) || m["gateway_recording_bytes_total"] <= 0 || m["gateway_recording_streams"] != 0 {
		t.Errorf("recording metrics: files %v bytes %v streams %v", m["gateway_recording_files_total"], m["gateway_recording_bytes_total"], m["gateway_recording_streams"])
	}
}

// TestRecordingKilled: a gateway killed with SIGKILL while recording
// leaves every file playable: the finished ones whole, the open one up to
// its last complete fragment (each fragment is written with one write).
func TestRecordingKilled(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	dir := t.TempDir()
	child := startChildGateway(t, "", "rec", childRecordEnv+"="+dir)
	video, audio := testMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := whipclient.Publish(ctx, whipclient.Options{URL: child.base + "/whip/killed", Video: video, Audio: audio, FPS: 30, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Files of 2 s: after 5 s of media, two are done and one is open.
	var files []string
	eventually(t, "three recording files", 30*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "killed", "*.mp4"))
		return len(files) >= 3
	})
	time.Sleep(700 * time.Millisecond) // into the open file
	child.kill()
	files, _ = filepath.Glob(filepath.Join(dir, "killed", "*.mp4"))
	var total float64
	for _, f := range files {
		p, err := fmp4check.Probe(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", filepath.Base(f), p)
		if p.Errors != "" || !p.Video || p.VideoFrames == 0 {
			t.Errorf("%s after SIGKILL: %+v", filepath.Base(f), p)
		}
		total += p.VideoDuration
	}
	if total < 4 {
		t.Errorf("%.2f s of video left after SIGKILL in %d files", total, len(files))
	}
}

// TestRecordingInCluster: every node records (stream_defaults.record), a
// stream is published on A and watched on B: only A, the node its
// publisher feeds, records it; B, relaying it, does not.
func TestRecordingInCluster(t *testing.T) {
	nats := startNATS(t)
	dirs := map[string]string{"a": t.TempDir(), "b": t.TempDir()}
	node := func(id string) *testGateway {
		return clusterNode(t, nats, id, func(c *configs.Config) {
			c.StreamDefaults.Record = true
			c.Record.Path = filepath.Join(dirs[id], "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
			c.Record.SegmentDuration = time.Second
		})
	}
	a, b := node("a"), node("b")
	video, audio := testMedia(t)
	publish(t, a, "both", video, audio)
	v := watch(t, b, "both")
	v.expectInit(20 * time.Second)
	if segs, stop := v.collect(3 * time.Second); len(segs) == 0 || stop != nil {
		t.Fatalf("viewer on b: %d segments, %+v", len(segs), stop)
	}
	onA, _ := filepath.Glob(filepath.Join(dirs["a"], "both", "*.mp4"))
	onB, _ := filepath.Glob(filepath.Join(dirs["b"], "both", "*.mp4"))
	if len(onA) == 0 || len(onB) != 0 {
		t.Errorf("files on a (the origin): %d, on b (relaying): %d; want some and none", len(onA), len(onB))
	}
}

// TestRecordingNamedNode: with record.node set to b, a stream published on
// a is recorded by b (which follows it with no viewer) and not by a.
func TestRecordingNamedNode(t *testing.T) {
	nats := startNATS(t)
	dirs := map[string]string{"a": t.TempDir(), "b": t.TempDir()}
	node := func(id string) *testGateway {
		return clusterNode(t, nats, id, func(c *configs.Config) {
			c.StreamDefaults.Record = true
			c.Record.Node = "b"
			c.Record.Path = filepath.Join(dirs[id], "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
			c.Record.SegmentDuration = time.Second
		})
	}
	a, _ := node("a"), node("b")
	video, audio := testMedia(t)
	publish(t, a, "named", video, audio)
	var onB []string
	eventually(t, "b recording a stream published on a", 30*time.Second, func() bool {
		onB, _ = filepath.Glob(filepath.Join(dirs["b"], "named", "*.mp4"))
		return len(onB) >= 2
	})
	onA, _ := filepath.Glob(filepath.Join(dirs["a"], "named", "*.mp4"))
	if len(onA) != 0 {
		t.Errorf("a, where the stream is published, recorded %d files though record.node is b", len(onA))
	}
	fmp4check.RequireFFmpeg(t)
	p, err := fmp4check.Probe(onB[0])
	if err != nil || p.Errors != "" || !p.Video || !p.Audio {
		t.Errorf("b's first file: %+v %v", p, err)
	}
}
