package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/mseway/mseway/agent"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/natstest"
)

// startNATS runs a nats-server with JetStream for a test cluster.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Start(t, server.Options{JetStream: true})
}

// clusterNode starts a gateway that joins the cluster of nats as node id.
func clusterNode(t *testing.T, nats *server.Server, id string, edit func(*configs.Config)) *testGateway {
	t.Helper()
	return startGateway(t, func(c *configs.Config) {
		c.Cluster.NATSURLs = []string{nats.ClientURL()}
		c.Cluster.NodeID = id
		c.Cluster.PublicURL = "http://" + id + ".example"
		c.Cluster.Heartbeat, c.Cluster.TTL = 200*time.Millisecond, 2*time.Second
		if edit != nil {
			edit(c)
		}
	})
}

// TestClusterRelay: a stream published on node A plays on node B (a viewer
// waiting there before the publish, one joining after), B lists it with its
// node, and a second publisher of the name on B is refused (409) unless it
// may take over, which ends the publish on A.
func TestClusterRelay(t *testing.T) {
	nats := startNATS(t)
	token := func(c *configs.Config) {
		c.Auth.PublishToken = "pub"
		strict := c.StreamDefaults
		strict.WaitForPublisher = false
		c.Streams["strict"] = strict
		locked := c.StreamDefaults
		locked.AllowTakeover = false
		c.Streams["locked"] = locked
	}
	a := clusterNode(t, nats, "node-a", token)
	b := clusterNode(t, nats, "node-b", token)
	video, audio := testMedia(t)

	early := watch(t, b, "shared")
	early.expectControl("waiting", 10*time.Second)
	a.token = "pub"
	pubA := publish(t, a, "shared", video, audio)
	_, init := early.expectInit(20 * time.Second)
	segs, ctl := early.collect(3 * time.Second)
	if ctl != nil {
		t.Fatalf("viewer on B: %+v during playback", ctl)
	}
	if n := checkPlayable(t, "relayed to node B", init, segs); n < 30 {
		t.Fatalf("%d video samples in 3 s on node B", n)
	}
	late := watch(t, b, "shared")
	_, init2 := late.expectInit(10 * time.Second)
	segs2, _ := late.collect(2 * time.Second)
	checkPlayable(t, "joined on node B", init2, segs2)

	var list []struct {
		Name string
		Live bool
		Node string
	}
	getJSON(t, b.base+"/api/streams?token=pub", &list)
	found := false
	for _, s := range list {
		found = found || (s.Name == "shared" && s.Live && s.Node == "node-a")
	}
	if !found {
		t.Errorf("/api/streams on B: %+v, want shared live on node-a", list)
	}

	// A stream of A nobody watches on B: B lists it from the directory,
	// with its tracks.
	publish(t, a, "listed", video, audio)
	waitFor(t, "node B lists listed with its tracks", 10*time.Second, func() bool {
		var l []struct {
			Name   string
			Node   string
			Tracks []struct{ Kind, Codec string }
		}
		getJSON(t, b.base+"/api/streams?token=pub", &l)
		for _, s := range l {
			if s.Name == "listed" && s.Node == "node-a" && len(s.Tracks) == 2 && s.Tracks[0].Codec != "" {
				return true
			}
		}
		return false
	})

	// A stream whose viewers do not wait for a publisher: on B, a viewer of
	// it is not refused as unknown while A publishes it.
	publish(t, a, "strict", video, audio)
	waitFor(t, "node B sees strict", 10*time.Second, func() bool {
		var l []struct{ Name string }
		getJSON(t, b.base+"/api/streams?token=pub", &l)
		for _, s := range l {
			if s.Name == "strict" {
				return true
			}
		}
		return false
	})
	watch(t, b, "strict").expectInit(20 * time.Second)

	// Names are cluster-wide: a publisher on B of a name live on A that
	// does not allow takeover gets 409; of one that does, it takes over
	// and A's publish ends.
	publish(t, a, "locked", video, audio)
	waitFor(t, "node B sees locked", 10*time.Second, func() bool {
		var l []struct{ Name string }
		getJSON(t, b.base+"/api/streams?token=pub", &l)
		for _, s := range l {
			if s.Name == "locked" {
				return true
			}
		}
		return false
	})
	if r := do(t, "POST", b.base+"/whip/locked", "application/sdp", vp8OnlyOffer(t), map[string]string{"Authorization": "Bearer pub"}); r.status != http.StatusConflict {
		t.Fatalf("a second publisher of a locked name on another node: %+v, want 409", r)
	}
	b.token = "pub"
	publish(t, b, "shared", video, audio)
	deadline := time.Now().Add(15 * time.Second)
	for a.g.Live("shared") {
		if time.Now().After(deadline) {
			t.Fatal("the publish on node A did not end after the takeover on node B")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = pubA
	raw, _ := json.Marshal(list)
	t.Logf("B listed %s", raw)

	// B stops: its viewers are sent to another live node (the goaway's url).
	v := watch(t, b, "locked")
	v.expectInit(20 * time.Second)
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	deadline = time.Now().Add(20 * time.Second)
	for {
		m, err := v.c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("viewer on B while B stops: %v", err)
		}
		if m.Control == nil {
			continue
		}
		if m.Control.Type != "goaway" {
			t.Fatalf("viewer on B while B stops: %+v, want goaway", m.Control)
		}
		if want := "ws://node-a.example/ws/watch/locked"; m.Control.URL != want {
			t.Fatalf("goaway url %q, want %q", m.Control.URL, want)
		}
		break
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestClusterOriginLeaves: the origin node of a stream stops; viewers of it
// on another node get eos and wait there, and when the publisher publishes
// again on their node they play again, on the same socket.
func TestClusterOriginLeaves(t *testing.T) {
	nats := startNATS(t)
	a := clusterNode(t, nats, "node-a", nil)
	b := clusterNode(t, nats, "node-b", nil)
	video, audio := testMedia(t)
	publish(t, a, "moving", video, audio)
	v := watch(t, b, "moving")
	v.expectInit(20 * time.Second)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	v.expectControl("eos", 20*time.Second)
	publish(t, b, "moving", video, audio)
	_, init := v.expectInit(20 * time.Second)
	segs, _ := v.collect(2 * time.Second)
	if n := checkPlayable(t, "after the publisher moved to node B", init, segs); n < 20 {
		t.Fatalf("%d video samples in 2 s after the move", n)
	}
}

// TestClusterBrowser: the real player in headless Chromium plays, on node
// B, a stream published on node A.
func TestClusterBrowser(t *testing.T) {
	nats := startNATS(t)
	a := clusterNode(t, nats, "node-a", nil)
	b := clusterNode(t, nats, "node-b", nil)
	video, audio := testMedia(t)
	publish(t, a, "browsed", video, audio)
	browser := newBrowser(t)
	tab := newTab(t, browser, b.base+"/watch.html?stream=browsed")
	waitPlaying(t, tab, 45*time.Second)
	x, y := waitAdvance(t, tab, "playback on node B of a stream of node A", 2, 30*time.Second)
	checkProgress(t, "relayed", x, y, 20)

	// B's index page names the stream's node.
	index := newTab(t, browser, b.base+"/")
	waitJS(t, index, "the index page shows the node", `(() => {
	  const row = document.querySelector('tr[data-stream="browsed"]');
	  return !!row && /node\s*node-a/.test(row.textContent);
	})()`, 20*time.Second, `document.querySelector('#streams').textContent`)
}

// clusterNodeAt is clusterNode with a public_url browsers can reach: its own
// loopback address.
func clusterNodeAt(t *testing.T, nats *server.Server, id string, edit func(*configs.Config)) *testGateway {
	t.Helper()
	addr := freeAddr(t)
	return clusterNode(t, nats, id, func(c *configs.Config) {
		c.Listen = addr
		c.Cluster.PublicURL = "http://" + addr
		if edit != nil {
			edit(c)
		}
	})
}

// TestClusterFailover: the node a browser watches on is killed (SIGKILL:
// no goaway, its directory entry lingers until the TTL); the player, on the
// same page, moves to another node of the list it read from /api/nodes and
// plays again. The freeze (the longest time between two frames the browser
// presented) is logged; docs/CLUSTER.md records it.
func TestClusterFailover(t *testing.T) {
	nats := startNATS(t)
	a := clusterNodeAt(t, nats, "node-a", nil)
	clusterNodeAt(t, nats, "node-c", nil)
	b := startChildGateway(t, nats.ClientURL(), "node-b")
	video, audio := testMedia(t)
	publish(t, a, "failover", video, audio)
	var nodes []struct {
		ID, URL, Watch string
		Self           bool
	}
	waitFor(t, "node A lists three nodes", 10*time.Second, func() bool {
		getJSON(t, a.base+"/api/nodes?stream=failover", &nodes)
		return len(nodes) == 3
	})
	for _, n := range nodes {
		if n.Self != (n.ID == "node-a") || n.Watch != strings.Replace(n.URL, "http", "ws", 1)+"/ws/watch/failover" {
			t.Errorf("/api/nodes entry %+v", n)
		}
	}

	browser := newBrowser(t)
	tab := newTab(t, browser, b.base+"/watch.html?stream=failover")
	waitPlaying(t, tab, 45*time.Second)
	waitAdvance(t, tab, "playback on node B", 1, 30*time.Second)
	waitJS(t, tab, "the player knows the two other nodes", `(window.player.stats || {}).nodes === 3`, 20*time.Second,
		`JSON.stringify(window.player.stats)`)
	// Every frame the browser presents, with its time.
	evalJS[bool](t, tab, `(() => {
	  window.__frames = [];
	  const v = document.querySelector('video');
	  const cb = (now) => { window.__frames.push(now); v.requestVideoFrameCallback(cb); };
	  v.requestVideoFrameCallback(cb);
	  window.__marker = 'same page';
	  return true;
	})()`)

	b.kill()
	killedAt := evalJS[float64](t, tab, `performance.now()`)
	waitJS(t, tab, "playback on another node", fmt.Sprintf(
		`(window.player.stats || {}).failovers >= 1 && window.__frames.filter((f) => f > %f).length >= 60`, killedAt),
		45*time.Second, `JSON.stringify({stats: window.player.stats, frames: window.__frames.length})`)
	type result struct {
		Freeze    float64 `json:"freeze"`
		Server    string  `json:"server"`
		Failovers int     `json:"failovers"`
		Marker    string  `json:"marker"`
	}
	r := evalJS[result](t, tab, fmt.Sprintf(`(() => {
	  const f = window.__frames; let freeze = 0;
	  for (let i = 1; i < f.length; i++) if (f[i] > %f) freeze = Math.max(freeze, f[i] - f[i-1]);
	  return {freeze, server: window.player.stats.server, failovers: window.player.stats.failovers, marker: String(window.__marker)};
	})()`, killedAt))
	t.Logf("after SIGKILL of node B: frames stopped for %.0f ms; the player now watches %s (%d failovers)", r.Freeze, r.Server, r.Failovers)
	if r.Marker != "same page" {
		t.Fatal("the page was reloaded")
	}
	if strings.HasPrefix(r.Server, strings.Replace(b.base, "http", "ws", 1)) {
		t.Fatalf("the player still names node B: %s", r.Server)
	}
	before, after := waitAdvance(t, tab, "playback on the new node", 2, 30*time.Second)
	checkProgress(t, "after the failover", before, after, 30)
}

// TestClusterNATSLoss: NATS goes away under two nodes. Viewers on B of a
// stream of A are sent away (goaway) once the connection has been lost for
// a while; viewers of B's own stream play on; /readyz and /metrics say
// so; a publish made on B meanwhile works locally and is claimed
// cluster-wide once NATS is back; a name published on both nodes meanwhile
// ends up on one of them only.
func TestClusterNATSLoss(t *testing.T) {
	nats := startNATS(t)
	port := nats.Addr().(*net.TCPAddr).Port
	a := clusterNode(t, nats, "node-a", nil)
	b := clusterNode(t, nats, "node-b", nil)
	video, audio := testMedia(t)
	publish(t, a, "remote", video, audio)
	publish(t, b, "local", video, audio)
	remote := watch(t, b, "remote")
	remote.expectInit(20 * time.Second)
	local := watch(t, b, "local")
	local.expectInit(20 * time.Second)

	nats.Shutdown()
	nats.WaitForShutdown()
	m, _ := remote.expectControl("goaway", 20*time.Second)
	if !strings.Contains(m.Reason, "cluster") {
		t.Errorf("goaway reason %q, want one naming the cluster", m.Reason)
	}
	segs, ctl := local.collect(2 * time.Second)
	if ctl != nil || len(segs) == 0 {
		t.Fatalf("local viewer while NATS is down: %d segments, control %+v", len(segs), ctl)
	}
	var ready map[string]string
	getJSON(t, b.base+"/readyz", &ready)
	if ready["status"] != "ready" || ready["cluster"] != "disconnected" {
		t.Errorf("/readyz while NATS is down: %v", ready)
	}
	if v := hardMetric(t, b, "", "gateway_cluster_connected"); v != 0 {
		t.Errorf("gateway_cluster_connected = %v while NATS is down", v)
	}
	if v := hardMetric(t, b, "", "gateway_cluster_viewers_sent_away_total"); v != 1 {
		t.Errorf("gateway_cluster_viewers_sent_away_total = %v, want 1", v)
	}

	// Published while NATS is down: locally fine, unclaimed.
	publish(t, b, "meanwhile", video, audio)
	watch(t, b, "meanwhile").expectInit(20 * time.Second)
	publish(t, a, "clash", video, audio)
	publish(t, b, "clash", video, audio)
	if v := hardMetric(t, b, "", "gateway_cluster_streams_unclaimed"); v < 2 {
		t.Errorf("gateway_cluster_streams_unclaimed = %v, want 2 or more", v)
	}

	natstest.Start(t, server.Options{JetStream: true, Port: port})
	waitFor(t, "node A lists meanwhile on node-b", 30*time.Second, func() bool {
		var l []struct{ Name, Node string }
		getJSON(t, a.base+"/api/streams", &l)
		for _, s := range l {
			if s.Name == "meanwhile" && s.Node == "node-b" {
				return true
			}
		}
		return false
	})
	waitFor(t, "clash live on one node only", 30*time.Second, func() bool {
		return a.g.Live("clash") != b.g.Live("clash")
	})
	owner, lost := a, b
	if b.g.Live("clash") {
		owner, lost = b, a
	}
	if v := hardMetric(t, lost, "", "gateway_cluster_publishes_conflicted_total"); v != 1 {
		t.Errorf("conflicts counted on the node that gave clash up: %v", v)
	}
	_ = owner
	getJSON(t, b.base+"/readyz", &ready)
	if ready["cluster"] != "connected" {
		t.Errorf("/readyz after NATS is back: %v", ready)
	}
	// B follows A's stream again for a new viewer.
	watch(t, b, "remote").expectInit(20 * time.Second)
}

// TestClusterNodeLeavesNoGoroutines: a node joins, relays a stream of
// another node to a viewer, and leaves; every goroutine it started is gone,
// and so are those the origin started to serve it (once its interest has
// expired).
func TestClusterNodeLeavesNoGoroutines(t *testing.T) {
	nats := startNATS(t)
	a := clusterNode(t, nats, "node-a", nil)
	video, audio := testMedia(t)
	publish(t, a, "leak", video, audio)
	// The stream is live once the connection is up; Pion starts a track's
	// goroutines with its first packet: wait for both kinds of media before
	// counting what is already running.
	waitBothKinds(t, a, "leak")
	testHTTP.CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()

	b := clusterNode(t, nats, "node-b", nil)
	v := watch(t, b, "leak")
	v.expectInit(20 * time.Second)
	if segs, _ := v.collect(time.Second); len(segs) == 0 {
		t.Fatal("nothing relayed to node B")
	}
	var nodes []struct{ ID string }
	getJSON(t, b.base+"/api/nodes", &nodes)
	v.c.Close()
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	testHTTP.CloseIdleConnections()
	// The origin stops feeding the stream three interest periods (6 s)
	// after the edge's last want.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := goleak.Find(baseline)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after node B left: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestClusterLocalSource: a local source's name is cluster-wide too. A
// viewer on A starts A's on-demand test pattern, which A claims; a viewer on
// B gets A's pattern through the relay (B's own source of that name waits),
// and a publisher of the name on B gets 409.
func TestClusterLocalSource(t *testing.T) {
	nats := startNATS(t)
	a := clusterNode(t, nats, "node-a", nil)
	b := clusterNode(t, nats, "node-b", nil)
	if _, ok := configs.Default().Sources["testpattern"]; !ok {
		t.Fatal("the default config has no testpattern source")
	}
	watch(t, a, "testpattern").expectInit(30 * time.Second)
	waitFor(t, "node B lists testpattern on node-a", 10*time.Second, func() bool {
		var l []struct{ Name, Node string }
		getJSON(t, b.base+"/api/streams", &l)
		for _, s := range l {
			if s.Name == "testpattern" && s.Node == "node-a" {
				return true
			}
		}
		return false
	})
	vb := watch(t, b, "testpattern")
	_, init := vb.expectInit(30 * time.Second)
	segs, _ := vb.collect(2 * time.Second)
	if n := checkPlayable(t, "node A's test pattern on node B", init, segs); n < 20 {
		t.Fatalf("%d video samples in 2 s", n)
	}
	if v := hardMetric(t, b, "", "gateway_cluster_streams_followed"); v != 1 {
		t.Errorf("node B follows %v streams, want 1 (its own source must wait)", v)
	}
	if r := do(t, "POST", b.base+"/whip/testpattern", "application/sdp", vp8OnlyOffer(t), nil); r.status != http.StatusConflict {
		t.Fatalf("a publisher on node B of node A's source: %+v, want 409", r)
	}
}

// TestClusterOriginKilled: the origin of a stream is killed (SIGKILL). Its
// entry lapses after the TTL and the viewers on B get eos and wait on the
// same socket. The publisher, a capture agent given node C as a fallback,
// publishes there by itself, and the viewers on B play again.
func TestClusterOriginKilled(t *testing.T) {
	nats := startNATS(t)
	b := clusterNode(t, nats, "node-b", nil)
	c := clusterNode(t, nats, "node-c", nil)
	a := startChildGateway(t, nats.ClientURL(), "node-a")
	ag, err := agent.New(testCapture(t, time.Second), agent.Config{
		URL: a.base + "/whip/crash", Fallbacks: []string{c.base + "/whip/crash"},
		LoopbackOnly: true, MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	v := watch(t, b, "crash")
	_, init := v.expectInit(30 * time.Second)
	segs, _ := v.collect(2 * time.Second)
	checkPlayable(t, "node A's stream on node B", init, segs)

	a.kill()
	v.expectControl("eos", 30*time.Second)
	_, init = v.expectInit(30 * time.Second)
	if !c.g.Live("crash") {
		t.Fatal("the stream came back, but not from node C")
	}
	segs, ctl := v.collect(3 * time.Second)
	if ctl != nil {
		t.Fatalf("after the agent moved to node C: %+v", ctl)
	}
	if n := checkPlayable(t, "republished on node C by the agent, watched on B", init, segs); n < 20 {
		t.Fatalf("%d video samples in 3 s", n)
	}
	if st := ag.Stats(); st.Sessions != 2 {
		t.Errorf("agent sessions %d, want 2 (node A, then node C)", st.Sessions)
	}
}

// TestClusterNATSServerLost: the gateways use a NATS cluster of three
// servers; the server an edge or the origin is connected to dies mid-stream.
// The node reconnects to another server and the edge's viewer plays on
// (at most a skip to the next keyframe), without goaway or eos.
func TestClusterNATSServerLost(t *testing.T) {
	var ports [3]int
	var routes []*url.URL
	for i := range ports {
		ports[i] = freePortNum(t)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*server.Server
	var urls []string
	for i, name := range []string{"n1", "n2", "n3"} {
		s := natstest.Start(t, server.Options{ServerName: name, JetStream: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]}, Routes: routes})
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	edit := func(c *configs.Config) { c.Cluster.NATSURLs = urls }
	a := clusterNode(t, servers[0], "node-a", edit)
	b := clusterNode(t, servers[0], "node-b", edit)
	video, audio := testMedia(t)
	publish(t, a, "steady", video, audio)
	v := watch(t, b, "steady")
	_, init := v.expectInit(60 * time.Second)
	segs, _ := v.collect(time.Second)
	before := checkPlayable(t, "before the loss", init, segs)

	// Kill the server that carries the most of the gateways' connections.
	victim := servers[0]
	for _, s := range servers {
		if s.NumClients() > victim.NumClients() {
			victim = s
		}
	}
	if victim.NumClients() == 0 {
		t.Fatal("no NATS server has a client")
	}
	t.Logf("killing NATS server %s (%d clients)", victim.Name(), victim.NumClients())
	victim.Shutdown()
	victim.WaitForShutdown()

	// Media keeps arriving: over 8 s, at least 4 s of video. (after
	// continues segs: the same socket, nothing read in between.)
	after := segs
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		s, ctl := v.collect(time.Until(deadline))
		after = append(after, s...)
		if ctl != nil && ctl.Type != "init" {
			t.Fatalf("viewer on node B after the NATS server died: %+v", ctl)
		}
		if ctl != nil { // a new init after a skip: its binary segment follows
			m, err := v.c.Next(5 * time.Second)
			if err != nil || m.Binary == nil {
				t.Fatalf("init without its segment: %v", err)
			}
			init, after, before = m.Binary, nil, 0
		}
	}
	if n := checkPlayable(t, "after the NATS server died", init, after); n-before < 120 {
		t.Fatalf("%d video samples in 8 s after the loss, want 120 or more", n)
	}
	watch(t, b, "steady").expectInit(20 * time.Second)
}

// waitBothKinds waits until a viewer of stream on gw receives audio and
// video samples: the publisher's tracks are both being read.
func waitBothKinds(t *testing.T, gw *testGateway, stream string) {
	t.Helper()
	v := watch(t, gw, stream)
	defer v.c.Close()
	_, init := v.expectInit(20 * time.Second)
	in, err := fmp4check.ParseInit(init)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for !seen["audio"] || !seen["video"] {
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: only %v in 20 s", stream, seen)
		}
		segs, ctl := v.collect(500 * time.Millisecond)
		if ctl != nil {
			t.Fatalf("stream %s: %+v while waiting for media", stream, ctl)
		}
		for _, seg := range segs {
			samples, err := fmp4check.ParseSegment(in, seg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range samples {
				seen[in.Tracks[s.TrackID].Kind] = true
			}
		}
	}
}

func freePortNum(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestClusterBrowserPublisherMoves: publish.html in Chromium publishes to
// node A, which is killed (SIGKILL). The page publishes the same capture to
// another node of the list it read from /api/nodes by itself (409 while A's
// claim lapses), and a viewer on node B plays it again.
func TestClusterBrowserPublisherMoves(t *testing.T) {
	nats := startNATS(t)
	b := clusterNodeAt(t, nats, "node-b", nil)
	clusterNodeAt(t, nats, "node-c", nil)
	a := startChildGateway(t, nats.ClientURL(), "node-a")
	browser := newBrowser(t)
	pub := newTab(t, browser, a.base+"/publish.html?stream=moving&autostart=1&width=640&height=360")
	pubDebug := `JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error),
	  server: window.publisher && String(window.publisher.server), nodes: window.publisher && window.publisher.nodes,
	  failovers: window.publisher && window.publisher.failovers})`
	waitJS(t, pub, "publisher connected to node A, knowing two other nodes",
		`document.body.dataset.state === 'connected' && window.publisher.nodes.length === 2`, 45*time.Second, pubDebug)
	v := watch(t, b, "moving")
	_, init := v.expectInit(30 * time.Second)
	segs, _ := v.collect(2 * time.Second)
	checkPlayable(t, "the browser's publish on node A, watched on B", init, segs)

	a.kill()
	// eos once A's entry lapses, then the init of the publish on its new node.
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := v.c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("viewer on B after node A died: %v; publisher %s", err, evalJS[string](t, pub, pubDebug))
		}
		if m.Control == nil {
			continue
		}
		if m.Control.Type == "init" {
			break
		}
		if m.Control.Type != "eos" && m.Control.Type != "waiting" {
			t.Fatalf("viewer on B after node A died: %+v", m.Control)
		}
	}
	m, err := v.c.Next(10 * time.Second)
	if err != nil || m.Binary == nil {
		t.Fatalf("init text without its segment: %v", err)
	}
	segs, ctl := v.collect(2 * time.Second)
	if ctl != nil {
		t.Fatalf("after the publisher moved: %+v", ctl)
	}
	checkPlayable(t, "the browser's publish after it moved", m.Binary, segs)
	waitJS(t, pub, "publisher connected again", `document.body.dataset.state === 'connected'`, 30*time.Second, pubDebug)
	server := evalJS[string](t, pub, `String(window.publisher.server)`)
	if strings.HasPrefix(server, a.base) || evalJS[int](t, pub, `window.publisher.failovers`) < 1 {
		t.Fatalf("publisher after node A died: %s", evalJS[string](t, pub, pubDebug))
	}
	t.Logf("the publisher moved to %s", server)
}
