package gateway_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
)

// scrape reads a /metrics answer into series (a name with its labels as the
// text format writes them) -> value, and names every family it declares.
func scrape(t *testing.T, url string, header map[string]string) (series map[string]float64, families map[string]string) {
	t.Helper()
	resp := doGet(t, url, header)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	series, families = map[string]float64{}, map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			families[name] = typ
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", url, line, err)
		}
		series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series, families
}

// TestMetricsMove: the metrics of a real publish and watch are there and
// move: counters rise, gauges show the stream, its codecs and publisher
// kind, the viewer's time to first frame and its reports are observed, the
// Go runtime and process collectors are there; with metrics.per_stream off
// no series is labelled by stream.
func TestMetricsMove(t *testing.T) {
	for _, perStream := range []bool{true, false} {
		t.Run("per_stream="+strconv.FormatBool(perStream), func(t *testing.T) {
			gw := startGateway(t, func(c *configs.Config) { c.Metrics.PerStream = perStream })
			before, families := scrape(t, gw.base+"/metrics", nil)
			for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes",
				"gateway_viewers", "gateway_viewer_ttff_seconds", "gateway_remux_errors_total"} {
				if families[name] == "" {
					t.Errorf("no family %s", name)
				}
			}
			video, audio := testMedia(t)
			publish(t, gw, "cam", video, audio)
			v := watch(t, gw, "cam")
			v.expectInit(10 * time.Second)
			if segs, stop := v.collect(1500 * time.Millisecond); len(segs) == 0 || stop != nil {
				t.Fatalf("viewer: %d segments, %+v", len(segs), stop)
			}
			for i := range 3 { // reports, each more than 250 ms after the last
				stats := `{"type":"stats","latency":0.4,"buffered":0.3,"decodedFrames":` + strconv.Itoa(30*(i+1)) + `,"droppedFrames":` + strconv.Itoa(i) +
					`,"stalls":` + strconv.Itoa(i) + `,"stallTime":` + strconv.Itoa(i) + `.25}`
				if err := v.c.SendText(stats); err != nil {
					t.Fatal(err)
				}
				v.collect(300 * time.Millisecond)
			}
			after, _ := scrape(t, gw.base+"/metrics", nil)
			for _, s := range []string{
				"gateway_segments_total", "gateway_segment_bytes_total", "gateway_viewer_bytes_total", "gateway_viewer_messages_total",
				"gateway_viewer_writes_total", "gateway_viewers_joined_total", "gateway_publishes_total",
				`gateway_ingest_packets_total{kind="video"}`, `gateway_ingest_packets_total{kind="audio"}`,
				"gateway_viewer_ttff_seconds_count", "gateway_viewer_latency_seconds_count", "gateway_viewer_buffered_seconds_count",
				"gateway_viewer_decoded_frames_total", "gateway_viewer_dropped_frames_total", "gateway_viewer_dropped_frames_ratio_count",
				`gateway_ingest_bytes_total{kind="video"}`, `gateway_ingest_bytes_total{kind="audio"}`,
				"gateway_viewer_stalls_total", "gateway_viewer_stall_seconds_total",
				"process_cpu_seconds_total",
			} {
				if after[s] <= before[s] {
					t.Errorf("%s did not rise: %v -> %v", s, before[s], after[s])
				}
			}
			for s, want := range map[string]float64{
				"gateway_streams_live": 1, "gateway_viewers": 1, "gateway_publishers": 1,
				`gateway_streams_live_by_codec{codec="h264",kind="video"}`: 1, `gateway_streams_live_by_codec{codec="opus",kind="audio"}`: 1,
				`gateway_publications_live{protocol="whip"}`: 1, `gateway_webrtc_sessions{state="connected"}`: 1,
				"gateway_viewer_ttff_seconds_count": 1, "gateway_viewer_latency_seconds_count": 3,
				"gateway_viewer_decoded_frames_total": 90, "gateway_viewer_dropped_frames_total": 2,
				"gateway_viewer_stalls_total": 2, "gateway_viewer_stall_seconds_total": 2.25,
				`gateway_publishers_by_kind{kind="whip"}`: 1, "gateway_ingest_nacked_packets_total": 0,
			} {
				if after[s] != want {
					t.Errorf("%s = %v, want %v", s, after[s], want)
				}
			}
			if ttff := after["gateway_viewer_ttff_seconds_sum"]; ttff <= 0 || ttff > 10 {
				t.Errorf("ttff sum %v s", ttff)
			}
			var labelled []string
			for s := range after {
				if strings.Contains(s, `stream="`) {
					labelled = append(labelled, s)
				}
			}
			if !perStream {
				if len(labelled) > 0 {
					t.Errorf("metrics.per_stream off, yet %v", labelled)
				}
				return
			}
			if after[`gateway_stream_viewers{stream="cam"}`] != 1 || after[`gateway_stream_segments_total{stream="cam"}`] == 0 ||
				after[`gateway_stream_segment_bytes_total{stream="cam"}`] == 0 || after[`gateway_stream_ingest_packets_total{kind="video",stream="cam"}`] == 0 ||
				after[`gateway_stream_ingest_bytes_total{kind="audio",stream="cam"}`] == 0 {
				t.Errorf("per-stream series: %v", labelled)
			}
			// Jitter comes with the first receiver report (1 s), the
			// round-trip time with the first ICE check answered.
			eventually(t, "per-stream jitter and round-trip time", 20*time.Second, func() bool {
				m, _ := scrape(t, gw.base+"/metrics", nil)
				_, jv := m[`gateway_stream_ingest_jitter_seconds{kind="video",stream="cam"}`]
				_, ja := m[`gateway_stream_ingest_jitter_seconds{kind="audio",stream="cam"}`]
				rtt := m[`gateway_stream_publisher_rtt_seconds{stream="cam"}`]
				_, nacked := m[`gateway_stream_ingest_nacked_packets_total{stream="cam"}`]
				return jv && ja && nacked && rtt > 0 && rtt < 1
			})
		})
	}
}
