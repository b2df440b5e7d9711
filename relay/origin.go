package relay

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/ratelog"
	"github.com/mseway/mseway/relaywire"
	"github.com/mseway/mseway/remux"
)

// Defaults of OriginOptions and EdgeOptions.
const (
	DefaultPeriod          = 2 * time.Second
	DefaultGOPBytes        = 32 << 20
	DefaultQueueBytes      = 32 << 20
	DefaultQueueMessages   = 1024
	DefaultSnapshotTimeout = time.Second
	DefaultPendingBytes    = 64 << 20

	// interestPeriods is how many periods without a want end a stream's relay.
	interestPeriods = 3
	// keyframeEvery is the shortest interval between two keyframe requests
	// for one stream, at the edge and again at the origin.
	keyframeEvery = 500 * time.Millisecond
	// defaultMaxPayload is used when the connection does not know the
	// server's max_payload (never connected).
	defaultMaxPayload = 1 << 20
)

// ErrClosed is returned by Follow after Close.
var ErrClosed = errors.New("relay: closed")

// OriginOptions configures an Origin.
type OriginOptions struct {
	// Period is the interest period: edges send a want every Period, and a
	// stream with no want for 3 periods stops being relayed. 0 =
	// DefaultPeriod. Edges must use the same period.
	Period time.Duration
	// RequestKeyframe asks the publisher of stream (a local one) for a
	// keyframe, on an edge's request. Calls are limited to one per 500 ms
	// per stream. It must not block. nil: keyframe requests are ignored.
	RequestKeyframe func(stream string)
	// GOPBytes bounds the GOP kept per stream to answer snapshots; a longer
	// GOP is not kept (a joining edge then starts at the next keyframe).
	// 0 = DefaultGOPBytes.
	GOPBytes int
	// QueueBytes and QueueMessages bound each stream's publish queue; a
	// message that does not fit is dropped and counted (edges see a gap).
	// 0 = DefaultQueueBytes, DefaultQueueMessages.
	QueueBytes    int
	QueueMessages int
	// Metrics receives the counters; nil = the Origin's own.
	Metrics *Metrics
	Logger  *slog.Logger

	// dropMessage, in tests, drops a message instead of publishing it (a
	// message lost by NATS).
	dropMessage func(*relaywire.Message) bool
}

// Origin serves the streams whose publisher is on this node to the edges
// that want them: it answers snapshot requests, publishes each wanted
// stream's live messages once whatever the number of edges, and passes
// keyframe requests on to the publisher. It is safe for concurrent use.
type Origin struct {
	nc   *nats.Conn
	reg  *mseout.Registry
	opts OriginOptions
	log  *slog.Logger
	m    *Metrics
	subs []*nats.Subscription

	mu     sync.Mutex
	feeds  map[string]*feed
	closed bool

	stop   chan struct{}
	wg     sync.WaitGroup // the janitor and every feed's publisher
	errLog ratelog.Limiter
}

