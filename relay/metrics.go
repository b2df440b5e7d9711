package relay

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what an Origin and an Edge do. A node that runs both gives
// them the same Metrics (OriginOptions.Metrics, EdgeOptions.Metrics) and
// registers it once: every metric family then appears once in the
// exposition. The zero value is ready to use; it is a prometheus.Collector
// that reads the counters when scraped.
type Metrics struct {
	messagesOut, messagesIn   atomic.Int64 // relay messages (a split one counts once)
	bytesOut, bytesIn         atomic.Int64 // wire bytes, headers included
	snapshotsOut, snapshotsIn atomic.Int64 // served by an origin / applied by an edge
	gaps                      atomic.Int64 // edge: losses seen (seq jump, epoch without its init)
	dropped                   atomic.Int64 // origin: messages dropped on queue overflow
	followed                  atomic.Int64 // edge: streams followed (gauge)
}

var (
	descMessages  = prometheus.NewDesc("gateway_relay_messages_total", "Relay messages published to other nodes (out) or received from an origin (in); a message split over several NATS messages counts once.", []string{"dir"}, nil)
	descBytes     = prometheus.NewDesc("gateway_relay_bytes_total", "Relay bytes on the wire (headers included), live and snapshots.", []string{"dir"}, nil)
	descSnapshots = prometheus.NewDesc("gateway_relay_snapshots_total", "Snapshots served to joining edges (out) and applied by this node's edge (in).", []string{"dir"}, nil)
	descGaps      = prometheus.NewDesc("gateway_relay_gaps_total", "Losses an edge saw in a followed stream (it skipped to the next keyframe or asked for a new snapshot).", nil, nil)
	descDropped   = prometheus.NewDesc("gateway_relay_dropped_total", "Messages an origin dropped because its publish queue for a stream was full (edges see a gap).", nil, nil)
	descFollowed  = prometheus.NewDesc("gateway_relay_followed_streams", "Streams this node follows from another node.", nil, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descBytes, descSnapshots, descGaps, descDropped, descFollowed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	inOut := func(d *prometheus.Desc, out, in *atomic.Int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(out.Load()), "out")
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(in.Load()), "in")
	}
	inOut(descMessages, &m.messagesOut, &m.messagesIn)
	inOut(descBytes, &m.bytesOut, &m.bytesIn)
	inOut(descSnapshots, &m.snapshotsOut, &m.snapshotsIn)
	ch <- prometheus.MustNewConstMetric(descGaps, prometheus.CounterValue, float64(m.gaps.Load()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(m.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(descFollowed, prometheus.GaugeValue, float64(m.followed.Load()))
}
