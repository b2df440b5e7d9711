package signaling

import (
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mseway/mseway/remux"
)

// ingestTotals are the ingest and remux counters of WebRTC publishes, summed.
type ingestTotals struct {
	packets, lost, bytes [2]uint64 // video, audio
	plis, nacked         uint64
	errors               [len(remuxErrorKinds)]uint64
}

// remuxErrorKinds label gateway_remux_errors_total, in the order of
// remuxErrors.
var remuxErrorKinds = [...]string{"duplicate", "resync", "video_frame_dropped", "audio_dropped", "out_of_order"}

func remuxErrors(st remux.Stats) [len(remuxErrorKinds)]uint64 {
	return [...]uint64{st.Duplicates, st.Resyncs, st.VideoFramesDropped, st.AudioSamplesDropped, st.VideoOutOfOrder}
}

func (t *ingestTotals) add(st remux.Stats, plis int64, nacked uint64) {
	t.packets[0] += st.VideoPackets
	t.packets[1] += st.AudioPackets
	t.bytes[0] += st.VideoBytes
	t.bytes[1] += st.AudioBytes
	t.nacked += nacked
	t.lost[0] += st.VideoLost
	t.lost[1] += st.AudioLost
	t.plis += uint64(max(plis, 0))
	for i, v := range remuxErrors(st) {
		t.errors[i] += v
	}
}

var (
	descPublishers       = prometheus.NewDesc("gateway_publishers", "Live publish sessions over WebRTC.", nil, nil)
	descPending          = prometheus.NewDesc("gateway_publishers_pending", "Publishes negotiated and not yet connected.", nil, nil)
	descSessions         = prometheus.NewDesc("gateway_webrtc_sessions", "WebRTC publish sessions by state: connecting (negotiated, ICE and DTLS not yet up), connected, disconnected (ICE lost, waiting for it to come back).", []string{"state"}, nil)
	descRefused          = prometheus.NewDesc("gateway_publish_refused_total", "Publisher requests (WHIP, WS signaling) refused, by HTTP status (ws: an error on the publish socket).", []string{"status"}, nil)
	descIngestPackets    = prometheus.NewDesc("gateway_ingest_packets_total", "RTP packets received from WebRTC publishers, by track kind.", []string{"kind"}, nil)
	descIngestLost       = prometheus.NewDesc("gateway_ingest_packets_lost_total", "RTP packets of WebRTC publishers given up as lost (after NACKs and the reorder wait), by track kind.", []string{"kind"}, nil)
	descIngestPLIs       = prometheus.NewDesc("gateway_ingest_plis_total", "Keyframe requests (RTCP PLI) sent to WebRTC publishers.", nil, nil)
	descIngestBytes      = prometheus.NewDesc("gateway_ingest_bytes_total", "RTP payload bytes received from WebRTC publishers, by track kind.", []string{"kind"}, nil)
	descIngestNACKed     = prometheus.NewDesc("gateway_ingest_nacked_packets_total", "RTP packets the gateway asked WebRTC publishers to resend (each sequence number of an RTCP NACK).", nil, nil)
	descRemuxErrors      = prometheus.NewDesc("gateway_remux_errors_total", "What the remuxer of WebRTC publishes discarded or repaired, by kind: duplicate (duplicate or too-late packets), resync (sequence jumps), video_frame_dropped (incomplete or undecodable frames), audio_dropped, out_of_order (frames not presentable at their timestamp).", []string{"kind"}, nil)
	descStreamIngest     = prometheus.NewDesc("gateway_stream_ingest_packets_total", "RTP packets received from a live stream's WebRTC publisher, by track kind (metrics.per_stream).", []string{"stream", "kind"}, nil)
	descStreamIngestLost = prometheus.NewDesc("gateway_stream_ingest_packets_lost_total", "RTP packets of a live stream's WebRTC publisher given up as lost, by track kind (metrics.per_stream).", []string{"stream", "kind"}, nil)
	descStreamBytes      = prometheus.NewDesc("gateway_stream_ingest_bytes_total", "RTP payload bytes received from a live stream's WebRTC publisher, by track kind (metrics.per_stream).", []string{"stream", "kind"}, nil)
	descStreamNACKed     = prometheus.NewDesc("gateway_stream_ingest_nacked_packets_total", "RTP packets the gateway asked a live stream's WebRTC publisher to resend (metrics.per_stream).", []string{"stream"}, nil)
	descStreamJitter     = prometheus.NewDesc("gateway_stream_ingest_jitter_seconds", "Interarrival jitter (RFC 3550) of a live stream's remuxed tracks, as in the gateway's last RTCP receiver report, by track kind (metrics.per_stream).", []string{"stream", "kind"}, nil)
	descStreamRTT        = prometheus.NewDesc("gateway_stream_publisher_rtt_seconds", "Round-trip time to a live stream's WebRTC publisher, from the ICE connectivity checks of the selected candidate pair (metrics.per_stream).", []string{"stream"}, nil)
	kinds                = [2]string{"video", "audio"}
	sessionStates        = [...]string{"connecting", "connected", "disconnected"}
)

