package mseout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/remux"
)

// newServer serves a registry over plain TCP.
func newServer(t *testing.T, edit func(*configs.Config)) (*mseout.Registry, string) {
	t.Helper()
	return newServerOn(t, plainTCP, edit)
}

// newServerOn serves a registry over mode.
func newServerOn(t *testing.T, m netMode, edit func(*configs.Config)) (*mseout.Registry, string) {
	t.Helper()
	cfg := configs.Default()
	if edit != nil {
		edit(cfg)
	}
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits})
	return r, serveRegistry(t, m, r)
}

func dial(t *testing.T, url string) *viewerclient.Conn {
	t.Helper()
	c, _, err := viewerclient.DialTLS(context.Background(), url, clientTLS(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func next(t *testing.T, c *viewerclient.Conn) viewerclient.Message {
	t.Helper()
	m, err := c.Next(5 * time.Second)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return m
}

func expectText(t *testing.T, c *viewerclient.Conn, typ string) *viewerclient.Control {
	t.Helper()
	m := next(t, c)
	if m.Control == nil || m.Control.Type != typ {
		t.Fatalf("got %+v / %d bytes, want %q", m.Control, len(m.Binary), typ)
	}
	return m.Control
}

func expectBinary(t *testing.T, c *viewerclient.Conn, want string) {
	t.Helper()
	m := next(t, c)
	if m.Binary == nil || string(m.Binary) != want {
		t.Fatalf("got %+v %q, want binary %q", m.Control, m.Binary, want)
	}
}

// goLive publishes stream name with init "init" and a first keyframe key.
func goLive(t testing.TB, r *mseout.Registry, name, key string) *mseout.Publication {
	t.Helper()
	pub, err := r.Publish(name, mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	pub.WriteInit(testInit("init"))
	pub.WriteSegment(segment(key, true))
	return pub
}

// join dials a viewer of a live stream and reads its join burst: init "init"
// and the keyframe key.
func join(t *testing.T, url, key string) *viewerclient.Conn {
	t.Helper()
	c := dial(t, url)
	expectText(t, c, "init")
	expectBinary(t, c, "init")
	expectBinary(t, c, key)
	return c
}

func testInit(id string) *remux.Init {
	return &remux.Init{MIME: `video/mp4; codecs="avc1.42c01f"`, Tracks: []remux.Track{{ID: 1, Kind: "video", Codec: "avc1.42c01f", Width: 640, Height: 360}}, Data: []byte(id)}
}

func segment(data string, key bool) *remux.Segment {
	return &remux.Segment{Data: []byte(data), Keyframe: key, HasVideo: true}
}

func TestWaitingInitGOPCacheEOS(t *testing.T) { eachMode(t, testWaitingInitGOPCacheEOS) }

func testWaitingInitGOPCacheEOS(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	early := dial(t, base+"demo")
	expectText(t, early, "waiting")

	var asks atomic.Int32
	pub, err := r.Publish("demo", mseout.PublisherInfo{Protocol: "test", RequestKeyframe: func() { asks.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteSegment(segment("lost: before init", true))
	pub.WriteInit(testInit("init1"))
	pub.WriteSegment(segment("k1", true))
	pub.WriteSegment(segment("d1", false))

	ctl := expectText(t, early, "init")
	if ctl.MIME == "" || len(ctl.Tracks) != 1 || ctl.Tracks[0].Width != 640 {
		t.Fatalf("init = %+v", ctl)
	}
	expectBinary(t, early, "init1")
	expectBinary(t, early, "k1")
	expectBinary(t, early, "d1")

	// A late viewer gets the init and the GOP so far, at once.
	late := dial(t, base+"demo")
	expectText(t, late, "init")
	expectBinary(t, late, "init1")
	expectBinary(t, late, "k1")
	expectBinary(t, late, "d1")

	// A new keyframe restarts the cache.
	pub.WriteSegment(segment("k2", true))
	later := dial(t, base+"demo")
	expectText(t, later, "init")
	expectBinary(t, later, "init1")
	expectBinary(t, later, "k2")

	// Viewer count reaches the publisher.
	deadline := time.After(5 * time.Second)
	for n := 0; n != 3; {
		select {
		case n = <-pub.Viewers():
		case <-deadline:
			t.Fatalf("viewer count %d, want 3", n)
		}
	}

	pub.Close()
	for _, c := range []*viewerclient.Conn{early, late, later} {
		for {
			m := next(t, c)
			if m.Control != nil {
				if m.Control.Type != "eos" {
					t.Fatalf("got %+v, want eos", m.Control)
				}
				break
			}
		}
	}
	select {
	case <-pub.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if s := r.Streams(); len(s) != 1 || s[0].Live || s[0].Viewers != 3 {
		t.Fatalf("streams after eos: %+v", s)
	}
}

func TestTakeoverAndBusy(t *testing.T) { eachMode(t, testTakeoverAndBusy) }

func testTakeoverAndBusy(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, func(c *configs.Config) {
		s := c.StreamDefaults
		s.AllowTakeover = false
		c.Streams["locked"] = s
	})
	first, err := r.Publish("open", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	first.WriteInit(testInit("a"))
	first.WriteSegment(segment("a-k", true))
	v := dial(t, base+"open")
	expectText(t, v, "init")
	expectBinary(t, v, "a")
	expectBinary(t, v, "a-k")

	// Without the say-so (an anonymous publisher), no takeover.
	if _, err := r.Publish("open", mseout.PublisherInfo{Protocol: "test"}); !errors.Is(err, mseout.ErrStreamBusy) {
		t.Fatalf("takeover without TakeOver: %v, want ErrStreamBusy", err)
	}
	if err := r.CheckPublish("open", false); !errors.Is(err, mseout.ErrStreamBusy) {
		t.Fatalf("CheckPublish without takeover: %v", err)
	}
	second, err := r.Publish("open", mseout.PublisherInfo{Protocol: "test", TakeOver: true})
	if err != nil {
		t.Fatalf("takeover refused: %v", err)
	}
	select {
	case <-first.Done():
	case <-time.After(time.Second):
		t.Fatal("replaced publication not done")
	}
	first.WriteSegment(segment("stale", false)) // ignored
	first.Close()                               // no eos: the stream is live
	second.WriteInit(testInit("b"))
	second.WriteSegment(segment("b-k", true))
	expectText(t, v, "init")
	expectBinary(t, v, "b")
	expectBinary(t, v, "b-k")

	if _, err := r.Publish("locked", mseout.PublisherInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish("locked", mseout.PublisherInfo{TakeOver: true}); !errors.Is(err, mseout.ErrStreamBusy) {
		t.Fatalf("second publish on locked stream: %v", err)
	}
	if err := r.CheckPublish("locked", true); !errors.Is(err, mseout.ErrStreamBusy) {
		t.Fatalf("CheckPublish: %v", err)
	}
}

func TestKeyframeRequestedWithoutCache(t *testing.T) { eachMode(t, testKeyframeRequestedWithoutCache) }

func testKeyframeRequestedWithoutCache(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	var asks atomic.Int32
	pub, err := r.Publish("k", mseout.PublisherInfo{RequestKeyframe: func() { asks.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteInit(testInit("i"))
	v := dial(t, base+"k") // no keyframe yet: the hub asks for one
	for deadline := time.Now().Add(5 * time.Second); asks.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no keyframe request for a viewer without a cached keyframe")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pub.WriteSegment(segment("d", false)) // a viewer never starts on a delta
	pub.WriteSegment(segment("k", true))
	expectText(t, v, "init")
	expectBinary(t, v, "i")
	expectBinary(t, v, "k")
}

func TestLimitsAndBadMessages(t *testing.T) { eachMode(t, testLimitsAndBadMessages) }

func testLimitsAndBadMessages(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, func(c *configs.Config) {
		c.Limits.MaxViewersPerStream = 1
		s := c.StreamDefaults
		s.WaitForPublisher = false
		c.Streams["strict"] = s
	})
	a := dial(t, base+"one")
	expectText(t, a, "waiting")
	b := dial(t, base+"one")
	if ctl := expectText(t, b, "error"); !strings.Contains(ctl.Message, "too many viewers") {
		t.Fatalf("got %q", ctl.Message)
	}
	c := dial(t, base+"strict")
	if ctl := expectText(t, c, "error"); !strings.Contains(ctl.Message, "not found") {
		t.Fatalf("got %q", ctl.Message)
	}
	// Stats are accepted and shown; garbage gets an error and a close.
	if err := a.SendText(`{"type":"stats","latency":0.25,"buffered":0.5,"decodedFrames":100,"droppedFrames":2}`); err != nil {
		t.Fatal(err)
	}
	if err := a.SendText(`{"type":"future-message"}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.Streams()
		if len(s) > 0 && s[0].ViewerStats != nil && s[0].ViewerStats.LatencyAvg == 0.25 && s[0].ViewerStats.DroppedFrames == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats not visible: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.SendText("not json"); err != nil {
		t.Fatal(err)
	}
	if ctl := expectText(t, a, "error"); !strings.Contains(ctl.Message, "JSON") {
		t.Fatalf("got %q", ctl.Message)
	}
	if _, err := a.Next(5 * time.Second); err == nil || errors.Is(err, viewerclient.ErrTimeout) {
		t.Fatalf("not closed after error: %v", err)
	}
}

func TestShutdownTellsViewers(t *testing.T) { eachMode(t, testShutdownTellsViewers) }

func testShutdownTellsViewers(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	v := dial(t, base+"s")
	expectText(t, v, "waiting")
	r.Close()
	// A goaway (not an error: the viewer is not at fault) and a close
	// 1001, going away: the player reconnects.
	m := next(t, v)
	if m.Control == nil || m.Control.Type != "goaway" || !strings.Contains(m.Control.Reason, "shutting down") {
		t.Fatalf("got %+v, want a goaway", m.Control)
	}
	if _, err := v.Next(5 * time.Second); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("after the goaway: %v, want close 1001", err)
	}
	if _, err := r.Publish("s", mseout.PublisherInfo{}); !errors.Is(err, mseout.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestMaxStreams(t *testing.T) { eachMode(t, testMaxStreams) }

func testMaxStreams(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, func(c *configs.Config) { c.Limits.MaxStreams = 1 })
	v := dial(t, base+"b") // a waiting viewer makes a hub, not a live stream
	expectText(t, v, "waiting")
	if _, err := r.Publish("a", mseout.PublisherInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish("b", mseout.PublisherInfo{}); !errors.Is(err, mseout.ErrTooManyStreams) {
		t.Fatalf("second live stream: %v", err)
	}
	if _, err := r.Publish("a", mseout.PublisherInfo{TakeOver: true}); err != nil {
		t.Fatalf("takeover of the live stream counts no new stream: %v", err)
	}
}

// Watch signals a stream's publisher and viewer changes and the registry's
// close; State reports them.
func TestWatchAndState(t *testing.T) {
	r, base := newServer(t, nil)
	changed, stop := r.Watch("w")
	defer stop()
	expect := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no signal for %s", what)
		}
	}
	state := func(live bool, viewers int) {
		t.Helper()
		if l, n := r.State("w"); l != live || n != viewers {
			t.Fatalf("State = %v, %d; want %v, %d", l, n, live, viewers)
		}
	}
	state(false, 0)
	v := dial(t, base+"w")
	expectText(t, v, "waiting")
	expect("a viewer joining")
	state(false, 1)
	pub, err := r.Publish("w", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	expect("a publisher")
	state(true, 1)
	pub.Close()
	expect("the publisher leaving")
	state(false, 1)
	v.Close()
	expect("the viewer leaving")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n := r.State("w"); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("viewer still counted")
		}
	}
	select { // drain a coalesced signal
	case <-changed:
	default:
	}
	r.Close()
	expect("the registry closing")
}

// Viewer stats with numbers no player measures are ignored (two latencies of
// 1e308 used to make /api/streams answer 200 with an empty body), and so are
// reports faster than one per 250 ms.
func TestViewerStatsAreChecked(t *testing.T) {
	r, base := newServer(t, nil)
	a := dial(t, base+"s")
	b := dial(t, base+"s")
	expectText(t, a, "waiting")
	expectText(t, b, "waiting")
	for _, c := range []*viewerclient.Conn{a, b} {
		if err := c.SendText(`{"type":"stats","latency":1e308,"buffered":1,"decodedFrames":1,"droppedFrames":0}`); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, r, "gateway_viewer_stats_ignored_total") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("implausible stats not ignored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := r.Streams(); len(s) != 1 || s[0].ViewerStats != nil {
		t.Fatalf("implausible stats reached the API: %+v", s)
	}
	for i := range 50 {
		if err := a.SendText(fmt.Sprintf(`{"type":"stats","latency":0.2,"buffered":0.5,"decodedFrames":%d,"droppedFrames":0}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for metric(t, r, "gateway_viewer_stats_ignored_total") < 3 {
		if time.Now().After(deadline) {
			t.Fatal("a flood of stats was taken whole")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		s := r.Streams()
		if len(s) == 1 && s[0].ViewerStats != nil && s[0].ViewerStats.LatencyAvg == 0.2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plausible stats not shown: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One address holds at most limits.max_viewers_per_ip viewer sockets; a
// socket that closes frees its slot.
func TestViewersPerIP(t *testing.T) {
	r, base := newServer(t, func(c *configs.Config) { c.Limits.MaxViewersPerIP = 2 })
	a := dial(t, base+"x")
	expectText(t, a, "waiting")
	b := dial(t, base+"y")
	expectText(t, b, "waiting")
	c := dial(t, base+"z")
	if ctl := expectText(t, c, "error"); !strings.Contains(ctl.Message, "from your address") {
		t.Fatalf("third viewer from one address: %q", ctl.Message)
	}
	if n := metric(t, r, "gateway_viewers_refused_per_ip_total"); n != 1 {
		t.Fatalf("refusals counted: %d", n)
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := dial(t, base+"z")
		m := next(t, d)
		if m.Control != nil && m.Control.Type == "waiting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot of a closed viewer was not freed: %+v", m.Control)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Viewers that leave are counted by why: the viewer closed, a protocol
// error, the gateway shutting down.
func TestDisconnectsByReason(t *testing.T) {
	r, base := newServer(t, nil)
	left := func(reason string) int64 {
		t.Helper()
		return metric(t, r, `gateway_viewer_disconnects_total{reason="`+reason+`"}`)
	}
	wait := func(reason string, n int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for left(reason) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d disconnects counted, want %d", reason, left(reason), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a := dial(t, base+"s")
	expectText(t, a, "waiting")
	a.Close()
	wait("viewer_closed", 1)
	b := dial(t, base+"s")
	expectText(t, b, "waiting")
	if err := b.SendText("not json"); err != nil {
		t.Fatal(err)
	}
	wait("protocol_error", 1)
	c := dial(t, base+"s")
	expectText(t, c, "waiting")
	r.Close()
	wait("shutdown", 1)
	if left("panic") != 0 || left("write_error") != 0 {
		t.Fatalf("panic %d, write_error %d", left("panic"), left("write_error"))
	}
}

// Goaway sends one stream's viewers away; the others and the publication
// stay.
func TestGoawayOneStream(t *testing.T) { eachMode(t, testGoawayOneStream) }

func testGoawayOneStream(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	gone := dial(t, base+"s")
	expectText(t, gone, "waiting")
	stays := dial(t, base+"other")
	expectText(t, stays, "waiting")
	if n := r.Goaway("s", "lost the cluster"); n != 1 {
		t.Fatalf("Goaway sent %d viewers away, want 1", n)
	}
	if n := r.Goaway("nobody", "x"); n != 0 {
		t.Fatalf("Goaway of an unknown stream: %d", n)
	}
	m := next(t, gone)
	if m.Control == nil || m.Control.Type != "goaway" || m.Control.Reason != "lost the cluster" {
		t.Fatalf("got %+v, want the goaway", m.Control)
	}
	if _, err := gone.Next(5 * time.Second); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("after the goaway: %v, want close 1001", err)
	}
	if _, err := stays.Next(300 * time.Millisecond); !errors.Is(err, viewerclient.ErrTimeout) {
		t.Fatalf("a viewer of another stream got %v", err)
	}
	if _, err := r.Publish("s", mseout.PublisherInfo{}); err != nil {
		t.Fatalf("publish after a goaway: %v", err)
	}
}

// The admin API: viewers listed with ids, one disconnected by id, the
// publication ended (its Done closes, viewers get eos).
func TestAdminViewersAndEnd(t *testing.T) { eachMode(t, testAdminViewersAndEnd) }

func testAdminViewersAndEnd(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	pub, err := r.Publish("s", mseout.PublisherInfo{})
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, base+"s")
	b := dial(t, base+"s")
	var list []mseout.ViewerInfo
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		list, ok = r.Viewers("s")
		if ok && len(list) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewers: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if list[0].ID == list[1].ID || list[0].Remote == "" || list[0].Since.IsZero() {
		t.Fatalf("viewer list %+v", list)
	}
	if _, ok := r.Viewers("nothing"); ok {
		t.Fatal("viewers of an unknown stream")
	}
	if r.DisconnectViewer("s", list[1].ID+100) || r.DisconnectViewer("nothing", list[0].ID) {
		t.Fatal("disconnected a viewer that does not exist")
	}
	// Which entry is a: the server sees a's local address as its remote.
	ia := slices.IndexFunc(list, func(v mseout.ViewerInfo) bool { return v.Remote == a.LocalAddr() })
	if ia < 0 {
		t.Fatalf("viewer %s not in %+v", a.LocalAddr(), list)
	}
	if !r.DisconnectViewer("s", list[ia].ID) {
		t.Fatal("DisconnectViewer: not found")
	}
	if ctl := expectText(t, a, "error"); !strings.Contains(ctl.Message, "operator") {
		t.Fatalf("disconnected viewer got %q", ctl.Message)
	}
	if _, err := a.Next(5 * time.Second); err == nil || errors.Is(err, viewerclient.ErrTimeout) {
		t.Fatalf("not closed after the error: %v", err)
	}
	if !r.EndPublish("s") {
		t.Fatal("EndPublish: no publication")
	}
	select {
	case <-pub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the publication's Done did not close")
	}
	expectText(t, b, "eos")
	if r.EndPublish("s") || r.EndPublish("nothing") {
		t.Fatal("EndPublish without a publication")
	}
}
