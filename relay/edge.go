package relay

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/ratelog"
	"github.com/mseway/mseway/relaywire"
	"github.com/mseway/mseway/remux"
)

// staleEpochs: a message whose epoch is at most this much below the current
// one is a leftover of an older epoch of the same origin (epochs count up
// from a random start per attach), not a new publish.
const staleEpochs = 1 << 32

// EdgeOptions configures an Edge.
type EdgeOptions struct {
	// Period is how often a followed stream's want is sent; the origins
	// must use the same. 0 = DefaultPeriod.
	Period time.Duration
	// SnapshotTimeout is how long a join waits for a snapshot before asking
	// again. 0 = DefaultSnapshotTimeout.
	SnapshotTimeout time.Duration
	// PendingBytes bounds the live messages buffered per stream while a
	// snapshot is awaited (the oldest go first). 0 = DefaultPendingBytes.
	PendingBytes int
	// Metrics receives the counters; nil = the Edge's own.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Edge follows streams published on other nodes and feeds each to a local
// hub through a Publication, like any publisher. It is safe for concurrent
// use.
type Edge struct {
	nc   *nats.Conn
	reg  *mseout.Registry
	opts EdgeOptions
	log  *slog.Logger
	m    *Metrics

	mu      sync.Mutex
	follows map[string]*follower
	closed  bool

	wg     sync.WaitGroup // followers' goroutines
	errLog ratelog.Limiter

	// held and stale count live messages held while a snapshot was awaited,
	// and live messages dropped as already applied (included in a snapshot,
	// duplicates, older epochs): tests look at them.
	held, stale atomic.Int64
}

// NewEdge returns an Edge that follows streams over nc into reg.
func NewEdge(nc *nats.Conn, reg *mseout.Registry, opts EdgeOptions) *Edge {
	if opts.Period <= 0 {
		opts.Period = DefaultPeriod
	}
	if opts.SnapshotTimeout <= 0 {
		opts.SnapshotTimeout = DefaultSnapshotTimeout
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = DefaultPendingBytes
	}
	if opts.Metrics == nil {
		opts.Metrics = &Metrics{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Edge{nc: nc, reg: reg, opts: opts, log: opts.Logger, m: opts.Metrics, follows: map[string]*follower{}}
}

// Follow makes this node relay stream from the node that publishes it:
// a local Publication (Protocol "relay", RemoteAddr "node:"+originNode)
// fed from the stream's live subject, joined through a snapshot. A stream is
// followed once per node: another Follow of a followed stream shares it (its
// originNode is not looked at), and the relay ends at the last stop. Follow
// fails when the stream has a local publisher (mseout.ErrStreamBusy) or the
// registry refuses the publish.
func (e *Edge) Follow(stream, originNode string) (stop func(), err error) {
	if err := httpapi.StreamName(stream); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	f := e.follows[stream]
	if f == nil {
		if f, err = e.start(stream, originNode); err != nil {
			return nil, err
		}
		e.follows[stream] = f
	}
	f.refs++
	var once sync.Once
	return func() { once.Do(func() { e.release(f) }) }, nil
}

// Following reports whether stream is followed.
func (e *Edge) Following(stream string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.follows[stream] != nil
}

// Receiving reports whether a message of stream (live or snapshot) arrived
// within the last d: its origin is alive and serves it, whatever the
// directory says for the moment (a NATS server lost, JetStream electing a
// new leader, an entry that lapsed and will be written again).
func (e *Edge) Receiving(stream string, d time.Duration) bool {
	e.mu.Lock()
	f := e.follows[stream]
	e.mu.Unlock()
	return f != nil && time.Since(time.Unix(0, f.lastMsg.Load())) < d
}

// Close stops following every stream (their Publications are closed:
// viewers get eos) and returns when every goroutine of the Edge has.
func (e *Edge) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	fs := e.follows
	e.follows = map[string]*follower{}
	e.mu.Unlock()
	for _, f := range fs {
		f.close()
	}
	e.wg.Wait()
}

func (e *Edge) release(f *follower) {
	e.mu.Lock()
	f.refs--
	if f.refs > 0 || e.follows[f.stream] != f {
		e.mu.Unlock()
		return
	}
	delete(e.follows, f.stream)
	e.mu.Unlock()
	f.close()
}

func (e *Edge) logError(msg, stream string, err error) {
	if ok, n := e.errLog.Allow(); ok {
		e.log.Warn(msg, "stream", stream, "err", err, "suppressed", n)
	}
}

// start starts following stream: publication, live subscription first, then
// the inbox for snapshots, then the goroutine that asks for the snapshot and
// keeps the interest alive. e.mu is held.
func (e *Edge) start(stream, origin string) (*follower, error) {
	tok := Token(stream)
	f := &follower{
		e:      e,
		stream: stream,
		origin: origin,
		tok:    tok,
		inbox:  e.nc.NewInbox(),
		keyCh:  make(chan struct{}, 1),
		snapCh: make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ensurePubLocked() {
		return nil, f.pubErr
	}
	fail := func(err error) (*follower, error) {
		if f.mediaSub != nil {
			_ = f.mediaSub.Unsubscribe()
		}
		f.closePubLocked()
		return nil, err
	}
	var err error
	if f.mediaSub, err = e.nc.Subscribe(MediaPrefix+tok, f.onMedia); err != nil {
		return fail(err)
	}
	if f.snapSub, err = e.nc.Subscribe(f.inbox+".*", f.onSnap); err != nil {
		return fail(err)
	}
	e.m.followed.Add(1)
	e.wg.Add(1)
	go f.run()
	e.log.Info("relay: following stream", "stream", stream, "origin", origin)
	return f, nil
}

// follower is one followed stream at an edge.
type follower struct {
	e                 *Edge
	stream, origin    string
	tok               string // the stream's subject token
	inbox             string // snapshot replies come to inbox.<request id>
	refs              int    // under e.mu
	mediaSub, snapSub *nats.Subscription
	keyCh             chan struct{} // a keyframe request is wanted
	snapCh            chan struct{} // a snapshot request is wanted
	done              chan struct{} // closed by close
	exited            chan struct{} // run returned

	mediaJ  relaywire.Joiner // the media subscription's goroutine only
	snapJ   relaywire.Joiner // the inbox subscription's goroutine only
	snapJID uint64           // the request snapJ is joining a reply to

	lastMsg atomic.Int64 // unix ns of the newest message part received

	mu           sync.Mutex
	closed       bool
	pub          *mseout.Publication // nil between an end and the next init
	pubErr       error               // why pub is nil, when a publish failed
	started      bool                // pub had an init
	synced       bool                // a snapshot or a live init was applied
	epoch, seq   uint64              // of the newest message applied
	skipping     bool                // drop segments until a keyframe
	pending      []*relaywire.Message
	pendingBytes int
	reqID        uint64 // of the snapshot request awaited
}

// close stops the follower: no more messages, its goroutine returned, its
// publication closed.
func (f *follower) close() {
	_ = f.mediaSub.Unsubscribe()
	_ = f.snapSub.Unsubscribe()
	close(f.done)
	<-f.exited
	f.mu.Lock()
	f.closed = true
	f.pending = nil
	f.closePubLocked()
	f.mu.Unlock()
	f.e.m.followed.Add(-1)
	f.e.log.Info("relay: stream no longer followed", "stream", f.stream)
}

// requestKeyframe is the publication's PublisherInfo.RequestKeyframe.
func (f *follower) requestKeyframe() {
	select {
	case f.keyCh <- struct{}{}:
	default:
	}
}

func (f *follower) requestSnapshot() {
	select {
	case f.snapCh <- struct{}{}:
	default:
	}
}

// run keeps the interest alive and sends snapshot and keyframe requests.
func (f *follower) run() {
	defer f.e.wg.Done()
	defer close(f.exited)
	nc, opts := f.e.nc, &f.e.opts
	tick := time.NewTicker(opts.Period)
	defer tick.Stop()
	retry := time.NewTimer(opts.SnapshotTimeout)
	defer retry.Stop()
	keyTimer := time.NewTimer(keyframeEvery)
	keyTimer.Stop()
	defer keyTimer.Stop()
	var lastKey time.Time
	keyWaiting := false
	want := func() {
		if err := nc.Publish(WantPrefix+f.tok, nil); err != nil {
			f.e.logError("relay: want not sent", f.stream, err)
		}
	}
	snap := func() {
		f.mu.Lock()
		if f.synced {
			f.mu.Unlock()
			return
		}
		f.reqID++
		id := f.reqID
		f.mu.Unlock()
		if err := nc.PublishRequest(SnapPrefix+f.tok, f.inbox+"."+strconv.FormatUint(id, 10), nil); err != nil {
			f.e.logError("relay: snapshot request not sent", f.stream, err)
		}
		retry.Reset(opts.SnapshotTimeout)
	}
	key := func() {
		lastKey = time.Now()
		if err := nc.Publish(KeyPrefix+f.tok, nil); err != nil {
			f.e.logError("relay: keyframe request not sent", f.stream, err)
		}
	}
	want()
	snap()
	for {
		select {
		case <-f.done:
			return
		case <-tick.C:
			want()
		case <-retry.C:
			snap()
		case <-f.snapCh:
			snap()
		case <-f.keyCh:
			if wait := keyframeEvery - time.Since(lastKey); wait > 0 {
				if !keyWaiting {
					keyWaiting = true
					keyTimer.Reset(wait)
				}
				continue
			}
			key()
		case <-keyTimer.C:
			keyWaiting = false
			key()
		}
	}
}

// onMedia takes a part of a live message.
func (f *follower) onMedia(msg *nats.Msg) {
	f.lastMsg.Store(time.Now().UnixNano())
	f.e.m.bytesIn.Add(int64(len(msg.Data)))
	m, ok, err := f.mediaJ.Add(msg.Data)
	if err != nil {
		// A message that lost a part is seen as a jump in seq by the next
		// one; anything else is not a relay message of ours.
		if !errors.Is(err, relaywire.ErrIncomplete) {
			f.e.logError("relay: live message refused", f.stream, err)
		}
		return
	}
	if !ok || m.Kind == relaywire.KindSnapshot {
		return
	}
	f.e.m.messagesIn.Add(1)
	f.mu.Lock()
	f.live(m)
	f.mu.Unlock()
}

// onSnap takes a part of a snapshot reply (subject inbox.<request id>).
func (f *follower) onSnap(msg *nats.Msg) {
	f.lastMsg.Store(time.Now().UnixNano())
	id, err := strconv.ParseUint(strings.TrimPrefix(msg.Subject, f.inbox+"."), 10, 64)
	if err != nil {
		return
	}
	f.e.m.bytesIn.Add(int64(len(msg.Data)))
	if id != f.snapJID {
		f.snapJ, f.snapJID = relaywire.Joiner{}, id
	}
	m, ok, err := f.snapJ.Add(msg.Data)
	if err != nil {
		if !errors.Is(err, relaywire.ErrIncomplete) {
			f.e.logError("relay: snapshot refused", f.stream, err)
		}
		return // incomplete: the request is retried
	}
	if !ok || m.Kind != relaywire.KindSnapshot {
		return
	}
	f.e.m.messagesIn.Add(1)
	f.mu.Lock()
	f.applySnapshot(m, id)
	f.mu.Unlock()
}

// live applies a live message. f.mu is held.
func (f *follower) live(m *relaywire.Message) {
	if f.closed {
		return
	}
	if !f.synced {
		if m.Kind == relaywire.KindInit {
			// A new epoch starts here: as good a start as a snapshot.
			f.pending, f.pendingBytes = nil, 0
			f.start(m)
			return
		}
		f.buffer(m)
		return
	}
	switch {
	case m.Epoch == f.epoch:
		if m.Seq <= f.seq {
			f.e.stale.Add(1) // a duplicate, or included in the snapshot
			return
		}
		if m.Seq > f.seq+1 {
			f.gap()
		}
		f.seq = m.Seq
		f.apply(m)
	case f.epoch-m.Epoch <= staleEpochs:
		// An older epoch's message published after the snapshot was taken.
		f.e.stale.Add(1)
	case m.Kind == relaywire.KindInit:
		f.start(m)
	default:
		// A new epoch whose init was lost: only a snapshot has it.
		f.e.m.gaps.Add(1)
		f.synced = false
		f.buffer(m)
		f.requestSnapshot()
	}
}

// start applies the init of a new epoch. f.mu is held.
func (f *follower) start(m *relaywire.Message) {
	f.synced = true
	f.epoch, f.seq = m.Epoch, m.Seq
	f.writeInit(m)
}

// writeInit writes an init to the publication (a new one after an end); the
// next segment is a keyframe, or waited for. f.mu is held.
func (f *follower) writeInit(m *relaywire.Message) {
	f.skipping = true
	if f.ensurePubLocked() {
		f.pub.WriteInit(m.Init)
		f.started = true
	}
}

// apply applies the next message of the current epoch. f.mu is held.
func (f *follower) apply(m *relaywire.Message) {
	switch m.Kind {
	case relaywire.KindInit: // an origin of this package starts a new epoch instead
		f.writeInit(m)
	case relaywire.KindSegment:
		f.writeSegment(m.Segment)
	case relaywire.KindEnd:
		f.closePubLocked()
	}
}

func (f *follower) writeSegment(s *remux.Segment) {
	if f.pub == nil || !f.started {
		return
	}
	if f.skipping {
		if !s.Keyframe {
			return
		}
		f.skipping = false
	}
	f.pub.WriteSegment(s)
}

// gap notes a lost message of the current epoch: segments are dropped until
// the next keyframe, which is asked for. f.mu is held.
func (f *follower) gap() {
	f.e.m.gaps.Add(1)
	f.skipping = true
	f.requestKeyframe()
}

// buffer keeps a live message until the snapshot comes. f.mu is held.
func (f *follower) buffer(m *relaywire.Message) {
	f.e.held.Add(1)
	f.pending = append(f.pending, m)
	f.pendingBytes += msgBytes(m)
	for f.pendingBytes > f.e.opts.PendingBytes && len(f.pending) > 1 {
		f.pendingBytes -= msgBytes(f.pending[0])
		f.pending[0] = nil
		f.pending = f.pending[1:]
	}
}

func msgBytes(m *relaywire.Message) int {
	switch {
	case m.Segment != nil:
		return len(m.Segment.Data)
	case m.Init != nil:
		return len(m.Init.Data)
	}
	return 0
}

// applySnapshot joins the stream at a snapshot, then applies the live
// messages buffered meanwhile that come after it. f.mu is held.
func (f *follower) applySnapshot(m *relaywire.Message, id uint64) {
	if f.closed || f.synced || id != f.reqID {
		return // a late reply to an earlier request, or no longer wanted
	}
	f.e.m.snapshotsIn.Add(1)
	f.synced = true
	f.epoch, f.seq = m.Epoch, m.Seq
	if m.Init == nil {
		// The origin is between two publishers: end ours, if it had begun.
		f.skipping = false
		if f.started {
			f.closePubLocked()
		}
	} else {
		f.writeInit(m)
		for _, s := range m.Segments {
			f.writeSegment(s)
		}
		if f.skipping {
			f.requestKeyframe() // no GOP: the viewers wait for the next keyframe
		}
	}
	pending := f.pending
	f.pending, f.pendingBytes = nil, 0
	for _, p := range pending {
		f.live(p)
	}
}

// ensurePubLocked makes sure the stream has our publication, publishing a
// new one after an end (or after ours was replaced). f.mu is held.
func (f *follower) ensurePubLocked() bool {
	if f.pub != nil {
		select {
		case <-f.pub.Done(): // taken over by a local publisher, or the registry closed
			unmarkRelayed(f.e.reg, f.stream, f.pub)
			f.pub, f.started = nil, false
		default:
			return true
		}
	}
	pub, err := f.e.reg.Publish(f.stream, mseout.PublisherInfo{
		Protocol:        "relay",
		Kind:            "remote",
		RemoteAddr:      "node:" + f.origin,
		RequestKeyframe: f.requestKeyframe,
	})
	if err != nil {
		f.pubErr = err
		f.e.logError("relay: publication refused", f.stream, err)
		return false
	}
	markRelayed(f.e.reg, f.stream, pub)
	f.pub, f.pubErr, f.started = pub, nil, false
	return true
}

// closePubLocked ends our publication: its viewers get eos. f.mu is held.
func (f *follower) closePubLocked() {
	if f.pub == nil {
		return
	}
	f.pub.Close()
	unmarkRelayed(f.e.reg, f.stream, f.pub)
	f.pub, f.started = nil, false
}
