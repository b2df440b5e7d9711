package relay

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/promtext"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/relaywire"
)

const period = 50 * time.Millisecond

// checkRun checks that events are init then consecutive segments, starting
// at a keyframe, each with its exact data, and returns the first and last
// segment numbers.
func checkRun(t *testing.T, events []event, init string, size int) (first, last int) {
	t.Helper()
	if len(events) < 2 || events[0].String() != "init "+init {
		t.Fatalf("want init %q then segments, got %v", init, events[:min(len(events), 5)])
	}
	for i, e := range events[1:] {
		if e.kind != "seg" {
			t.Fatalf("event %d: %v, want a segment", i+1, e)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(string(e.data[:10]), "seg-"))
		if err != nil {
			t.Fatalf("event %d: %v", i+1, e)
		}
		if i == 0 {
			first = n
			if !e.key {
				t.Fatalf("first segment %d is not a keyframe", n)
			}
		} else if n != last+1 {
			t.Fatalf("segment %d after %d: a gap or a duplicate", n, last)
		}
		if !bytes.Equal(e.data, segData(n, size)) {
			t.Fatalf("segment %d: data differs", n)
		}
		last = n
	}
	return first, last
}

// An edge joins while the origin keeps producing: the snapshot races live
// messages on purpose, five times (a fresh attach, then joins on a running
// feed). Its hub gets the init, then every segment from a keyframe on, in
// order, once.
func TestJoinWhileProducing(t *testing.T) { testJoinWhileProducing(t, "cam") }

// A stream name with dots: its subject token is escaped.
func TestStreamNameWithDots(t *testing.T) {
	if Token("cam.1") != "cam~1" || streamOf("mseway.media.cam~1", MediaPrefix) != "cam.1" {
		t.Fatalf("token %q", Token("cam.1"))
	}
	testJoinWhileProducing(t, "cam.1")
}

