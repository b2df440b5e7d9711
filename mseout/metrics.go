package mseout

import (
	"sort"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry's counters, read at scrape time by the
// registry's Collector: the hot paths only add to atomics (or to fields
// under a lock they already hold), never call into Prometheus.
type metrics struct {
	publishes     atomic.Int64
	viewersJoined atomic.Int64
	segments      atomic.Int64
	segmentBytes  atomic.Int64
	messagesSent  atomic.Int64
	writes        atomic.Int64
	directWrites  atomic.Int64
	statsIgnored  atomic.Int64

	viewersRefusedPerIP atomic.Int64
	disconnects         [numLeaveReasons]atomic.Int64 // by leaveReason
	bytesSent           atomic.Int64
	viewerSkips         atomic.Int64
	viewersDropped      atomic.Int64
	keyframeAsks        atomic.Int64

	// what viewers report (stats messages, at most 4 a second a viewer)
	decodedFrames atomic.Int64
	droppedFrames atomic.Int64
	stalls        atomic.Int64
	stallMicros   atomic.Int64 // stall time, in microseconds

	// Observed once per viewer (ttff) or per stats message taken: never per
	// segment or per write.
	ttff         prometheus.Histogram
	latency      prometheus.Histogram
	buffered     prometheus.Histogram
	droppedRatio prometheus.Histogram
}

// initHistograms makes the histograms (NewRegistry).
func (m *metrics) initHistograms() {
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	}
	secs := []float64{0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10}
	m.ttff = h("gateway_viewer_ttff_seconds",
		"Time to first frame: from a viewer's WebSocket upgrade to the first write of media to it (init and first fragment), a wait for a publisher included.",
		[]float64{0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30})
	m.latency = h("gateway_viewer_latency_seconds", "Latency behind the live edge the viewers report (stats messages).", secs)
	m.buffered = h("gateway_viewer_buffered_seconds", "Media buffered ahead of the playhead the viewers report (stats messages).", secs)
	m.droppedRatio = h("gateway_viewer_dropped_frames_ratio",
		"Share of frames the viewer's player dropped between two of its reports (getVideoPlaybackQuality), per report with frames decoded.",
		[]float64{0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1})
}

// observeStats records a viewer's report st, prev being its previous one (nil
// for the first). Frame counts are the player's totals: what they grew by is
// counted (a player that restarted counts from zero again).
func (m *metrics) observeStats(st, prev *ViewerStats) {
	m.latency.Observe(st.Latency)
	m.buffered.Observe(st.Buffered)
	dec, drop := st.DecodedFrames, st.DroppedFrames
	if prev != nil && prev.DecodedFrames <= dec && prev.DroppedFrames <= drop {
		dec, drop = dec-prev.DecodedFrames, drop-prev.DroppedFrames
	}
	m.decodedFrames.Add(dec)
	m.droppedFrames.Add(drop)
	stalls, stallTime := st.Stalls, st.StallTime
	if prev != nil && prev.Stalls <= stalls && prev.StallTime <= stallTime {
		stalls, stallTime = stalls-prev.Stalls, stallTime-prev.StallTime
	}
	m.stalls.Add(stalls)
	m.stallMicros.Add(int64(stallTime * 1e6))
	if dec > 0 {
		m.droppedRatio.Observe(min(float64(drop)/float64(dec), 1))
	}
}

