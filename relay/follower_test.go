package relay

import (
	"strings"
	"testing"

	"github.com/mseway/mseway/relaywire"
	"github.com/mseway/mseway/remux"
)

// The join and gap rules of a follower, message by message, in orders a
// test over NATS only meets by chance.

func newTestFollower(t *testing.T) (*follower, *recorder) {
	t.Helper()
	reg := newRegistry(t)
	rec := attach(t, reg, "u")
	e := &Edge{reg: reg, opts: EdgeOptions{PendingBytes: DefaultPendingBytes}, log: quiet, m: &Metrics{}}
	f := &follower{e: e, stream: "u", origin: "A", keyCh: make(chan struct{}, 1), snapCh: make(chan struct{}, 1)}
	f.mu.Lock()
	if !f.ensurePubLocked() {
		t.Fatal(f.pubErr)
	}
	f.reqID = 1 // the snapshot request run would send
	f.mu.Unlock()
	t.Cleanup(func() {
		f.mu.Lock()
		f.closePubLocked()
		f.mu.Unlock()
	})
	return f, rec
}

func liveSeg(epoch, seq uint64, n int, key bool) *relaywire.Message {
	return &relaywire.Message{Kind: relaywire.KindSegment, Epoch: epoch, Seq: seq, Segment: &remux.Segment{Data: segData(n, 20), Keyframe: key}}
}

func snapshot(epoch, seq uint64, init string, segs ...*relaywire.Message) *relaywire.Message {
	m := &relaywire.Message{Kind: relaywire.KindSnapshot, Epoch: epoch, Seq: seq}
	if init != "" {
		m.Init = testInit(init)
	}
	for _, s := range segs {
		m.Segments = append(m.Segments, s.Segment)
	}
	return m
}

func (f *follower) give(msgs ...*relaywire.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.live(m)
	}
}

func (f *follower) snap(m *relaywire.Message, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applySnapshot(m, id)
}

