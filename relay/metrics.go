package relay

import (
	"fmt"
	"io"
	"sync/atomic"
)

// Metrics counts what an Origin and an Edge do. A node that runs both gives
// them the same Metrics (OriginOptions.Metrics, EdgeOptions.Metrics) and
// writes it once: every metric family then appears once in the exposition.
// The zero value is ready to use.
type Metrics struct {
	messagesOut, messagesIn   atomic.Int64 // relay messages (a split one counts once)
	bytesOut, bytesIn         atomic.Int64 // wire bytes, headers included
	snapshotsOut, snapshotsIn atomic.Int64 // served by an origin / applied by an edge
	gaps                      atomic.Int64 // edge: losses seen (seq jump, epoch without its init)
	dropped                   atomic.Int64 // origin: messages dropped on queue overflow
	followed                  atomic.Int64 // edge: streams followed (gauge)
}

// WriteMetrics writes the counters in the Prometheus text format.
func (m *Metrics) WriteMetrics(w io.Writer) {
	fam := func(name, help, typ string) { fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ) }
	fam("gateway_relay_messages_total", "Relay messages published to other nodes (out) or received from an origin (in); a message split over several NATS messages counts once.", "counter")
	fmt.Fprintf(w, "gateway_relay_messages_total{dir=\"out\"} %d\ngateway_relay_messages_total{dir=\"in\"} %d\n", m.messagesOut.Load(), m.messagesIn.Load())
	fam("gateway_relay_bytes_total", "Relay bytes on the wire (headers included), live and snapshots.", "counter")
	fmt.Fprintf(w, "gateway_relay_bytes_total{dir=\"out\"} %d\ngateway_relay_bytes_total{dir=\"in\"} %d\n", m.bytesOut.Load(), m.bytesIn.Load())
	fam("gateway_relay_snapshots_total", "Snapshots served to joining edges (out) and applied by this node's edge (in).", "counter")
	fmt.Fprintf(w, "gateway_relay_snapshots_total{dir=\"out\"} %d\ngateway_relay_snapshots_total{dir=\"in\"} %d\n", m.snapshotsOut.Load(), m.snapshotsIn.Load())
	for _, g := range []struct {
		name, help, typ string
		v               int64
	}{
		{"gateway_relay_gaps_total", "Losses an edge saw in a followed stream (it skipped to the next keyframe or asked for a new snapshot).", "counter", m.gaps.Load()},
		{"gateway_relay_dropped_total", "Messages an origin dropped because its publish queue for a stream was full (edges see a gap).", "counter", m.dropped.Load()},
		{"gateway_relay_followed_streams", "Streams this node follows from another node.", "gauge", m.followed.Load()},
	} {
		fam(g.name, g.help, g.typ)
		fmt.Fprintf(w, "%s %d\n", g.name, g.v)
	}
}