// metric descriptions of the registry's collector
var (
	descStreams       = prometheus.NewDesc("gateway_streams", "Streams with a publisher or viewers.", nil, nil)
	descStreamsLive   = prometheus.NewDesc("gateway_streams_live", "Streams with a publisher.", nil, nil)
	descViewers       = prometheus.NewDesc("gateway_viewers", "Connected viewers.", nil, nil)
	descLiveByCodec   = prometheus.NewDesc("gateway_streams_live_by_codec", "Live streams by track kind (video, audio) and codec (h264, h265, vp9, av1, opus, ...).", []string{"kind", "codec"}, nil)
	descLiveByProto   = prometheus.NewDesc("gateway_publications_live", "Live streams by publisher protocol: whip, ws (WebSocket signaling), local (a local source), relay (another node of the cluster).", []string{"protocol"}, nil)
	descLiveByKind    = prometheus.NewDesc("gateway_publishers_by_kind", "Live streams by who publishes them: browser, whip (a WHIP client other than a browser: OBS, GStreamer, ffmpeg), agent (the capture agent), local (a local source), remote (another node of the cluster).", []string{"kind"}, nil)
	descDisconnects   = prometheus.NewDesc("gateway_viewer_disconnects_total", "Viewers that left, by why.", []string{"reason"}, nil)
	descStreamViewers = prometheus.NewDesc("gateway_stream_viewers", "Connected viewers of a live stream (metrics.per_stream).", []string{"stream"}, nil)
	descStreamSegs    = prometheus.NewDesc("gateway_stream_segments_total", "Media segments produced for a live stream since its hub was made (metrics.per_stream).", []string{"stream"}, nil)
	descStreamBytes   = prometheus.NewDesc("gateway_stream_segment_bytes_total", "Bytes of media segments produced for a live stream since its hub was made (metrics.per_stream).", []string{"stream"}, nil)
)

