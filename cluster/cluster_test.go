package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Short directory times for tests: entries renewed every 100 ms, gone 1 s
// after their node stops.
const (
	testHeartbeat = 100 * time.Millisecond
	testTTL       = time.Second
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runServer starts a nats-server with JetStream on loopback (port 0: random).
func runServer(t *testing.T, port int) *server.Server {
	t.Helper()
	return natstest.Start(t, server.Options{Port: port, JetStream: true})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testConfig(id string, urls ...string) configs.Cluster {
	return configs.Cluster{
		NATSURLs:  urls,
		NodeID:    id,
		PublicURL: "https://" + id + ".example:8443",
		Heartbeat: testHeartbeat,
		TTL:       testTTL,
	}
}

// startNode starts a node closed at the end of the test.
func startNode(t *testing.T, cfg configs.Cluster, opts Options) *Node {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	n, err := Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitHealthy(t *testing.T, timeout time.Duration, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, timeout, n.ID()+" healthy", n.Healthy)
	}
}

func nodeIDs(n *Node) []string {
	var ids []string
	for _, i := range n.Nodes() {
		ids = append(ids, i.ID)
	}
	return ids
}

func streamNames(n *Node) []string {
	var s []string
	for _, i := range n.Streams() {
		s = append(s, i.Stream)
	}
	return s
}

// announceEventually retries Announce while the directory is unavailable.
func announceEventually(t *testing.T, n *Node, stream string, e StreamInfo) {
	t.Helper()
	var err error
	eventually(t, 30*time.Second, fmt.Sprintf("%s announces %s: %v", n.ID(), stream, &err), func() bool {
		err = n.Announce(stream, e)
		return err == nil
	})
}

func TestThreeNodesSeeEachOther(t *testing.T) {
	s := runServer(t, 0)
	a := startNode(t, testConfig("a", s.ClientURL()), Options{})
	b := startNode(t, testConfig("b", s.ClientURL()), Options{})
	c := startNode(t, testConfig("c", s.ClientURL()), Options{})
	waitHealthy(t, 10*time.Second, a, b, c)

	changed := b.Changed()
	tracks := []Track{{Kind: "video", Codec: "avc1.42c01f", Width: 640, Height: 480}, {Kind: "audio", Codec: "opus", SampleRate: 48000, Channels: 2}}
	mime := `video/mp4; codecs="avc1.42c01f,opus"`
	if err := a.Announce("cam", StreamInfo{MIME: mime, Tracks: tracks}); err != nil {
		t.Fatal(err)
	}
	// Names that are not valid KV keys as they are.
	for _, name := range []string{"cam.1", ".x", "a..b"} {
		if err := a.Announce(name, StreamInfo{}); err != nil {
			t.Fatalf("announce %q: %v", name, err)
		}
	}
	epoch, ok := a.Held("cam")
	if !ok || epoch == 0 || epoch >= 1<<53 {
		t.Fatalf("a holds cam: %v, epoch %d", ok, epoch)
	}
	for _, n := range []*Node{b, c} {
		eventually(t, 5*time.Second, n.ID()+" sees cam", func() bool {
			i, ok := n.Lookup("cam")
			return ok && i.Node == "a" && i.Epoch == epoch && i.MIME == mime && slices.Equal(i.Tracks, tracks) && !i.Since.IsZero()
		})
		eventually(t, 5*time.Second, n.ID()+" lists the streams", func() bool {
			return slices.Equal(streamNames(n), []string{".x", "a..b", "cam", "cam.1"})
		})
		eventually(t, 5*time.Second, n.ID()+" lists the nodes", func() bool {
			nodes := n.Nodes()
			if len(nodes) != 3 {
				return false
			}
			for i, id := range []string{"a", "b", "c"} {
				if nodes[i].ID != id || nodes[i].PublicURL != "https://"+id+".example:8443" || nodes[i].Started.IsZero() {
					return false
				}
			}
			return true
		})
	}
	select {
	case <-changed:
	default:
		t.Fatal("b's Changed channel was not closed by the new streams")
	}
	eventually(t, 5*time.Second, "a's load of 4 streams in b's view", func() bool {
		i, _ := b.Node("a")
		return i.Load.Streams == 4
	})
}

// A node that dies (no withdrawal, no more heartbeats) is gone from the
// others' views within the TTL, with its streams. The buckets made by Start
// have limit markers (the server tells watchers of expiries); the second
// case makes them without, as an older server or another creator would:
// then the views' own expiry does it.
func TestCrashedNodeExpires(t *testing.T) {
	for _, markers := range []bool{true, false} {
		t.Run(fmt.Sprintf("markers=%v", markers), func(t *testing.T) {
			s := runServer(t, 0)
			if !markers {
				makeBucketsWithoutMarkers(t, s)
			}
			a := startNode(t, testConfig("a", s.ClientURL()), Options{})
			b := startNode(t, testConfig("b", s.ClientURL()), Options{})
			c := startNode(t, testConfig("c", s.ClientURL()), Options{})
			waitHealthy(t, 10*time.Second, a, b, c)
			announceEventually(t, a, "cam", StreamInfo{})
			for _, n := range []*Node{b, c} {
				eventually(t, 5*time.Second, n.ID()+" sees a and cam", func() bool {
					_, ok := n.Lookup("cam")
					return ok && len(n.Nodes()) == 3
				})
			}
			a.kill()
			for _, n := range []*Node{b, c} {
				eventually(t, testTTL+2*time.Second, n.ID()+" forgets a and cam", func() bool {
					_, ok := n.Lookup("cam")
					return !ok && slices.Equal(nodeIDs(n), []string{"b", "c"})
				})
			}
			// The name is free again, without takeover.
			if _, err := b.Claim("cam", false); err != nil {
				t.Fatalf("b claims cam after a's death: %v", err)
			}
		})
	}
}

func makeBucketsWithoutMarkers(t *testing.T, s *server.Server) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range []string{NodesBucket, StreamsBucket} {
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, TTL: testTTL, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
	}
}

