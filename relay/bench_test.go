package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/mseway/mseway/relaywire"
	"github.com/mseway/mseway/remux"
)

// BenchmarkOriginPublish is an origin's cost per segment: encode (split to
// max_payload) and publish on the media subject of an embedded server.
func BenchmarkOriginPublish(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"16KiB", 16 << 10}, {"2MiB-split", 2 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			s := startNATS(b, 0)
			a := newNode(b, s).withOrigin(b, OriginOptions{})
			f := &feed{o: a.origin, stream: "bench", subject: MediaPrefix + "bench"}
			seg := &remux.Segment{Data: segData(0, bc.size), Keyframe: true, HasVideo: true}
			m := &relaywire.Message{Kind: relaywire.KindSegment, Epoch: 1, Segment: seg}
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m.Seq = uint64(i + 1)
				f.publish(m)
			}
			b.StopTimer()
			if err := a.nc.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// latencyOutput signals each segment it gets.
type latencyOutput struct{ got chan struct{} }

func (o *latencyOutput) WriteInit(*remux.Init) {}
func (o *latencyOutput) WriteSegment(*remux.Segment) {
	select {
	case o.got <- struct{}{}:
	default:
	}
}
func (o *latencyOutput) WriteEnd() {}

// BenchmarkRelayLatency is the time from a 16 KiB segment written to the
// origin's hub to its arrival in the edge's hub, one at a time, over an
// embedded NATS server on loopback: the relay's added latency per hop.
func BenchmarkRelayLatency(b *testing.B) {
	s := startNATS(b, 0)
	a := newNode(b, s).withOrigin(b, OriginOptions{})
	e := newNode(b, s).withEdge(b, EdgeOptions{})
	pub := publish(b, a.reg, "lat", "i1")
	src := &source{pub: pub, keyEvery: 60, size: 16 << 10}
	src.next()
	out := &latencyOutput{got: make(chan struct{}, 1)}
	detach, err := e.reg.Attach("lat", out)
	if err != nil {
		b.Fatal(err)
	}
	defer detach()
	defer e.follow(b, "lat")()
	select {
	case <-out.got: // the snapshot
	case <-time.After(10 * time.Second):
		b.Fatal("no snapshot")
	}
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		src.next()
		select {
		case <-out.got:
		case <-time.After(10 * time.Second):
			b.Fatal("segment lost")
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
