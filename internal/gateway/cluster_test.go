package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mseway/mseway/configs"
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
}