// NewOrigin starts serving the streams of reg over nc. Close stops it.
func NewOrigin(nc *nats.Conn, reg *mseout.Registry, opts OriginOptions) (*Origin, error) {
	if opts.Period <= 0 {
		opts.Period = DefaultPeriod
	}
	if opts.GOPBytes <= 0 {
		opts.GOPBytes = DefaultGOPBytes
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.QueueMessages <= 0 {
		opts.QueueMessages = DefaultQueueMessages
	}
	if opts.Metrics == nil {
		opts.Metrics = &Metrics{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	o := &Origin{nc: nc, reg: reg, opts: opts, log: opts.Logger, m: opts.Metrics, feeds: map[string]*feed{}, stop: make(chan struct{})}
	for _, s := range []struct {
		subject string
		cb      nats.MsgHandler
	}{
		{SnapPrefix + "*", o.onSnap},
		{WantPrefix + "*", o.onWant},
		{KeyPrefix + "*", o.onKey},
	} {
		sub, err := nc.Subscribe(s.subject, s.cb)
		if err != nil {
			o.unsubscribe()
			return nil, err
		}
		o.subs = append(o.subs, sub)
	}
	o.wg.Add(1)
	go o.janitor()
	return o, nil
}

func (o *Origin) unsubscribe() {
	for _, s := range o.subs {
		_ = s.Unsubscribe()
	}
}

// Close stops serving: subscriptions end, every relayed stream is detached
// from its hub, and every goroutine of the Origin has returned.
func (o *Origin) Close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	feeds := o.feeds
	o.feeds = map[string]*feed{}
	o.mu.Unlock()
	o.unsubscribe()
	close(o.stop)
	for _, f := range feeds {
		f.end()
	}
	o.wg.Wait()
}

// Relaying returns the streams being relayed (attached, some edge wants
// them), sorted.
func (o *Origin) Relaying() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	names := make([]string, 0, len(o.feeds))
	for name := range o.feeds {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// interest notes an edge's interest in stream and returns its feed,
// attaching one when this node is the stream's origin; nil when it is not.
func (o *Origin) interest(stream string) *feed {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	if f := o.feeds[stream]; f != nil {
		f.lastWant = now
		return f
	}
	if !isOrigin(o.reg, stream) {
		return nil
	}
	return o.attachLocked(stream, now)
}

// attachLocked attaches a new feed to stream's hub. o.mu is held.
func (o *Origin) attachLocked(stream string, lastWant time.Time) *feed {
	f := &feed{
		o:        o,
		stream:   stream,
		subject:  MediaPrefix + Token(stream),
		lastWant: lastWant,
		epoch:    rand.Uint64() >> 1, // room to count up without wrapping
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	// The hub hands a new Output the current init and GOP: they set the
	// feed's state (for snapshots) but are not published, since no edge can
	// use them but through a snapshot taken after this.
	f.attaching = true
	detach, err := o.reg.Attach(stream, f)
	f.mu.Lock()
	f.attaching = false
	f.mu.Unlock()
	if err != nil {
		o.log.Warn("relay: attach failed", "stream", stream, "err", err)
		return nil
	}
	f.detach = detach
	o.feeds[stream] = f
	o.wg.Add(1)
	go f.run()
	o.log.Debug("relay: serving stream", "stream", stream)
	return f
}

func (o *Origin) onWant(msg *nats.Msg) {
	if stream := streamOf(msg.Subject, WantPrefix); stream != "" {
		o.interest(stream)
	}
}

// onSnap answers a snapshot request with the stream's current state: its
// init and GOP, or no init when its publisher has left (the edge's viewers
// get eos and wait for the next one). A node that is not the stream's origin
// stays silent (every node hears every request), and so does the origin
// while it has a publisher whose init it has not seen (just attached to a
// hub with no GOP cache, or a publisher that has sent no init yet): the edge
// retries, or starts at the next live init.
func (o *Origin) onSnap(msg *nats.Msg) {
	stream := streamOf(msg.Subject, SnapPrefix)
	if stream == "" || msg.Reply == "" {
		return
	}
	f := o.interest(stream)
	if f == nil {
		return
	}
	snap := f.snapshot()
	if snap.Init == nil && isOrigin(o.reg, stream) {
		return
	}
	parts, err := relaywire.Encode(snap, o.maxPayload())
	if err != nil {
		o.logError("relay: snapshot not encoded", stream, err)
		return
	}
	n := 0
	for _, p := range parts {
		if err := o.nc.Publish(msg.Reply, p); err != nil {
			o.logError("relay: snapshot not sent", stream, err)
			return
		}
		n += len(p)
	}
	o.m.snapshotsOut.Add(1)
	o.m.messagesOut.Add(1)
	o.m.bytesOut.Add(int64(n))
}

// onKey passes an edge's keyframe request on to the stream's publisher, at
// most once per 500 ms per stream.
func (o *Origin) onKey(msg *nats.Msg) {
	stream := streamOf(msg.Subject, KeyPrefix)
	if stream == "" || o.opts.RequestKeyframe == nil {
		return
	}
	now := time.Now()
	o.mu.Lock()
	f := o.feeds[stream]
	ask := f != nil && now.Sub(f.lastKey) >= keyframeEvery
	if ask {
		f.lastKey = now
	}
	o.mu.Unlock()
	if ask {
		o.opts.RequestKeyframe(stream)
	}
}

// janitor ends the relay of streams no edge wants any more (no want for 3
// periods) and of streams this node is no longer the origin of (at two
// checks in a row: a publisher that reconnects within a period keeps its
// edges without a new snapshot). It attaches again a feed that gets
// segments without an init it knows (see feed.WriteSegment).
func (o *Origin) janitor() {
	defer o.wg.Done()
	t := time.NewTicker(o.opts.Period)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var ended, orphans []*feed
		o.mu.Lock()
		for name, f := range o.feeds {
			origin := isOrigin(o.reg, name)
			switch {
			case now.Sub(f.lastWant) > interestPeriods*o.opts.Period || (!origin && f.notOrigin):
				delete(o.feeds, name)
				ended = append(ended, f)
			case origin && f.isOrphan():
				orphans = append(orphans, f)
			}
			f.notOrigin = !origin
		}
		for _, f := range orphans {
			// Attach again at once, hoping for an init and GOP now.
			delete(o.feeds, f.stream)
			f.end()
			o.attachLocked(f.stream, f.lastWant)
		}
		o.mu.Unlock()
		for _, f := range ended {
			o.log.Debug("relay: stream no longer served", "stream", f.stream)
			f.end()
		}
	}
}

func (o *Origin) maxPayload() int {
	if n := o.nc.MaxPayload(); n > relaywire.HeaderSize {
		return int(n)
	}
	return defaultMaxPayload
}

func (o *Origin) logError(msg, stream string, err error) {
	if ok, n := o.errLog.Allow(); ok {
		o.log.Warn(msg, "stream", stream, "err", err, "suppressed", n)
	}
}

// feed is one relayed stream at its origin: an Output attached to the hub
// that numbers the stream's messages, keeps the state a snapshot needs and
// queues the messages for its publisher goroutine.
type feed struct {
	o       *Origin
	stream  string
	subject string
	detach  func()
	kick    chan struct{} // the queue has messages
	done    chan struct{} // closed by end
	endOnce sync.Once

	// under o.mu
	lastWant  time.Time
	lastKey   time.Time
	notOrigin bool // at the last janitor check

	mu        sync.Mutex
	attaching bool   // Attach is replaying the hub's init and GOP
	epoch     uint64 // +1 per init
	seq       uint64 // of the newest message of the epoch
	init      *remux.Init
	gop       []*remux.Segment // since the newest keyframe; copies of the hub's
	gopBytes  int
	gopFull   bool // the GOP outgrew GOPBytes: none until the next keyframe
	orphan    bool // segments arrive without an init we know
	queue     []*relaywire.Message
	spare     []*relaywire.Message // the publisher's last batch, for reuse
	qBytes    int
}

var _ mseout.Output = (*feed)(nil)

// WriteInit starts a new epoch (an edge that missed its init resyncs with a
// snapshot). The init of a relayed publication is ignored: this node is not
// the origin of what it relays.
func (f *feed) WriteInit(in *remux.Init) {
	if isRelayed(f.o.reg, f.stream) {
		return
	}
	f.mu.Lock()
	f.epoch++
	f.seq = 1
	f.init, f.orphan = in, false
	f.clearGOP()
	f.enqueueLocked(&relaywire.Message{Kind: relaywire.KindInit, Epoch: f.epoch, Seq: f.seq, Init: in}, len(in.Data))
	f.mu.Unlock()
}

// WriteSegment numbers a segment of the current init, keeps it for
// snapshots when it belongs to the newest GOP, and queues it.
func (f *feed) WriteSegment(s *remux.Segment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.init == nil {
		// No init of ours: a relayed stream, or a hub that had an init but
		// no GOP to give at Attach (gop_cache off, or outgrown). The
		// janitor then attaches again, hoping for a GOP.
		f.orphan = !isRelayed(f.o.reg, f.stream)
		return
	}
	f.seq++
	c := *s // the hub's segment is shared and immutable; keep our own header
	if c.Keyframe {
		f.clearGOP()
	}
	if !f.gopFull && (c.Keyframe || len(f.gop) > 0) {
		if f.gopBytes+len(c.Data) <= f.o.opts.GOPBytes {
			f.gop = append(f.gop, &c)
			f.gopBytes += len(c.Data)
		} else {
			f.clearGOP()
			f.gopFull = true
		}
	}
	f.enqueueLocked(&relaywire.Message{Kind: relaywire.KindSegment, Epoch: f.epoch, Seq: f.seq, Segment: &c}, len(c.Data))
}

// WriteEnd ends the epoch: the publisher left, or the gateway shuts down.
func (f *feed) WriteEnd() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.init == nil {
		return // nothing of ours to end
	}
	f.seq++
	f.init = nil
	f.clearGOP()
	f.enqueueLocked(&relaywire.Message{Kind: relaywire.KindEnd, Epoch: f.epoch, Seq: f.seq}, 0)
}

func (f *feed) isOrphan() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.orphan
}

func (f *feed) clearGOP() {
	clear(f.gop)
	f.gop, f.gopBytes, f.gopFull = f.gop[:0], 0, false
}

// enqueueLocked queues m for the publisher, or drops it when the queue is
// full. f.mu is held.
func (f *feed) enqueueLocked(m *relaywire.Message, size int) {
	if f.attaching {
		return
	}
	if len(f.queue) >= f.o.opts.QueueMessages || (len(f.queue) > 0 && f.qBytes+size > f.o.opts.QueueBytes) {
		f.o.m.dropped.Add(1)
		return
	}
	f.queue = append(f.queue, m)
	f.qBytes += size
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// snapshot returns the current state: the init (nil after an end) and GOP,
// stamped with the seq of the newest message it includes.
func (f *feed) snapshot() *relaywire.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &relaywire.Message{Kind: relaywire.KindSnapshot, Epoch: f.epoch, Seq: f.seq, Init: f.init}
	if f.init != nil && len(f.gop) > 0 {
		m.Segments = slices.Clone(f.gop)
	}
	return m
}

// run publishes the queued messages in order until the feed ends, then what
// was queued before it ended.
func (f *feed) run() {
	defer f.o.wg.Done()
	for {
		select {
		case <-f.done:
			f.flush()
			return
		case <-f.kick:
			f.flush()
		}
	}
}

func (f *feed) flush() {
	f.mu.Lock()
	batch := f.queue
	f.queue, f.spare, f.qBytes = f.spare[:0], nil, 0
	f.mu.Unlock()
	for i, m := range batch {
		f.publish(m)
		batch[i] = nil
	}
	f.mu.Lock()
	f.spare = batch[:0]
	f.mu.Unlock()
}

// publish encodes m, split to the server's max_payload, and publishes it.
func (f *feed) publish(m *relaywire.Message) {
	if f.o.opts.dropMessage != nil && f.o.opts.dropMessage(m) {
		return
	}
	parts, err := relaywire.Encode(m, f.o.maxPayload())
	if err != nil {
		f.o.logError("relay: message not encoded", f.stream, err)
		return
	}
	n := 0
	for _, p := range parts {
		if err := f.o.nc.Publish(f.subject, p); err != nil {
			f.o.logError("relay: message not sent", f.stream, err)
			return
		}
		n += len(p)
	}
	f.o.m.messagesOut.Add(1)
	f.o.m.bytesOut.Add(int64(n))
}

// end detaches the feed from its hub and stops its publisher. It may be
// called with o.mu held: the hub's locks are never held while o.mu is taken.
func (f *feed) end() {
	f.endOnce.Do(func() {
		f.detach()
		close(f.done)
	})
}