const (
	sessionStateConnecting = iota
	sessionStateConnected
	sessionStateDisconnected
)

// Collector returns the Prometheus collector of the publishers: sessions,
// refusals, and the ingest counters of every WebRTC publish, read from the
// sessions when scraped (the RTP path only counts in its own stats). With
// perStream, the live publishes also get series labelled by stream.
func (s *Server) Collector(perStream bool) prometheus.Collector {
	return &serverCollector{s: s, perStream: perStream}
}

type serverCollector struct {
	s         *Server
	perStream bool
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublishers, descPending, descSessions, descRefused, descIngestPackets, descIngestLost,
		descIngestPLIs, descIngestBytes, descIngestNACKed, descRemuxErrors} {
		ch <- d
	}
	if c.perStream {
		for _, d := range []*prometheus.Desc{descStreamIngest, descStreamIngestLost, descStreamBytes, descStreamNACKed, descStreamJitter, descStreamRTT} {
			ch <- d
		}
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	type live struct {
		stream string
		sess   Session
		up     bool // connected: the publish went live
	}
	s.mu.Lock()
	totals := s.ended
	publishing, pending := len(s.sessions)-s.pending, s.pending
	sessions := make([]live, 0, len(s.sessions))
	for _, p := range s.sessions {
		up := false
		select {
		case <-p.live:
			up = true
		default:
		}
		sessions = append(sessions, live{p.stream, p.sess, up})
	}
	s.mu.Unlock()
	var states [len(sessionStates)]int
	type streamFigures struct {
		ingestTotals
		jitter [2]float64 // video, audio; < 0: not known
		rtt    float64    // < 0: not known
	}
	perStream := map[string]*streamFigures{}
	for _, l := range sessions {
		switch {
		case !l.up:
			states[sessionStateConnecting]++
		case l.sess.Connected():
			states[sessionStateConnected]++
		default:
			states[sessionStateDisconnected]++
		}
		st, fb := l.sess.Stats(), l.sess.Feedback()
		totals.add(st, l.sess.KeyframeRequests(), fb.NACKed)
		if c.perStream && l.up {
			// A takeover: two publishes of one name for a moment; the
			// counters add up, the last one measured gives the gauges.
			t := perStream[l.stream]
			if t == nil {
				t = &streamFigures{}
				perStream[l.stream] = t
			}
			t.add(st, 0, fb.NACKed)
			t.jitter = [2]float64{fb.VideoJitter, fb.AudioJitter}
			t.rtt = fb.RTT
		}
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descPublishers, float64(publishing))
	gauge(descPending, float64(pending))
	for i, st := range sessionStates {
		gauge(descSessions, float64(states[i]), st)
	}
	var keys []string
	s.refused.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := s.refused.Load(k)
		counter(descRefused, float64(v.(*atomic.Int64).Load()), k)
	}
	for i, k := range kinds {
		counter(descIngestPackets, float64(totals.packets[i]), k)
		counter(descIngestLost, float64(totals.lost[i]), k)
	}
	counter(descIngestPLIs, float64(totals.plis))
	counter(descIngestNACKed, float64(totals.nacked))
	for i, k := range kinds {
		counter(descIngestBytes, float64(totals.bytes[i]), k)
	}
	for i, k := range remuxErrorKinds {
		counter(descRemuxErrors, float64(totals.errors[i]), k)
	}
	for name, t := range perStream {
		for i, k := range kinds {
			counter(descStreamIngest, float64(t.packets[i]), name, k)
			counter(descStreamIngestLost, float64(t.lost[i]), name, k)
			counter(descStreamBytes, float64(t.bytes[i]), name, k)
			if t.jitter[i] >= 0 {
				gauge(descStreamJitter, t.jitter[i], name, k)
			}
		}
		counter(descStreamNACKed, float64(t.nacked), name)
		if t.rtt >= 0 {
			gauge(descStreamRTT, t.rtt, name)
		}
	}
}