func signaled(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func wantEvents(t *testing.T, rec *recorder, want string) {
	t.Helper()
	if got := rec.String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestFollowerJoinGapEnd(t *testing.T) {
	f, rec := newTestFollower(t)
	const E = 1000
	s3, s4 := liveSeg(E, 5, 3, true), liveSeg(E, 6, 4, false)

	// Live messages before the snapshot are held; those it includes are
	// dropped, the next ones applied.
	f.give(s3, s4, liveSeg(E, 7, 5, false))
	wantEvents(t, rec, "")
	f.snap(snapshot(E, 6, "i1", s3, s4), 0) // a reply to another request
	wantEvents(t, rec, "")
	f.snap(snapshot(E, 6, "i1", s3, s4), 1)
	wantEvents(t, rec, "init i1 seg-000003* seg-000004 seg-000005")
	f.snap(snapshot(E, 7, "i1", s3, s4), 1) // a second reply: ignored
	// After it: an older epoch's leftover and a duplicate are dropped.
	f.give(liveSeg(E, 8, 6, false), &relaywire.Message{Kind: relaywire.KindEnd, Epoch: E - 1, Seq: 40}, liveSeg(E, 8, 6, false), liveSeg(E, 7, 5, false))
	wantEvents(t, rec, "init i1 seg-000003* seg-000004 seg-000005 seg-000006")
	if f.e.m.gaps.Load() != 0 || signaled(f.keyCh) || signaled(f.snapCh) {
		t.Fatal("a gap without a loss")
	}

	// A new epoch whose init was lost: a gap, and a new snapshot.
	rec.reset()
	f.give(liveSeg(E+1, 3, 11, false))
	if f.e.m.gaps.Load() != 1 || !signaled(f.snapCh) {
		t.Fatalf("gaps %d, snapshot requested %v", f.e.m.gaps.Load(), signaled(f.snapCh))
	}
	f.give(liveSeg(E+1, 4, 12, false))
	f.reqID++
	f.snap(snapshot(E+1, 3, "i2", liveSeg(E+1, 2, 10, true), liveSeg(E+1, 3, 11, false)), f.reqID)
	wantEvents(t, rec, "init i2 seg-000010* seg-000011 seg-000012")

	// A lost segment: the next ones are dropped until a keyframe, which is
	// asked for.
	rec.reset()
	f.give(liveSeg(E+1, 6, 14, false), liveSeg(E+1, 7, 15, false), liveSeg(E+1, 8, 16, true), liveSeg(E+1, 9, 17, false))
	wantEvents(t, rec, "seg-000016* seg-000017")
	if f.e.m.gaps.Load() != 2 || !signaled(f.keyCh) {
		t.Fatalf("gaps %d", f.e.m.gaps.Load())
	}

	// End: eos, the stream is not live; the next epoch publishes again.
	rec.reset()
	f.give(&relaywire.Message{Kind: relaywire.KindEnd, Epoch: E + 1, Seq: 10})
	if live, _ := f.e.reg.State("u"); live {
		t.Fatal("live after an end")
	}
	f.give(&relaywire.Message{Kind: relaywire.KindInit, Epoch: E + 2, Seq: 1, Init: testInit("i3")}, liveSeg(E+2, 2, 20, true))
	wantEvents(t, rec, "end init i3 seg-000020*")
	if live, _ := f.e.reg.State("u"); !live {
		t.Fatal("not live after a new init")
	}
	// A takeover at the origin (a new epoch, no end): a new init.
	rec.reset()
	f.give(&relaywire.Message{Kind: relaywire.KindInit, Epoch: E + 3, Seq: 1, Init: testInit("i4")}, liveSeg(E+3, 2, 30, true))
	wantEvents(t, rec, "init i4 seg-000030*")
	if g := f.e.m.gaps.Load(); g != 2 {
		t.Fatalf("gaps %d", g)
	}
}

// A snapshot with no GOP: the edge waits for the next keyframe and asks
// for it. A snapshot with no init: the stream waits for its publisher, and
// its first live init starts it.
func TestFollowerSnapshotWithoutGOPOrInit(t *testing.T) {
	f, rec := newTestFollower(t)
	f.snap(snapshot(7, 3, "i1"), 1)
	if !signaled(f.keyCh) {
		t.Fatal("no keyframe request")
	}
	f.give(liveSeg(7, 4, 1, false), liveSeg(7, 5, 2, true))
	wantEvents(t, rec, "init i1 seg-000002*")

	g, rec2 := newTestFollower(t)
	g.snap(snapshot(7, 9, ""), 1)
	g.give(&relaywire.Message{Kind: relaywire.KindInit, Epoch: 8, Seq: 1, Init: testInit("i2")}, liveSeg(8, 2, 1, true))
	wantEvents(t, rec2, "init i2 seg-000001*")
	if n := g.e.m.gaps.Load() + f.e.m.gaps.Load(); n != 0 {
		t.Fatalf("%d gaps", n)
	}
}

// While a snapshot is awaited, a live init of a new epoch is a start.
func TestFollowerStartsAtLiveInit(t *testing.T) {
	f, rec := newTestFollower(t)
	f.give(liveSeg(3, 7, 1, false), &relaywire.Message{Kind: relaywire.KindInit, Epoch: 4, Seq: 1, Init: testInit("i1")}, liveSeg(4, 2, 2, true))
	f.snap(snapshot(4, 2, "i1"), 1) // too late: ignored
	f.give(liveSeg(4, 3, 3, false))
	wantEvents(t, rec, "init i1 seg-000002* seg-000003")
}

// The pending buffer is bounded: the oldest go first.
func TestFollowerPendingBound(t *testing.T) {
	f, _ := newTestFollower(t)
	f.e.opts.PendingBytes = 100
	for i := range 20 {
		f.give(liveSeg(1, uint64(i+1), i, false))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pendingBytes > 100 || len(f.pending) != 5 || !strings.HasPrefix(string(f.pending[0].Segment.Data), segName(15)) {
		t.Fatalf("%d pending, %d bytes", len(f.pending), f.pendingBytes)
	}
}
