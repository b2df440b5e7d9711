package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"time"
)

// phaseResult is one phase's figures.
type phaseResult struct {
	Target             string     `json:"target"`
	LoadAvg            [2]float64 `json:"loadAvg1m"`       // at start, at end
	CPUIdlePct         float64    `json:"cpuIdlePct"`      // server CPU before viewers (% of one core)
	CPUPct             float64    `json:"cpuPct"`          // server CPU in the window
	CPUPerViewerPct    float64    `json:"cpuPerViewerPct"` // (cpuPct - cpuIdlePct) / viewers
	ClientCPUPct       float64    `json:"clientCpuPct"`    // the load tool's own CPU in the window
	RSSBaseKiB         int64      `json:"rssBaseKiB"`      // server RSS before viewers
	RSSKiB             int64      `json:"rssKiB"`          // at the end of the window
	RSSPerViewerKiB    float64    `json:"rssPerViewerKiB"` // (rss - base) / (viewers + slow)
	Connected          int        `json:"connected"`       // viewers that got a media segment
	Errors             int        `json:"errors"`          // viewers with an error
	ErrorSamples       []string   `json:"errorSamples,omitempty"`
	LatencyMs          latStats   `json:"latencyMs"` // all stamped video frames of all viewers in the window
	ViewersP99Under20  int        `json:"viewersP99Under20ms"`
	ViewersP99Under50  int        `json:"viewersP99Under50msNoSkips"` // and zero skipped frames
	TTFFMs             latStats   `json:"ttffMs"`
	Frames             int        `json:"frames"`           // video frames received in the window, all viewers
	FramesPerViewer    [2]int     `json:"framesPerViewer"`  // min, max
	SkippedFrames      int        `json:"skippedFrames"`    // missed by a viewer, not by its whole stream
	ViewersWithSkips   int        `json:"viewersWithSkips"` // viewers that missed frames their stream had
	StreamGapFrames    int        `json:"streamGapFrames"`  // frames missing for every viewer of a stream (publisher or ingest)
	UnstampedFrames    int        `json:"unstampedFrames"`
	ThroughputKbps     [2]float64 `json:"throughputKbps"` // min, mean per viewer
	SlowClosed         int        `json:"slowClosedByServer,omitempty"`
	SlowErrorMessages  int        `json:"slowGotError,omitempty"`
	SlowClosedAfterSec []float64  `json:"slowClosedAfterS,omitempty"`
}

type latStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// pct returns the q quantile of sorted a (nearest rank).
func pct(a []uint32, q float64) uint32 {
	if len(a) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(a)))) - 1
	return a[min(max(i, 0), len(a)-1)]
}

func statsUS(a []uint32) latStats {
	slices.Sort(a)
	ms := func(v uint32) float64 { return math.Round(float64(v)/10) / 100 }
	return latStats{P50: ms(pct(a, .5)), P95: ms(pct(a, .95)), P99: ms(pct(a, .99)), Max: ms(pct(a, 1)), N: len(a)}
}

func fetchProfile(ctx context.Context, base, path string, d time.Duration) error {
	secs := max(int(d.Seconds())-1, 1)
	client := &http.Client{Timeout: d + 30*time.Second}
	if clientTLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = clientTLS.Clone()
		client.Transport = tr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", base, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
func round4(v float64) float64 { return math.Round(v*10000) / 10000 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round2(a / b)
}

func ratios(g, f *phaseResult) map[string]any {
	return map[string]any{
		"cpuPerViewer":      ratio(g.CPUPerViewerPct, f.CPUPerViewerPct),
		"cpu":               ratio(g.CPUPct, f.CPUPct),
		"rssPerViewer":      ratio(g.RSSPerViewerKiB, f.RSSPerViewerKiB),
		"latencyP50":        ratio(g.LatencyMs.P50, f.LatencyMs.P50),
		"latencyP99":        ratio(g.LatencyMs.P99, f.LatencyMs.P99),
		"viewersP99Under50": ratio(float64(g.ViewersP99Under50), float64(f.ViewersP99Under50)),
	}
}

func (r *report) writeText(w io.Writer) {
	if r.Ingest != nil {
		r.Ingest.writeText(w, r)
		return
	}
	if r.Cluster != nil {
		fmt.Fprintf(w, "loadtest %s: cluster of %d nodes, %d viewers on the edges, %d on the origin, %d stream(s), audio %v, window %.0fs\n",
			r.Time, r.Cluster.Nodes, r.Viewers, r.Cluster.OriginViewers, r.Streams, r.Audio, r.Duration)
		if r.Cluster.Single != nil {
			writePhase(w, "single node (not clustered)", r.Cluster.Single, r.Cluster.SingleViewers, 0)
		}
		r.Cluster.writeText(w)
		return
	}
	fmt.Fprintf(w, "loadtest %s: %d viewers on %d stream(s), %d slow (%s), audio %v, window %.0fs\n",
		r.Time, r.Viewers, r.Streams, r.Slow, r.SlowMode, r.Audio, r.Duration)
	for _, p := range []struct {
		name string
		r    *phaseResult
	}{{"gateway", r.Gateway}, {"floor", r.Floor}} {
		if p.r != nil {
			writePhase(w, p.name, p.r, r.Viewers, r.Slow)
		}
	}
	if r.Ratio != nil {
		fmt.Fprintf(w, "gateway / floor: %v\n", r.Ratio)
	}
}

func writePhase(w io.Writer, name string, x *phaseResult, viewers, slow int) {
	fmt.Fprintf(w, "%s (%s), load %.2f -> %.2f\n", name, x.Target, x.LoadAvg[0], x.LoadAvg[1])
	fmt.Fprintf(w, "  server CPU %.2f%% of a core (idle %.2f%%): %.4f%% per viewer; load tool CPU %.2f%%\n", x.CPUPct, x.CPUIdlePct, x.CPUPerViewerPct, x.ClientCPUPct)
	fmt.Fprintf(w, "  server RSS %d KiB (base %d KiB): %.1f KiB per viewer\n", x.RSSKiB, x.RSSBaseKiB, x.RSSPerViewerKiB)
	fmt.Fprintf(w, "  viewers connected %d/%d, errors %d %q\n", x.Connected, viewers, x.Errors, x.ErrorSamples)
	fmt.Fprintf(w, "  latency ms p50 %.2f p95 %.2f p99 %.2f max %.2f (%d frames, %d unstamped)\n", x.LatencyMs.P50, x.LatencyMs.P95, x.LatencyMs.P99, x.LatencyMs.Max, x.LatencyMs.N, x.UnstampedFrames)
	fmt.Fprintf(w, "  viewers with p99 < 20 ms: %d; with p99 < 50 ms and no skipped frame: %d\n", x.ViewersP99Under20, x.ViewersP99Under50)
	fmt.Fprintf(w, "  time to first frame ms p50 %.1f p95 %.1f max %.1f\n", x.TTFFMs.P50, x.TTFFMs.P95, x.TTFFMs.Max)
	fmt.Fprintf(w, "  frames per viewer %d..%d, skipped %d (%d viewers; %d more missing from the streams themselves), throughput kbit/s min %.0f mean %.0f\n", x.FramesPerViewer[0], x.FramesPerViewer[1], x.SkippedFrames, x.ViewersWithSkips, x.StreamGapFrames, x.ThroughputKbps[0], x.ThroughputKbps[1])
	if slow > 0 {
		fmt.Fprintf(w, "  slow viewers closed by the server %d/%d (error message seen by %d), after %v s\n", x.SlowClosed, slow, x.SlowErrorMessages, x.SlowClosedAfterSec)
	}
}
