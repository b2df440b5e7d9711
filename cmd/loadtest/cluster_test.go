package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestMain lets the tool's child servers (-serve-gateway, -serve-nats) run
// from the test binary: startChild re-executes it with childEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestClusterSmall runs the cluster mode briefly: a NATS server and three
// gateways in child processes, a single non-clustered gateway first, 6
// viewers on the two edges and 2 on the origin for ~3 s. It checks that
// it works (edge viewers got frames through the relay, every node has its
// figures, no error), not how fast: figures live in docs/BENCHMARKS.md.
func TestClusterSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 processes and loads them for ~20 s")
	}
	var out bytes.Buffer
	var errb lockedBuffer // the children's stderr is copied in by os/exec's goroutines
	code := run([]string{
		"-cluster", "3", "-viewers", "6", "-origin-viewers", "2", "-duration", "3s", "-ramp", "500ms", "-warmup", "500ms", "-idle", "500ms",
		"-video", "../../testdata/media/h264_1280x720_30fps_2500k.h264", "-audio", "../../testdata/media/opus_48k_stereo.ogg",
		"-log-level", "error",
	}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "cluster phase 1:") || !strings.Contains(out.String(), "target edge TTFF p95") {
		t.Fatalf("text report missing:\n%s", out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rep report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line is not the JSON report: %v\n%s", err, lines[len(lines)-1])
	}
	cr := rep.Cluster
	if cr == nil || cr.Nodes != 3 || cr.Single == nil || cr.SingleViewers != 3 || len(cr.Phases) != 1 || len(cr.Targets) != 5 {
		t.Fatalf("cluster report incomplete: %+v\n%s", cr, out.String())
	}
	if rep.Publisher == nil || rep.Publisher.Frames < 60 {
		t.Errorf("publisher stats: %+v", rep.Publisher)
	}
	if s := cr.Single; s.Connected != 3 || s.Errors != 0 || s.FramesPerViewer[0] < 15 {
		t.Errorf("single node: connected %d, errors %d %q, frames %v", s.Connected, s.Errors, s.ErrorSamples, s.FramesPerViewer)
	}
	ph := cr.Phases[0]
	if len(ph.Nodes) != 3 || ph.NATS.CPUPct < 0 || ph.NATS.RSSKiB <= 0 {
		t.Fatalf("phase: %d nodes, nats %+v", len(ph.Nodes), ph.NATS)
	}
	pids := map[string]bool{ph.NATS.Target: true}
	for i, n := range ph.Nodes {
		want, role := 3, "edge"
		if i == 0 {
			want, role = 2, "origin"
		}
		if n.Node != nodeName(i) || n.Role != role || n.Viewers != want || pids[n.Target] {
			t.Errorf("node %d: %s %s, %d viewers, target %s", i, n.Node, n.Role, n.Viewers, n.Target)
		}
		pids[n.Target] = true
		if n.Connected != want || n.Errors != 0 {
			t.Errorf("%s: connected %d of %d, errors %d %q", n.Node, n.Connected, want, n.Errors, n.ErrorSamples)
		}
		// Progress, not speed (see TestLoadSmall).
		if n.FramesPerViewer[0] < 15 || n.LatencyMs.N != n.Frames || n.UnstampedFrames != 0 || n.TTFFMs.N != want {
			t.Errorf("%s: frames %v (%d), latency %+v, unstamped %d, TTFF %+v", n.Node, n.FramesPerViewer, n.Frames, n.LatencyMs, n.UnstampedFrames, n.TTFFMs)
		}
		if n.SkippedFrames > n.Frames/4 {
			t.Errorf("%s: %d frames skipped of %d", n.Node, n.SkippedFrames, n.Frames)
		}
		if n.CPUPct <= 0 || n.RSSKiB <= 0 || n.Relay == nil {
			t.Errorf("%s: CPU %v%%, RSS %d KiB, relay %v", n.Node, n.CPUPct, n.RSSKiB, n.Relay)
		}
		if i == 0 {
			if n.Relay[`messages_total{dir="out"}`] < 15 {
				t.Errorf("origin relayed %v messages", n.Relay)
			}
			continue
		}
		if n.Relay[`messages_total{dir="in"}`] < 15 || n.Relay["followed_streams"] != 1 {
			t.Errorf("%s: relay %v", n.Node, n.Relay)
		}
		if n.ColdTTFFMs <= 0 || n.HopMs == nil || n.HopMs.N == 0 || n.OverOriginMs == nil || n.OverOriginMs.N == 0 || n.AddedP99Ms == nil {
			t.Errorf("%s: cold TTFF %v, hop %+v, over origin %+v, added p99 %v", n.Node, n.ColdTTFFMs, n.HopMs, n.OverOriginMs, n.AddedP99Ms)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
