package mseout_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/promtext"
	"github.com/mseway/mseway/mseout"
)

// BenchmarkFanoutScraped is BenchmarkFanout's plain-TCP case with the
// registry's metrics gathered every 10 ms meanwhile (a Prometheus scrape
// every 15 s is 1,500 times rarer): the fan-out never calls Prometheus,
// so its cost per write is the same.
func BenchmarkFanoutScraped(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, every := range []time.Duration{0, 10 * time.Millisecond} {
			b.Run(fmt.Sprintf("viewers=%d/scrape=%v", n, every), func(b *testing.B) { benchFanout(b, plainTCP, n, every) })
		}
	}
}

// BenchmarkScrape is one scrape (gather and text encoding) of a registry
// with 1,000 viewers on 10 live streams, per-stream series on.
func BenchmarkScrape(b *testing.B) {
	cfg := configs.Default()
	cfg.Limits.MaxViewersPerStream, cfg.Limits.MaxViewers, cfg.Limits.MaxViewersPerIP = 100000, 100000, 0
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits, Logger: quiet})
	base := serveRegistry(b, plainTCP, r)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for s := range 10 {
		name := fmt.Sprintf("s%d", s)
		goLive(b, r, name, "key")
		for range 100 {
			ws, _, err := wsDialer(base+name).DialContext(context.Background(), base+name, nil)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, ws.NetConn())
			go func() { _, _ = io.Copy(io.Discard, ws.NetConn()) }()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(b, r, "gateway_viewers") < 1000 {
		if time.Now().After(deadline) {
			b.Fatal("viewers did not join")
		}
		time.Sleep(time.Millisecond)
	}
	c := r.Collector(true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := promtext.Format(c); err != nil {
			b.Fatal(err)
		}
	}
}
