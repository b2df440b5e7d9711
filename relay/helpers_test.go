package relay

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/natstest"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/remux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startNATS runs a NATS server in the test process on a free loopback
// port; maxPayload 0 = the server's default (1 MiB).
func startNATS(t testing.TB, maxPayload int32) *server.Server {
	t.Helper()
	return natstest.Start(t, server.Options{MaxPayload: maxPayload})
}

func connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newRegistry(t testing.TB) *mseout.Registry {
	t.Helper()
	def := configs.Default()
	r := mseout.NewRegistry(mseout.Options{Settings: def.StreamSettings, Limits: def.Limits, Logger: quiet})
	t.Cleanup(r.Close)
	return r
}

// node is one gateway of a test: a NATS connection and a registry, with an
// Origin and/or an Edge.
type node struct {
	nc     *nats.Conn
	reg    *mseout.Registry
	origin *Origin
	edge   *Edge
}

func newNode(t testing.TB, s *server.Server) *node {
	return &node{nc: connect(t, s), reg: newRegistry(t)}
}

func (n *node) withOrigin(t testing.TB, opts OriginOptions) *node {
	t.Helper()
	opts.Logger = quiet
	o, err := NewOrigin(n.nc, n.reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	n.origin = o
	return n
}

func (n *node) withEdge(t testing.TB, opts EdgeOptions) *node {
	t.Helper()
	opts.Logger = quiet
	n.edge = NewEdge(n.nc, n.reg, opts)
	t.Cleanup(n.edge.Close)
	return n
}

func (n *node) follow(t testing.TB, stream string) (stop func()) {
	t.Helper()
	stop, err := n.edge.Follow(stream, "A")
	if err != nil {
		t.Fatal(err)
	}
	return stop
}

func testInit(id string) *remux.Init {
	return &remux.Init{MIME: `video/mp4; codecs="avc1.42c01f"`, Tracks: []remux.Track{{ID: 1, Kind: "video", Codec: "avc1.42c01f", Width: 640, Height: 360, Timescale: 90000}}, Data: []byte("init " + id)}
}

// segData is segment i's data: its number, then filler to size bytes.
func segData(i, size int) []byte {
	b := fmt.Appendf(nil, "seg-%06d", i)
	for len(b) < size {
		b = append(b, byte(i+len(b)))
	}
	return b
}

// source feeds a publication numbered segments, a keyframe every keyEvery.
type source struct {
	pub      *mseout.Publication
	keyEvery int
	size     int
	n        int
}

func (s *source) next() {
	s.pub.WriteSegment(&remux.Segment{Data: segData(s.n, s.size), Keyframe: s.n%s.keyEvery == 0, HasVideo: true, Time: time.Duration(s.n) * 33 * time.Millisecond, Duration: 33 * time.Millisecond})
	s.n++
}

func publish(t testing.TB, reg *mseout.Registry, stream, init string) *mseout.Publication {
	t.Helper()
	pub, err := reg.Publish(stream, mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteInit(testInit(init))
	return pub
}

// event is one call a recorder got.
type event struct {
	kind string // "init", "seg", "end"
	data []byte
	key  bool
}

func (e event) String() string {
	switch e.kind {
	case "seg":
		k := ""
		if e.key {
			k = "*"
		}
		return string(e.data[:min(len(e.data), 10)]) + k
	case "init":
		return string(e.data)
	}
	return e.kind
}

// recorder is an mseout.Output that records what the hub gives it.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) WriteInit(in *remux.Init) { r.add(event{kind: "init", data: bytes.Clone(in.Data)}) }
func (r *recorder) WriteSegment(s *remux.Segment) {
	r.add(event{kind: "seg", data: bytes.Clone(s.Data), key: s.Keyframe})
}
func (r *recorder) WriteEnd() { r.add(event{kind: "end"}) }
func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) get() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

func (r *recorder) String() string {
	var b strings.Builder
	for i, e := range r.get() {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}

// has reports whether the recorder got an event whose String is s (with or
// without a keyframe's "*").
func (r *recorder) has(s string) bool {
	for _, e := range r.get() {
		if strings.TrimSuffix(e.String(), "*") == s {
			return true
		}
	}
	return false
}

func attach(t testing.TB, reg *mseout.Registry, stream string) *recorder {
	t.Helper()
	rec := &recorder{}
	detach, err := reg.Attach(stream, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(detach)
	return rec
}

// eventually waits up to 10 s for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// segName is the segment name of seg-%06d data i.
func segName(i int) string { return fmt.Sprintf("seg-%06d", i) }

func (r *recorder) reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}