// The premise of the views' own expiry: without limit markers, nats-server
// does not tell a watcher that a bucket's TTL removed an entry; with them,
// it sends a purge.
func TestServerExpiryNotices(t *testing.T) {
	s := runServer(t, 0)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, markers := range []bool{false, true} {
		cfg := jetstream.KeyValueConfig{Bucket: fmt.Sprintf("exp_%v", markers), TTL: time.Second}
		if markers {
			cfg.LimitMarkerTTL = time.Second
		}
		kv, err := js.CreateKeyValue(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		var ops []jetstream.KeyValueOp
		timeout := time.After(3 * time.Second) // 3 TTLs
	loop:
		for {
			select {
			case e := <-w.Updates():
				if e != nil {
					ops = append(ops, e.Operation())
				}
			case <-timeout:
				break loop
			}
		}
		_ = w.Stop()
		for range w.Updates() {
		}
		if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("markers=%v: the entry did not expire: %v", markers, err)
		}
		want := []jetstream.KeyValueOp{jetstream.KeyValuePut}
		if markers {
			want = append(want, jetstream.KeyValuePurge)
		}
		if !slices.Equal(ops, want) {
			t.Fatalf("markers=%v: watcher saw %v, want %v", markers, ops, want)
		}
	}
}

// Close withdraws at once: with a 30 s TTL, the entries can only be gone
// within seconds because they were deleted.
func TestCloseWithdraws(t *testing.T) {
	s := runServer(t, 0)
	cfgA, cfgB := testConfig("a", s.ClientURL()), testConfig("b", s.ClientURL())
	cfgA.Heartbeat, cfgA.TTL = time.Second, 30*time.Second
	cfgB.Heartbeat, cfgB.TTL = time.Second, 30*time.Second
	a := startNode(t, cfgA, Options{})
	b := startNode(t, cfgB, Options{})
	waitHealthy(t, 10*time.Second, a, b)
	announceEventually(t, a, "cam", StreamInfo{})
	announceEventually(t, a, "cam2", StreamInfo{})
	eventually(t, 5*time.Second, "b sees a's streams", func() bool { return len(b.Streams()) == 2 && len(b.Nodes()) == 2 })
	if err := a.Withdraw("cam2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b forgets cam2", func() bool { _, ok := b.Lookup("cam2"); return !ok })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b forgets a and cam", func() bool {
		return len(b.Streams()) == 0 && slices.Equal(nodeIDs(b), []string{"b"})
	})
	if _, err := a.Claim("x", false); !errors.Is(err, ErrClosed) {
		t.Fatalf("claim after close: %v", err)
	}
}