func testJoinWhileProducing(t *testing.T, stream string) {
	s := startNATS(t, 0)
	a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	var media atomic.Int64
	sub, err := connect(t, s).Subscribe(MediaPrefix+Token(stream), func(*nats.Msg) { media.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	const size = 2000
	pub := publish(t, a.reg, stream, "i1")
	src := &source{pub: pub, keyEvery: 10, size: size}
	var produced atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			src.next()
			produced.Add(1)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	eventually(t, "a GOP under way", func() bool { return produced.Load() >= 25 })
	for round := range 5 {
		time.Sleep(time.Duration(3+7*round) * time.Millisecond) // joins land anywhere in a GOP
		at := int(produced.Load())
		rec := attach(t, b.reg, stream)
		unfollow := b.follow(t, stream)
		eventually(t, "100 segments at the edge", func() bool { return len(rec.get()) > 100 })
		unfollow()
		events := rec.get()
		if events[len(events)-1].kind == "end" { // stop closed the publication
			events = events[:len(events)-1]
		}
		first, last := checkRun(t, events, "i1", size)
		if first > at+10 {
			t.Errorf("round %d: joined at %d, first segment %d: the GOP was not in the snapshot", round, at, first)
		}
		t.Logf("round %d: produced %d at join, got %d..%d", round, at, first, last)
	}
	if m := a.origin.m; m.dropped.Load() != 0 || m.snapshotsOut.Load() != 5 {
		t.Errorf("origin: %d dropped, %d snapshots served", m.dropped.Load(), m.snapshotsOut.Load())
	}
	if m := b.edge.m; m.gaps.Load() != 0 || m.snapshotsIn.Load() != 5 {
		t.Errorf("edge: %d gaps, %d snapshots applied", m.gaps.Load(), m.snapshotsIn.Load())
	}
	t.Logf("edge: %d live messages held during joins, %d dropped as included in a snapshot", b.edge.held.Load(), b.edge.stale.Load())
	if media.Load() == 0 {
		t.Error("nothing on the media subject")
	}
}

// A keyframe larger than the server's max_payload arrives whole, in the
// snapshot and live.
func TestLargeSegmentIsSplit(t *testing.T) {
	s := startNATS(t, 64<<10)
	a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	if a.nc.MaxPayload() != 64<<10 {
		t.Fatalf("max payload %d", a.nc.MaxPayload())
	}
	const big = 200 << 10
	pub := publish(t, a.reg, "big", "i1")
	src := &source{pub: pub, keyEvery: 3, size: big}
	src.next() // 0: a keyframe of 200 KiB, in the snapshot
	src.next()
	rec := attach(t, b.reg, "big")
	defer b.follow(t, "big")()
	eventually(t, "the snapshot", func() bool { return rec.has(segName(1)) })
	for range 5 { // 3 is a live keyframe
		src.next()
	}
	eventually(t, "live segments", func() bool { return rec.has(segName(6)) })
	first, last := checkRun(t, rec.get(), "i1", big)
	if first != 0 || last != 6 {
		t.Fatalf("got %d..%d: %v", first, last, rec)
	}
	if in := b.edge.m.bytesIn.Load(); in < 7*big {
		t.Fatalf("edge got %d bytes", in)
	}
}

// A lost live message: the edge skips to the next keyframe, counts a gap and
// asks the origin for a keyframe, which reaches the publisher.
func TestGapSkipsToNextKeyframe(t *testing.T) {
	s := startNATS(t, 0)
	var asks atomic.Int64
	a := newNode(t, s).withOrigin(t, OriginOptions{
		Period:          period,
		RequestKeyframe: func(stream string) { asks.Add(1) },
		dropMessage: func(m *relaywire.Message) bool {
			return m.Kind == relaywire.KindSegment && bytes.HasPrefix(m.Segment.Data, []byte(segName(12)))
		},
	})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	pub := publish(t, a.reg, "g", "i1")
	src := &source{pub: pub, keyEvery: 5, size: 100}
	for range 7 {
		src.next()
	}
	rec := attach(t, b.reg, "g")
	defer b.follow(t, "g")()
	eventually(t, "the snapshot", func() bool { return rec.has(segName(6)) })
	if asks.Load() != 0 {
		t.Fatalf("%d keyframe requests before the gap", asks.Load())
	}
	for range 13 {
		src.next()
	}
	eventually(t, "segment 19", func() bool { return rec.has(segName(19)) })
	var got []string
	for _, e := range rec.get() {
		got = append(got, e.String())
	}
	want := "init i1 seg-000005* seg-000006 seg-000007 seg-000008 seg-000009 seg-000010* seg-000011 seg-000015* seg-000016 seg-000017 seg-000018 seg-000019"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	if g := b.edge.m.gaps.Load(); g != 1 {
		t.Fatalf("%d gaps", g)
	}
	eventually(t, "a keyframe request at the origin", func() bool { return asks.Load() == 1 })
}

// eos at the origin reaches the edge's viewers; a new publisher there
// reaches them as a new init, whether it comes at once or after the origin
// stopped serving the stream.
func TestEndThenNewPublisher(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause time.Duration
	}{{"at once", 0}, {"later", 10 * period}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startNATS(t, 0)
			a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
			b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
			pub := publish(t, a.reg, "e", "i1")
			src := &source{pub: pub, keyEvery: 5, size: 100}
			for range 3 {
				src.next()
			}
			rec := attach(t, b.reg, "e")
			defer b.follow(t, "e")()
			eventually(t, "the snapshot", func() bool { return rec.has(segName(2)) })
			src.next()
			pub.Close()
			eventually(t, "eos at the edge", func() bool { return rec.has("end") })
			if live, _ := b.reg.State("e"); live {
				t.Error("the stream is still live at the edge after eos")
			}
			time.Sleep(tc.pause)
			pub2 := publish(t, a.reg, "e", "i2")
			src2 := &source{pub: pub2, keyEvery: 5, size: 100, n: 100}
			for i := 0; !rec.has(segName(src2.n-1)) || src2.n < 103; i++ {
				src2.next() // later: the first ones go while the origin serves no edge
				time.Sleep(period / 5)
				if i > 500 {
					t.Fatalf("the new publisher did not reach the edge: %v", rec)
				}
			}
			events := rec.get()
			var end int
			for i, e := range events {
				if e.kind == "end" {
					end = i
					break
				}
			}
			if got := events[end-1].String(); got != segName(3) {
				t.Fatalf("last segment before eos %q: %v", got, rec)
			}
			checkRun(t, events[:end], "i1", 100)
			checkRun(t, events[end+1:], "i2", 100)
		})
	}
}

