package mseout

import (
	"strings"
	"testing"

	"github.com/mseway/mseway/internal/testkit/promtext"
)

func TestCodecFamily(t *testing.T) {
	for codec, want := range map[string]string{
		"avc1.42e01f": "h264", "avc3.640028": "h264", "hvc1.1.6.L93.B0": "h265", "vp09.00.31.08": "vp9",
		"av01.0.08M.08": "av1", "opus": "opus", "mp4a.40.2": "aac", "": "other", "xyz": "other",
	} {
		if got := codecFamily(codec); got != want {
			t.Errorf("codecFamily(%q) = %q, want %q", codec, got, want)
		}
	}
}

// TestObserveStats: frame counts are the player's totals; what they grew by
// is counted, and a player that restarted counts from zero again.
func TestObserveStats(t *testing.T) {
	r := NewRegistry(Options{})
	m := &r.metrics
	reports := []ViewerStats{
		{Latency: 0.5, DecodedFrames: 100, DroppedFrames: 2},
		{Latency: 0.6, DecodedFrames: 130, DroppedFrames: 5},
		{Latency: 0.4, DecodedFrames: 20, DroppedFrames: 0}, // the player restarted
	}
	var prev *ViewerStats
	for i := range reports {
		m.observeStats(&reports[i], prev)
		prev = &reports[i]
	}
	if d, x := m.decodedFrames.Load(), m.droppedFrames.Load(); d != 150 || x != 5 {
		t.Errorf("decoded %d dropped %d, want 150 and 5", d, x)
	}
	text := promtext.Text(t, r.Collector(true))
	for _, want := range []string{"gateway_viewer_latency_seconds_count 3", "gateway_viewer_dropped_frames_ratio_count 3", "gateway_viewer_ttff_seconds_count 0"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
}
