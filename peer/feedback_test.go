package peer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/remux"
)

type discardSink struct{}

func (discardSink) WriteInit(*remux.Init)       {}
func (discardSink) WriteSegment(*remux.Segment) {}

// TestFeedback: a real publisher over a lossy loopback link. The session
// reports the NACKs it sent, the jitter of both tracks from its receiver
// reports, the ICE round-trip time, and the payload bytes received; a
// clean link NACKs nothing.
func TestFeedback(t *testing.T) {
	url, sessions := serveWHIP(t, discardSink{})
	video, err := mediafile.ReadH264(filepath.Join("..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	audio, err := mediafile.ReadOggOpus(filepath.Join("..", "testdata", "media", "opus_48k_stereo.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		impair *whipclient.Impairment
	}{
		{"clean", nil},
		{"lossy", &whipclient.Impairment{Loss: 0.05, Seed: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			pub, err := whipclient.Publish(ctx, whipclient.Options{URL: url + "/whip/x", Video: video, Audio: audio, LoopbackOnly: true, Impair: tc.impair})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			sess := <-sessions
			defer sess.Close()
			// Receiver reports go out every second; ICE checks every few.
			var f peer.Feedback
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				f = sess.Feedback()
				if f.VideoJitter >= 0 && f.AudioJitter >= 0 && f.RTT > 0 && (tc.impair == nil || f.NACKed > 0) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			st := sess.Stats()
			t.Logf("%+v; video %d packets %d bytes, audio %d packets %d bytes", f, st.VideoPackets, st.VideoBytes, st.AudioPackets, st.AudioBytes)
			if f.VideoJitter < 0 || f.AudioJitter < 0 {
				t.Errorf("jitter not known after 30 s: video %v, audio %v", f.VideoJitter, f.AudioJitter)
			}
			if f.VideoJitter > 1 || f.AudioJitter > 1 {
				t.Errorf("jitter of a loopback link over a second: video %v s, audio %v s", f.VideoJitter, f.AudioJitter)
			}
			if f.RTT <= 0 || f.RTT > 1 {
				t.Errorf("ICE round-trip time %v s, want measured and under a second on loopback", f.RTT)
			}
			if tc.impair != nil && f.NACKed == 0 {
				t.Errorf("5%% loss and no NACK counted")
			}
			if tc.impair == nil && f.NACKed != 0 {
				t.Errorf("%d packets NACKed on a clean loopback link", f.NACKed)
			}
			if st.VideoBytes <= st.VideoPackets*100 || st.AudioBytes < st.AudioPackets*10 {
				t.Errorf("payload bytes not counted: video %d bytes in %d packets, audio %d bytes in %d packets", st.VideoBytes, st.VideoPackets, st.AudioBytes, st.AudioPackets)
			}
		})
	}
}