// Two edges follow a stream: the origin publishes each message once; when
// both stop, it stops within a few periods.
func TestInterest(t *testing.T) {
	s := startNATS(t, 0)
	a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	c := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0
	var j relaywire.Joiner
	sub, err := connect(t, s).Subscribe(MediaPrefix+"*", func(msg *nats.Msg) {
		m, ok, _ := j.Add(msg.Data)
		mu.Lock()
		defer mu.Unlock()
		total++
		if ok && m.Kind == relaywire.KindSegment {
			seen[string(m.Segment.Data[:10])]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	counts := func() (int, map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		return total, seen
	}

	pub := publish(t, a.reg, "i", "i1")
	src := &source{pub: pub, keyEvery: 5, size: 100}
	src.next()
	recB, recC := attach(t, b.reg, "i"), attach(t, c.reg, "i")
	stopB, stopC := b.follow(t, "i"), c.follow(t, "i")
	eventually(t, "both edges joined", func() bool { return recB.has(segName(0)) && recC.has(segName(0)) })
	if got := a.origin.Relaying(); len(got) != 1 || got[0] != "i" {
		t.Fatalf("relaying %v", got)
	}
	for range 20 {
		src.next()
	}
	eventually(t, "both edges got the segments", func() bool { return recB.has(segName(20)) && recC.has(segName(20)) })
	_, seenNow := counts()
	for i := 1; i <= 20; i++ {
		mu.Lock()
		n := seenNow[segName(i)]
		mu.Unlock()
		if n != 1 {
			t.Fatalf("segment %d published %d times", i, n)
		}
	}
	stopB()
	stopC()
	eventually(t, "the origin stops serving", func() bool { return len(a.origin.Relaying()) == 0 })
	before, _ := counts()
	for range 10 {
		src.next()
	}
	time.Sleep(4 * period)
	if after, _ := counts(); after != before {
		t.Fatalf("%d messages published after the edges left", after-before)
	}
	if live, _ := b.reg.State("i"); live {
		t.Error("stop left the edge's publication live")
	}
	if m := b.edge.m; m.followed.Load() != 0 {
		t.Errorf("edge b follows %d streams", m.followed.Load())
	}
}

// A node that relays a stream never serves it: with an Origin and an Edge
// on one registry, a third node's edge gets the stream from its origin only.
func TestRelayingNodeIsNoOrigin(t *testing.T) {
	s := startNATS(t, 0)
	a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period}).withOrigin(t, OriginOptions{Period: period})
	c := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	var media atomic.Int64
	sub, err := connect(t, s).Subscribe(MediaPrefix+"r", func(*nats.Msg) { media.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	pub := publish(t, a.reg, "r", "i1")
	src := &source{pub: pub, keyEvery: 5, size: 100}
	src.next()
	recB, recC := attach(t, b.reg, "r"), attach(t, c.reg, "r")
	defer b.follow(t, "r")()
	eventually(t, "b joined", func() bool { return recB.has(segName(0)) })
	defer c.follow(t, "r")()
	eventually(t, "c joined", func() bool { return recC.has(segName(0)) })
	before := media.Load()
	for range 10 {
		src.next()
	}
	eventually(t, "both edges got the segments", func() bool { return recB.has(segName(10)) && recC.has(segName(10)) })
	time.Sleep(2 * period)
	if n := media.Load() - before; n != 10 {
		t.Fatalf("%d media messages for 10 segments", n)
	}
	if got := b.origin.Relaying(); len(got) != 0 {
		t.Fatalf("the relaying node serves %v", got)
	}
	if n := b.origin.m.snapshotsOut.Load(); n != 0 {
		t.Fatalf("the relaying node answered %d snapshots", n)
	}
	if _, err := b.edge.Follow("r", "A"); err != nil {
		t.Fatalf("a second Follow: %v", err) // shared; its stop is never called: Close ends it
	}
}

// A publisher that reconnects to another node: the edge follows the
// stream's subject, not a node, and the new origin's init reaches it.
func TestOriginMoves(t *testing.T) {
	s := startNATS(t, 0)
	a := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	c := newNode(t, s).withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	pub := publish(t, a.reg, "m", "i1")
	src := &source{pub: pub, keyEvery: 5, size: 100}
	src.next()
	rec := attach(t, b.reg, "m")
	defer b.follow(t, "m")()
	eventually(t, "the snapshot", func() bool { return rec.has(segName(0)) })
	pub.Close() // the publisher's node lost it
	eventually(t, "eos", func() bool { return rec.has("end") })
	pub2 := publish(t, c.reg, "m", "i2")
	src2 := &source{pub: pub2, keyEvery: 5, size: 100, n: 100}
	for i := 0; !rec.has(segName(src2.n - 1)); i++ {
		src2.next()
		time.Sleep(period / 5)
		if i > 500 {
			t.Fatalf("the new origin did not reach the edge: %v", rec)
		}
	}
	events := rec.get()
	end := 0
	for events[end].kind != "end" {
		end++
	}
	checkRun(t, events[end+1:], "i2", 100)
}

func TestMetrics(t *testing.T) {
	var m Metrics
	m.messagesOut.Add(3)
	m.gaps.Add(1)
	text := promtext.Text(t, &m)
	for _, want := range []string{
		`gateway_relay_messages_total{dir="out"} 3`,
		`gateway_relay_messages_total{dir="in"} 0`,
		`gateway_relay_bytes_total{dir="in"} 0`,
		`gateway_relay_snapshots_total{dir="out"} 0`,
		"gateway_relay_gaps_total 1",
		"gateway_relay_dropped_total 0",
		"gateway_relay_followed_streams 0",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	if n := strings.Count(text, "# TYPE gateway_relay_messages_total"); n != 1 {
		t.Errorf("%d TYPE lines for one family", n)
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ subject, stream string }{
		{"mseway.want.cam", "cam"},
		{"mseway.want.a~b~c", "a.b.c"},
		{"mseway.want.~", ""}, // "." is no stream name
		{"mseway.want.a.b", ""},
		{"mseway.want.", ""},
		{"mseway.snap.cam", ""},
		{"mseway.want." + strings.Repeat("x", 65), ""},
	} {
		if got := streamOf(tc.subject, WantPrefix); got != tc.stream {
			t.Errorf("streamOf(%q) = %q, want %q", tc.subject, got, tc.stream)
		}
	}
}

func TestFollowRefused(t *testing.T) {
	s := startNATS(t, 0)
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	if _, err := b.edge.Follow("a/b", "A"); err == nil {
		t.Error("an invalid name was followed")
	}
	publish(t, b.reg, "local", "i1")
	if _, err := b.edge.Follow("local", "A"); err == nil {
		t.Error("a stream with a local publisher was followed")
	}
	b.edge.Close()
	if _, err := b.edge.Follow("x", "A"); err != ErrClosed {
		t.Errorf("Follow after Close: %v", err)
	}
}

// With no GOP cache at the origin, the hub gives a new Output the init alone
// and then the segments from the next keyframe on: the edge starts with a
// snapshot of just the init and plays from that keyframe, and follows a new
// init after it.
func TestNoGOPCacheStartsAtNextInit(t *testing.T) {
	s := startNATS(t, 0)
	def := configs.Default()
	reg := mseout.NewRegistry(mseout.Options{Limits: def.Limits, Logger: quiet, Settings: func(string) configs.Stream {
		st := def.StreamDefaults
		st.GOPCache = false
		return st
	}})
	t.Cleanup(reg.Close)
	a := &node{nc: connect(t, s), reg: reg}
	a.withOrigin(t, OriginOptions{Period: period})
	b := newNode(t, s).withEdge(t, EdgeOptions{Period: period})
	pub := publish(t, a.reg, "n", "i1")
	src := &source{pub: pub, keyEvery: 5, size: 100}
	src.next()
	rec := attach(t, b.reg, "n")
	defer b.follow(t, "n")()
	for range 10 {
		src.next()
		time.Sleep(period / 5)
	}
	if n := a.origin.m.snapshotsOut.Load(); n < 1 {
		t.Fatalf("%d snapshots served, edge got %v", n, rec)
	}
	checkRun(t, rec.get(), "i1", 100) // the init, then consecutive segments from a keyframe
	rec.reset()
	pub.WriteInit(testInit("i2"))
	for i := 0; !rec.has(segName(src.n - 1)); i++ {
		src.n = (src.n + 4) / 5 * 5 // a keyframe after the init
		for range 5 {
			src.next()
		}
		time.Sleep(period / 5)
		if i > 100 {
			t.Fatalf("the edge did not start at the new init: %v", rec)
		}
	}
	checkRun(t, rec.get(), "i2", 100)
}
