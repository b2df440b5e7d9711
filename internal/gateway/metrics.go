package gateway

import (
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mseway/mseway/contain"
)

// newMetrics builds the gateway's own Prometheus registry (never the global
// one: a test process runs many gateways). Every collector reads the parts'
// counters when scraped; none is called on a packet, segment or write.
func (g *Gateway) newMetrics() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	perStream := g.cfg.Metrics.PerStream
	cs := []prometheus.Collector{
		g.registry.Collector(perStream),
		g.sig.Collector(perStream),
		g.guard.Collector(),
		accessCollector{g.access},
		g.access.hooks.Collector(),
		panicCollector{},
		g.recorder.Collector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if g.cluster != nil {
		cs = append(cs, clusterCollector{g.cluster}, g.cluster.metrics)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// metricsHandler serves the registry in the format the scraper asks for
// (the text format by default).
func metricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		// A scrape is cheap, but a flood of them is not: as many at once
		// as a single scraper and a person with curl need.
		MaxRequestsInFlight: 4,
	})
}

var descPanics = prometheus.NewDesc("gateway_panics_contained_total",
	"Panics stopped in one viewer's or stream's goroutine (that viewer or stream was closed).", []string{"where"}, nil)

// panicCollector exports the panics contained, by where they happened
// (process-wide: contain counts for every gateway of the process).
type panicCollector struct{}

func (panicCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descPanics }

func (panicCollector) Collect(ch chan<- prometheus.Metric) {
	counts := contain.Counts()
	for _, where := range slices.Sorted(maps.Keys(counts)) {
		ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(counts[where]), where)
	}
}

var descAuthRefused = prometheus.NewDesc("gateway_auth_refused_total",
	"Requests refused by access control, by action and HTTP status.", []string{"action", "status"}, nil)

// accessCollector exports the refusals of access control.
type accessCollector struct{ a *access }

func (accessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descAuthRefused }

func (c accessCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.refused.Range(func(k, v any) bool {
		action, status, _ := strings.Cut(k.(string), "/")
		ch <- prometheus.MustNewConstMetric(descAuthRefused, prometheus.CounterValue, float64(v.(*atomic.Int64).Load()), action, status)
		return true
	})
}

// the cluster's figures, as this node sees them
var (
	descClusterConnected = prometheus.NewDesc("gateway_cluster_connected", "1 while this node's NATS connection and directory are up.", nil, nil)
	descClusterNodes     = prometheus.NewDesc("gateway_cluster_nodes", "Live nodes in the directory (this one included).", nil, nil)
	descClusterStreams   = prometheus.NewDesc("gateway_cluster_streams", "Live streams in the directory.", nil, nil)
	descClusterFollowed  = prometheus.NewDesc("gateway_cluster_streams_followed", "Streams of other nodes this node relays to its viewers.", nil, nil)
	descClusterUnclaimed = prometheus.NewDesc("gateway_cluster_streams_unclaimed", "Streams published here while NATS was unreachable, not yet claimed cluster-wide.", nil, nil)
	descClusterSentAway  = prometheus.NewDesc("gateway_cluster_viewers_sent_away_total", "Viewers of streams of other nodes sent away because this node lost NATS.", nil, nil)
	descClusterTakenOver = prometheus.NewDesc("gateway_cluster_publishes_taken_over_total", "Publishes here ended by a takeover on another node.", nil, nil)
	descClusterConflicts = prometheus.NewDesc("gateway_cluster_publishes_conflicted_total", "Publishes made here while NATS was unreachable, ended because the name was live on another node.", nil, nil)
)

// clusterCollector exports the node's view of the cluster (the relay's
// counters are relay.Metrics, registered beside it).
type clusterCollector struct{ g *clusterGlue }

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterConnected, descClusterNodes, descClusterStreams, descClusterFollowed,
		descClusterUnclaimed, descClusterSentAway, descClusterTakenOver, descClusterConflicts} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	up := 0
	if g.node.Healthy() {
		up = 1
	}
	g.mu.Lock()
	followed, unclaimed := len(g.follows), 0
	for _, c := range g.claims {
		if c.epoch == 0 {
			unclaimed++
		}
	}
	g.mu.Unlock()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descClusterConnected, up)
	gauge(descClusterNodes, len(g.node.Nodes()))
	gauge(descClusterStreams, len(g.node.Streams()))
	gauge(descClusterFollowed, followed)
	gauge(descClusterUnclaimed, unclaimed)
	counter(descClusterSentAway, g.viewersSentAway.Load())
	counter(descClusterTakenOver, g.takenOver.Load())
	counter(descClusterConflicts, g.conflicts.Load())
}
