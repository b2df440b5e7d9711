package record

import (
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descStreams  = prometheus.NewDesc("gateway_recording_streams", "Streams being recorded.", nil, nil)
	descFiles    = prometheus.NewDesc("gateway_recording_files_total", "Recording files started.", nil, nil)
	descBytes    = prometheus.NewDesc("gateway_recording_bytes_total", "Bytes written to recording files.", nil, nil)
	descFailures = prometheus.NewDesc("gateway_recording_failures_total", "Recordings stopped by a failure, by reason: queue_full (the disk did not keep up), open, write, format, attach.", []string{"reason"}, nil)
	descDeleted  = prometheus.NewDesc("gateway_recording_files_deleted_total", "Recording files deleted by retention, by reason: max_age, max_bytes.", []string{"reason"}, nil)
)

// Collector returns the recorder's Prometheus collector (read at scrape
// time; the write path only adds to atomics).
func (r *Recorder) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Recorder }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descFiles, descBytes, descFailures, descDeleted} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := &c.r.m
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(m.streams.Load()))
	ch <- prometheus.MustNewConstMetric(descFiles, prometheus.CounterValue, float64(m.files.Load()))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(m.bytes.Load()))
	var reasons []string
	m.failures.Range(func(k, _ any) bool { reasons = append(reasons, k.(string)); return true })
	sort.Strings(reasons)
	for _, reason := range reasons {
		v, _ := m.failures.Load(reason)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(v.(*atomic.Int64).Load()), reason)
	}
	ch <- prometheus.MustNewConstMetric(descDeleted, prometheus.CounterValue, float64(m.deleted[deletedByAge].Load()), "max_age")
	ch <- prometheus.MustNewConstMetric(descDeleted, prometheus.CounterValue, float64(m.deleted[deletedBySize].Load()), "max_bytes")
}
