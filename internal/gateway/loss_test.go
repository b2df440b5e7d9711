package gateway_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// TestLossAndReorder publishes through a lossy, reordering network (a
// seeded test interceptor in the publisher drops and delays outgoing RTP,
// retransmissions included): 1% and 5% loss, each with 5% of packets
// overtaken by up to 3 later ones. NACK repairs what it can; what it cannot
// costs frames up to the next keyframe, which the gateway requests with a
// PLI (the publisher then jumps to its next keyframe). The viewer's output
// must decode with ffmpeg with no error line, keep MSE-continuous decode
// times, and never stop for longer than one keyframe interval (the files
// have a keyframe every ~1 s). Two more runs drop every retransmission, so
// that each loss costs frames up to the keyframe the gateway requests.
func TestLossAndReorder(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	h264, audio := testMedia(t)
	vp9Mime, vp9 := codecMedia(t, "vp9_640x360_30fps.ivf")
	av1Mime, av1 := codecMedia(t, "av1_640x360_30fps.ivf")
	h265Mime, h265 := codecMedia(t, "h265_640x360_30fps.h265")
	for _, tc := range []struct {
		codec string
		mime  string
		video []mediafile.AccessUnit
		loss  float64
		seed  int64
		// noRepair drops every retransmission: each loss costs frames up to
		// a keyframe, which the gateway asks for with a PLI.
		noRepair bool
	}{
		{"h264", "", h264, 0.01, 1, false},
		{"h264", "", h264, 0.05, 2, false},
		{"vp9", vp9Mime, vp9, 0.05, 3, false},
		{"av1", av1Mime, av1, 0.05, 4, false},
		{"h265", h265Mime, h265, 0.01, 5, false},
		{"h264-norepair", "", h264, 0.01, 6, true},
		{"vp9-norepair", vp9Mime, vp9, 0.01, 7, true},
	} {
		name := fmt.Sprintf("%s-loss%.0f%%", tc.codec, tc.loss*100)
		t.Run(name, func(t *testing.T) {
			gw := startGateway(t, nil)
			stream := fmt.Sprintf("lossy-%s-%d", tc.codec, tc.seed)
			v := watch(t, gw, stream)
			v.expectControl("waiting", 5*time.Second)
			imp := &whipclient.Impairment{Loss: tc.loss, Reorder: 0.05, ReorderBy: 3, Seed: tc.seed, NoRepair: tc.noRepair}
			pub := publishCodec(t, gw, stream, tc.mime, tc.video, audio, imp)
			_, init := v.expectInit(15 * time.Second)
			segs, stop := v.collect(5 * time.Second)
			if stop != nil {
				t.Fatalf("unexpected %+v", stop)
			}
			st := pub.ImpairStats()
			if status := pub.Close(); status != http.StatusOK {
				t.Fatalf("DELETE: %d", status)
			}
			_, tail := v.expectControl("eos", 10*time.Second)
			segs = append(segs, tail...)
			if st.Dropped == 0 || st.Reordered == 0 {
				t.Fatalf("the impairment did nothing: %+v", st)
			}
			n := checkPlayable(t, name, init, segs) // ffmpeg: zero error lines; MSE continuity
			gap := maxVideoGap(t, init, segs)
			t.Logf("%s: impairment %+v; %d frames sent, %d decoded by the viewer; %d PLIs; longest picture gap %v",
				name, st, pub.FramesSent(), n, pub.KeyframeRequests(), gap)
			// Progress, not speed: ~150 frames were sent in 5 s.
			if n < 40 {
				t.Fatalf("only %d frames in 5 s", n)
			}
			// Resumption within a keyframe interval after a loss NACK
			// repairs; without repair, a keyframe the PLI asked for may
			// itself lose a packet and take another PLI (throttled to
			// 500 ms): allow for that once.
			limit := 1100 * time.Millisecond
			if tc.noRepair {
				limit = 2 * limit
				if pub.KeyframeRequests() < 2 {
					t.Fatalf("%d PLIs: losses without repair must ask for keyframes", pub.KeyframeRequests())
				}
			}
			if gap > limit {
				t.Fatalf("no picture for %v (limit %v)", gap, limit)
			}
		})
	}
}

// maxVideoGap returns the longest presentation-time gap between consecutive
// video samples the viewer received.
func maxVideoGap(t *testing.T, init []byte, segs [][]byte) time.Duration {
	t.Helper()
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	var last int64 = -1
	for _, seg := range segs {
		ss, err := fmp4check.ParseSegment(in, seg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			tr := in.Tracks[s.TrackID]
			if tr.Kind != "video" {
				continue
			}
			pts := int64(s.DecodeTime) + s.Offset
			if last >= 0 {
				worst = max(worst, time.Duration(pts-last)*time.Second/time.Duration(tr.Timescale))
			}
			last = pts
		}
	}
	return worst
}