// counters of the registry's collector: one sample each, no labels
var registryCounters = []struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	v    func(*metrics) int64
}{
	{prometheus.NewDesc("gateway_publishes_total", "Publishes started.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.publishes.Load() }},
	{prometheus.NewDesc("gateway_viewers_joined_total", "Viewers that joined.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.viewersJoined.Load() }},
	{prometheus.NewDesc("gateway_segments_total", "Media segments produced (once per stream).", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.segments.Load() }},
	{prometheus.NewDesc("gateway_segment_bytes_total", "Bytes of media segments produced.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.segmentBytes.Load() }},
	{prometheus.NewDesc("gateway_viewer_messages_total", "WebSocket messages written to viewers.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.messagesSent.Load() }},
	{prometheus.NewDesc("gateway_viewer_writes_total", "Socket writes to viewers (one writev may carry several messages).", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.writes.Load() }},
	{prometheus.NewDesc("gateway_viewers_refused_per_ip_total", "Viewers refused because their address had limits.max_viewers_per_ip sockets open.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.viewersRefusedPerIP.Load() }},
	{prometheus.NewDesc("gateway_viewer_stats_ignored_total", "Viewer stats messages ignored: faster than one per 250 ms, or with numbers no player measures.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.statsIgnored.Load() }},
	{prometheus.NewDesc("gateway_viewer_direct_writes_total", "Writes to viewers made by the fan-out itself without blocking (the rest went through a viewer's writer goroutine).", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.directWrites.Load() }},
	{prometheus.NewDesc("gateway_viewer_bytes_total", "Bytes written to viewers.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.bytesSent.Load() }},
	{prometheus.NewDesc("gateway_viewer_skips_total", "Times a viewer fell behind and skipped to the next keyframe.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.viewerSkips.Load() }},
	{prometheus.NewDesc("gateway_viewers_dropped_total", "Viewers disconnected for being too far behind.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.viewersDropped.Load() }},
	{prometheus.NewDesc("gateway_keyframe_requests_total", "Keyframe requests made to publishers by the fan-out.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.keyframeAsks.Load() }},
	{prometheus.NewDesc("gateway_viewer_decoded_frames_total", "Frames the viewers' players decoded, from their reports (getVideoPlaybackQuality).", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.decodedFrames.Load() }},
	{prometheus.NewDesc("gateway_viewer_dropped_frames_total", "Frames the viewers' players dropped, from their reports (getVideoPlaybackQuality).", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.droppedFrames.Load() }},
	{prometheus.NewDesc("gateway_viewer_stalls_total", "Stalls (playback waiting for data) the viewers' players reported.", nil, nil), prometheus.CounterValue, func(m *metrics) int64 { return m.stalls.Load() }},
}

var descStallSeconds = prometheus.NewDesc("gateway_viewer_stall_seconds_total", "Time the viewers' players reported spending in stalls.", nil, nil)

// Collector returns the registry's Prometheus collector. It reads the
// registry's counters and streams when scraped. With perStream, the live
// streams (at most limits.max_streams) also get series of their own,
// labelled by name.
func (r *Registry) Collector(perStream bool) prometheus.Collector {
	return &registryCollector{r: r, perStream: perStream}
}

type registryCollector struct {
	r         *Registry
	perStream bool
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descStreamsLive, descViewers, descLiveByCodec, descLiveByProto, descLiveByKind, descDisconnects} {
		ch <- d
	}
	for _, rc := range registryCounters {
		ch <- rc.desc
	}
	ch <- descStallSeconds
	if c.perStream {
		ch <- descStreamViewers
		ch <- descStreamSegs
		ch <- descStreamBytes
	}
	m := &c.r.metrics
	for _, h := range []prometheus.Histogram{m.ttff, m.latency, m.buffered, m.droppedRatio} {
		h.Describe(ch)
	}
}

// streamSample is what the collector reads of one live hub.
type streamSample struct {
	name               string
	protocol, kind     string
	codecs             [][2]string // kind, codec family
	viewers            int
	segments, segBytes int64
}

func (h *hub) sample() (streamSample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pub == nil {
		return streamSample{}, false
	}
	s := streamSample{name: h.name, protocol: h.pub.info.Protocol, kind: h.pub.info.kind(), viewers: len(h.viewers), segments: h.segments, segBytes: h.segmentBytes}
	if h.init != nil {
		for _, t := range h.init.tracks {
			s.codecs = append(s.codecs, [2]string{t.Kind, codecFamily(t.Codec)})
		}
	}
	return s, true
}

// codecFamily names a codec string (RFC 6381) by its family, so the label
// has a handful of values: avc1.42e01f -> h264.
func codecFamily(codec string) string {
	prefix, _, _ := strings.Cut(codec, ".")
	switch strings.ToLower(prefix) {
	case "avc1", "avc3":
		return "h264"
	case "hvc1", "hev1":
		return "h265"
	case "vp09":
		return "vp9"
	case "vp08", "vp8":
		return "vp8"
	case "av01":
		return "av1"
	case "opus":
		return "opus"
	case "mp4a":
		return "aac"
	}
	return "other"
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	r.mu.Lock()
	streams, viewers := len(r.hubs), r.viewers
	hubs := make([]*hub, 0, len(r.hubs))
	for _, h := range r.hubs {
		hubs = append(hubs, h)
	}
	r.mu.Unlock()
	var live []streamSample
	for _, h := range hubs {
		if s, ok := h.sample(); ok {
			live = append(live, s)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].name < live[j].name })
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(descStreams, streams)
	gauge(descStreamsLive, len(live))
	gauge(descViewers, viewers)
	byCodec := map[[2]string]int{}
	byProto, byKind := map[string]int{}, map[string]int{}
	for _, s := range live {
		for _, kc := range s.codecs {
			byCodec[kc]++
		}
		byProto[s.protocol]++
		byKind[s.kind]++
	}
	for kc, n := range byCodec {
		gauge(descLiveByCodec, n, kc[0], kc[1])
	}
	for p, n := range byProto {
		gauge(descLiveByProto, n, p)
	}
	for k, n := range byKind {
		gauge(descLiveByKind, n, k)
	}
	m := &r.metrics
	for _, rc := range registryCounters {
		ch <- prometheus.MustNewConstMetric(rc.desc, rc.typ, float64(rc.v(m)))
	}
	ch <- prometheus.MustNewConstMetric(descStallSeconds, prometheus.CounterValue, float64(m.stallMicros.Load())/1e6)
	for i := range numLeaveReasons {
		ch <- prometheus.MustNewConstMetric(descDisconnects, prometheus.CounterValue, float64(m.disconnects[i].Load()), leaveReason(i).String())
	}
	if c.perStream {
		// Bounded: a stream is live only under limits.max_streams.
		for _, s := range live[:min(len(live), max(r.limits().MaxStreams, 1))] {
			gauge(descStreamViewers, s.viewers, s.name)
			ch <- prometheus.MustNewConstMetric(descStreamSegs, prometheus.CounterValue, float64(s.segments), s.name)
			ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.CounterValue, float64(s.segBytes), s.name)
		}
	}
	for _, h := range []prometheus.Histogram{m.ttff, m.latency, m.buffered, m.droppedRatio} {
		h.Collect(ch)
	}
}
