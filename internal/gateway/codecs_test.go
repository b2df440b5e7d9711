package gateway_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// codecMedia loads one of the checked-in 640x360 30 fps files (keyframe
// every 30 frames; made with ffmpeg: libvpx-vp9, libaom-av1, libx265).
func codecMedia(t *testing.T, file string) (string, []mediafile.AccessUnit) {
	t.Helper()
	mime, aus, err := whipclient.ReadVideo(filepath.Join(repoRoot(t), "testdata/media", file))
	if err != nil {
		t.Fatal(err)
	}
	return mime, aus
}

func publishCodec(t *testing.T, gw *testGateway, stream, mime string, video []mediafile.AccessUnit, audio [][]byte, imp *whipclient.Impairment) *whipclient.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := whipclient.Publish(ctx, whipclient.Options{
		URL: gw.base + "/whip/" + stream, Video: video, VideoCodec: mime, Audio: audio, FPS: 30,
		LoopbackOnly: true, Impair: imp,
	})
	if err != nil {
		t.Fatalf("publish %s (%s): %v", stream, mime, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestCodecsEndToEnd publishes real VP9, AV1 and H.265 streams (with Opus)
// from a Pion WHIP client to a gateway on loopback: the viewer's init names
// the codec string built from the bitstream and the picture size, and what
// the viewer receives decodes with ffmpeg, every frame, no error line, with
// MSE-continuous decode times.
func TestCodecsEndToEnd(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	_, audio := testMedia(t)
	for _, tc := range []struct {
		file, prefix string
		codec        string
	}{
		{"vp9_640x360_30fps.ivf", "vp09.", "vp09.00.21.08"},
		{"av1_640x360_30fps.ivf", "av01.", "av01.0.01M.08.0.110.02.02.02.0"},
		{"h265_640x360_30fps.h265", "hvc1.", "hvc1.1.6.L63.90"},
	} {
		t.Run(tc.prefix[:4], func(t *testing.T) {
			gw := startGateway(t, nil)
			mime, video := codecMedia(t, tc.file)
			name := "codec-" + tc.prefix[:4]
			v := watch(t, gw, name)
			v.expectControl("waiting", 5*time.Second)
			pub := publishCodec(t, gw, name, mime, video, audio, nil)
			ctl, init := v.expectInit(10 * time.Second)
			want := `video/mp4; codecs="` + tc.codec + `,opus"`
			if ctl.MIME != want {
				t.Errorf("init mime %q, want %q", ctl.MIME, want)
			}
			if len(ctl.Tracks) != 2 || ctl.Tracks[0].Width != 640 || ctl.Tracks[0].Height != 360 ||
				!strings.HasPrefix(ctl.Tracks[0].Codec, tc.prefix) || ctl.Tracks[1].Codec != "opus" {
				t.Fatalf("tracks %+v", ctl.Tracks)
			}
			segs, stop := v.collect(2500 * time.Millisecond)
			if stop != nil {
				t.Fatalf("unexpected %+v", stop)
			}
			if status := pub.Close(); status != http.StatusOK {
				t.Fatalf("DELETE: %d", status)
			}
			_, tail := v.expectControl("eos", 10*time.Second)
			segs = append(segs, tail...)
			n := checkPlayable(t, name, init, segs)
			// Progress, not speed: ~75 frames were sent in 2.5 s.
			if n < 30 {
				t.Fatalf("%d video frames in 2.5 s", n)
			}
			t.Logf("%s: %d video frames decoded by ffmpeg, %d segments", tc.codec, n, len(segs))
		})
	}
}