func TestClaimTakeover(t *testing.T) {
	s := runServer(t, 0)
	lost := make(chan lostEvent, 4)
	a := startNode(t, testConfig("a", s.ClientURL()), Options{OnLost: func(s string, e uint64) { lost <- lostEvent{s, e} }})
	b := startNode(t, testConfig("b", s.ClientURL()), Options{OnLost: func(s string, e uint64) { t.Errorf("b lost %s", s) }})
	waitHealthy(t, 10*time.Second, a, b)

	ea, err := a.Claim("cam", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim("cam", false); !errors.Is(err, ErrBusy) {
		t.Fatalf("b claims a's live stream without takeover: %v, want ErrBusy", err)
	}
	if err := b.Announce("cam", StreamInfo{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("b announces a's live stream: %v, want ErrBusy", err)
	}
	eb, err := b.Claim("cam", true)
	if err != nil || eb == ea {
		t.Fatalf("b takes cam over: epoch %d (a's %d), %v", eb, ea, err)
	}
	select {
	case e := <-lost:
		if e != (lostEvent{"cam", ea}) {
			t.Fatalf("a lost %+v, want cam epoch %d", e, ea)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a was not told it lost cam")
	}
	if _, ok := a.Held("cam"); ok {
		t.Fatal("a still holds cam")
	}
	// Two TTLs later b still owns it: a did not write it back.
	time.Sleep(2 * testTTL)
	for _, n := range []*Node{a, b} {
		if i, ok := n.Lookup("cam"); !ok || i.Node != "b" || i.Epoch != eb {
			t.Fatalf("%s's view of cam after 2 TTLs: %+v %v, want b's epoch %d", n.ID(), i, ok, eb)
		}
	}
	if i := rawStream(t, s, "cam"); i.Node != "b" || i.Epoch != eb {
		t.Fatalf("cam in the bucket: %+v", i)
	}
	// a's publication is over: its details go nowhere.
	if err := a.Announce("cam", StreamInfo{Epoch: ea, MIME: "x"}); !errors.Is(err, ErrLost) {
		t.Fatalf("a announces the claim it lost: %v, want ErrLost", err)
	}
	if err := a.Announce("cam", StreamInfo{MIME: "x"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("a announces the stream, live on b: %v, want ErrBusy", err)
	}
	// b's details for its claim.
	if err := b.Announce("cam", StreamInfo{Epoch: eb, MIME: "video/mp4"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a sees b's details", func() bool {
		i, _ := a.Lookup("cam")
		return i.Node == "b" && i.Epoch == eb && i.MIME == "video/mp4"
	})
	if _, ok := b.Held("cam"); !ok {
		t.Fatal("b does not hold cam")
	}
	// Withdraw of a stream this node does not hold leaves it alone.
	if err := a.Withdraw("cam"); err != nil {
		t.Fatal(err)
	}
	if i := rawStream(t, s, "cam"); i.Node != "b" {
		t.Fatalf("cam after a's withdraw: %+v", i)
	}
	select {
	case e := <-lost:
		t.Fatalf("a lost %+v again", e)
	default:
	}
}

// A renewal that finds the entry rewritten by another node stops there: the
// node does not write it back, and is told.
func TestRenewalDetectsLoss(t *testing.T) {
	s := runServer(t, 0)
	lost := make(chan lostEvent, 4)
	a := startNode(t, testConfig("a", s.ClientURL()), Options{OnLost: func(s string, e uint64) { lost <- lostEvent{s, e} }})
	waitHealthy(t, 10*time.Second, a)
	ea, err := a.Claim("cam", false)
	if err != nil {
		t.Fatal(err)
	}
	// Hide the other node's write from the watch: with the stream's lock
	// held (no renewal meanwhile), set the claim's revision past it, as if
	// this node had renewed since. Only the renewal can then see the loss.
	kv := rawKV(t, s, StreamsBucket)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock := a.keys.lock("cam")
	a.mu.Lock()
	c := a.held["cam"]
	if c != nil {
		c.rev += 1 << 40
	}
	a.mu.Unlock()
	if c == nil {
		unlock()
		t.Fatal("a does not hold cam")
	}
	_, err = kv.Put(ctx, "cam", []byte(`{"stream":"cam","node":"z","epoch":7,"since":"2026-01-01T00:00:00Z"}`))
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-lost:
		if e != (lostEvent{"cam", ea}) {
			t.Fatalf("lost %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the renewal did not report the loss")
	}
	time.Sleep(2 * testHeartbeat)
	if i := rawStream(t, s, "cam"); i.Node != "z" {
		t.Fatalf("cam after a's renewals: %+v", i)
	}
}

// A stream whose node is gone from the directory is free without takeover.
func TestClaimFromDeadNode(t *testing.T) {
	s := runServer(t, 0)
	a := startNode(t, testConfig("a", s.ClientURL()), Options{})
	waitHealthy(t, 10*time.Second, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := rawKV(t, s, StreamsBucket).Put(ctx, "cam", []byte(`{"stream":"cam","node":"ghost","epoch":7,"since":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Claim("cam", false); err != nil {
		t.Fatalf("claim of a ghost's stream: %v", err)
	}
	if i := rawStream(t, s, "cam"); i.Node != "a" {
		t.Fatalf("cam: %+v", i)
	}
}

func rawKV(t *testing.T, s *server.Server, bucket string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func rawStream(t *testing.T, s *server.Server, stream string) StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := rawKV(t, s, StreamsBucket).Get(ctx, encodeKey(stream))
	if err != nil {
		t.Fatalf("get %s: %v", stream, err)
	}
	var i StreamInfo
	if err := json.Unmarshal(e.Value(), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// Start succeeds while NATS is down; the directory fails fast and clearly,
// then works once a server listens; when it goes away again the views keep
// their last state, marked unhealthy.
func TestNATSDown(t *testing.T) {
	port := freePort(t)
	a := startNode(t, testConfig("a", fmt.Sprintf("nats://127.0.0.1:%d", port)), Options{})
	t0 := time.Now()
	err := a.Announce("cam", StreamInfo{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("announce with NATS down: %v, want ErrUnavailable", err)
	}
	if _, err := a.Claim("cam", true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim with NATS down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("failing took %v", d)
	}
	if a.Healthy() {
		t.Fatal("healthy with NATS down")
	}

	s := runServer(t, port)
	announceEventually(t, a, "cam", StreamInfo{})
	waitHealthy(t, 10*time.Second, a)
	eventually(t, 5*time.Second, "a sees cam", func() bool { _, ok := a.Lookup("cam"); return ok })

	s.Shutdown()
	s.WaitForShutdown()
	eventually(t, 5*time.Second, "a unhealthy after the server left", func() bool { return !a.Healthy() })
	if _, ok := a.Lookup("cam"); !ok {
		t.Fatal("the views did not keep their last state")
	}
	time.Sleep(2 * testTTL) // no expiry while stale
	if _, ok := a.Lookup("cam"); !ok || len(a.Nodes()) != 1 {
		t.Fatal("the views expired entries while disconnected")
	}
	t0 = time.Now()
	if err := a.Announce("cam2", StreamInfo{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("announce after the server left: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("failing took %v", d)
	}
}

// Credentials reach the server; wrong ones leave the node retrying, its
// directory unavailable, not broken.
func TestCredentials(t *testing.T) {
	s := natstest.Start(t, server.Options{JetStream: true, Username: "gw", Password: "s3cret"})
	good := testConfig("a", s.ClientURL())
	good.User, good.Password = "gw", "s3cret"
	bad := testConfig("b", s.ClientURL())
	bad.User, bad.Password = "gw", "wrong"
	a := startNode(t, good, Options{})
	b := startNode(t, bad, Options{})
	waitHealthy(t, 10*time.Second, a)
	announceEventually(t, a, "cam", StreamInfo{})
	time.Sleep(time.Second) // a few reconnection attempts
	if b.Healthy() {
		t.Fatal("b healthy with a wrong password")
	}
	if err := b.Announce("cam2", StreamInfo{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("announce with a wrong password: %v", err)
	}
	if b.nc.IsClosed() {
		t.Fatal("b gave up reconnecting")
	}
}

// With embedded NATS, Start runs the server; another node connects to it.
func TestEmbedded(t *testing.T) {
	cfgA := testConfig("a")
	cfgA.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "127.0.0.1:0"}
	a := startNode(t, cfgA, Options{})
	if a.emb == nil || a.emb.tmpDir == "" {
		t.Fatal("no embedded server with a store in a temporary directory")
	}
	b := startNode(t, testConfig("b", a.emb.clients), Options{})
	waitHealthy(t, 10*time.Second, a, b)
	announceEventually(t, b, "cam", StreamInfo{})
	eventually(t, 5*time.Second, "a sees b's cam", func() bool { i, ok := a.Lookup("cam"); return ok && i.Node == "b" })
	eventually(t, 5*time.Second, "a sees b", func() bool { return slices.Equal(nodeIDs(a), []string{"a", "b"}) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.emb.tmpDir); !os.IsNotExist(err) {
		t.Fatalf("the temporary store is left: %v", err)
	}
}

// Three gateways, each with an embedded server routed to the others, form a
// NATS cluster; the directory buckets get 3 replicas. One server dies: its
// node reconnects to another server, and the directory goes on.
func TestEmbeddedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-server JetStream cluster takes seconds to form and to elect after a loss")
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var nodes []*Node
	for i, id := range []string{"a", "b", "c"} {
		cfg := testConfig(id)
		cfg.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: t.TempDir()}
		nodes = append(nodes, startNode(t, cfg, Options{}))
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	waitHealthy(t, 60*time.Second, a, b, c)
	for _, bucket := range []string{NodesBucket, StreamsBucket} {
		eventually(t, 30*time.Second, bucket+" has 3 replicas", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := a.js.Stream(ctx, "KV_"+bucket)
			return err == nil && st.CachedInfo().Config.Replicas == 3
		})
	}
	announceEventually(t, a, "cam", StreamInfo{})
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.ID()+" sees cam and 3 nodes", func() bool {
			_, ok := n.Lookup("cam")
			return ok && len(n.Nodes()) == 3
		})
	}

	// c's server dies; c's node goes on through a or b's server.
	c.emb.srv.Shutdown()
	c.emb.srv.WaitForShutdown()
	eventually(t, 30*time.Second, "c reconnected to another server", func() bool {
		return c.nc.IsConnected() && c.nc.ConnectedServerName() != "c"
	})
	announceEventually(t, c, "cam2", StreamInfo{})
	announceEventually(t, b, "cam3", StreamInfo{})
	for _, n := range nodes {
		eventually(t, 30*time.Second, n.ID()+" sees every stream", func() bool {
			return n.Healthy() && slices.Equal(streamNames(n), []string{"cam", "cam2", "cam3"}) && len(n.Nodes()) == 3
		})
	}
	if _, err := b.Claim("cam", false); !errors.Is(err, ErrBusy) {
		t.Fatalf("b claims a's cam: %v, want ErrBusy", err)
	}
	// Then c's node crashes: a and b forget it and its stream.
	c.kill()
	for _, n := range []*Node{a, b} {
		eventually(t, testTTL+5*time.Second, n.ID()+" forgets c", func() bool {
			return slices.Equal(nodeIDs(n), []string{"a", "b"}) && slices.Equal(streamNames(n), []string{"cam", "cam3"})
		})
	}
}

// A clustered NATS that cannot place 3 replicas (two servers) gets buckets
// with 1 replica once the grace period is over, and the directory works.
func TestTwoServerClusterOneReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("a JetStream cluster takes seconds to form")
	}
	grace := replicasGrace
	replicasGrace = 0
	t.Cleanup(func() { replicasGrace = grace })
	ports := []int{freePort(t), freePort(t)}
	routes := []string{fmt.Sprintf("nats-route://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats-route://127.0.0.1:%d", ports[1])}
	var nodes []*Node
	for i, id := range []string{"a", "b"} {
		cfg := testConfig(id)
		cfg.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: t.TempDir()}
		nodes = append(nodes, startNode(t, cfg, Options{}))
	}
	a, b := nodes[0], nodes[1]
	waitHealthy(t, 60*time.Second, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, bucket := range []string{NodesBucket, StreamsBucket} {
		st, err := a.js.Stream(ctx, "KV_"+bucket)
		if err != nil || st.CachedInfo().Config.Replicas != 1 {
			t.Fatalf("%s: %v, want 1 replica", bucket, err)
		}
	}
	announceEventually(t, a, "cam", StreamInfo{})
	eventually(t, 10*time.Second, "b sees cam", func() bool { _, ok := b.Lookup("cam"); return ok })
}

func TestKeysAndIDs(t *testing.T) {
	for _, name := range []string{"cam", "cam.1", ".x", "..", "a-b_c.d"} {
		k := encodeKey(name)
		if decodeKey(k) != name || k[0] == '.' || k[len(k)-1] == '.' {
			t.Fatalf("%q -> key %q -> %q", name, k, decodeKey(k))
		}
	}
	for in, want := range map[string]string{
		"host.example.com": "host.example.com",
		"my host/1":        "my-host-1",
		"---":              "",
		"":                 "",
		"é":                "",
		"node-é":           "node--",
	} {
		if got := sanitizeID(in); got != want {
			t.Errorf("sanitizeID(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitizeID(strings.Repeat("a", 100)); len(got) > 64 {
		t.Fatalf("sanitizeID: %d characters", len(got))
	}
	if id := nodeID(""); !configs.ValidStreamName(id) {
		t.Fatalf("default node id %q", id)
	}
}
