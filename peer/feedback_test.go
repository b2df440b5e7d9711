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
	video, audio := testMedia(t)
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

// TestTWCCFeedbackToPublisher: a publisher that stamps transport-wide
// sequence numbers on its packets, as browsers do, gets congestion-control
// feedback about ten times a second, reporting the packets the gateway
// received.
func TestTWCCFeedbackToPublisher(t *testing.T) {
	url, sessions := serveWHIP(t, discardSink{})
	video, audio := testMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := whipclient.Publish(ctx, whipclient.Options{URL: url + "/whip/x", Video: video, Audio: audio, LoopbackOnly: true, Lightweight: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sess := <-sessions
	defer sess.Close()
	var fb int64
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if fb, _ = pub.TransportFeedback(); fb >= 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fb < 20 {
		t.Fatalf("%d TWCC feedback packets in 20 s, want one every 100 ms", fb)
	}
	// Every packet the gateway read by now is in the feedback a few
	// intervals later, and none it has not read.
	st := sess.Stats()
	before := int64(st.VideoPackets + st.AudioPackets)
	var reported int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if fb, reported = pub.TransportFeedback(); reported >= before {
			break
		}
	}
	st = sess.Stats()
	after := int64(st.VideoPackets + st.AudioPackets)
	t.Logf("%d feedback packets report %d packets; the gateway had read %d, then %d", fb, reported, before, after)
	// A packet is recorded just before the remuxer counts it: a loaded
	// machine may report a few not counted yet.
	if reported < before || reported > after+50 {
		t.Errorf("feedback reports %d packets received, want between %d and %d (the gateway's count before and after)", reported, before, after)
	}
}

// testMedia reads the 640x360 H.264 and the Opus test files.
func testMedia(t *testing.T) (video []mediafile.AccessUnit, audio [][]byte) {
	t.Helper()
	video, err := mediafile.ReadH264(filepath.Join("..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	audio, err = mediafile.ReadOggOpus(filepath.Join("..", "testdata", "media", "opus_48k_stereo.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	return video, audio
}
