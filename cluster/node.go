package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/ratelog"
)

// Errors of the directory. Claim, Announce and Withdraw wrap them; test with
// errors.Is.
var (
	// ErrUnavailable: the directory could not be read or written (NATS
	// unreachable, JetStream not ready, a timeout). Local streams are not
	// affected; retry later.
	ErrUnavailable = errors.New("cluster: NATS directory unavailable")
	// ErrBusy: the stream is live on another node and no takeover was asked.
	ErrBusy = errors.New("cluster: stream is live on another node")
	// ErrLost: another node took the stream over; this node no longer holds it.
	ErrLost = errors.New("cluster: stream was taken over by another node")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("cluster: node closed")
)

// Bucket names of the directory.
const (
	NodesBucket   = "mseway_nodes"
	StreamsBucket = "mseway_streams"
)

// opTimeout bounds every directory operation, so that nothing waits on an
// unreachable NATS for long.
var opTimeout = 2 * time.Second

// replicasGrace is how long a clustered NATS has, after Start, to offer three
// peers for a bucket before it is created with one replica.
var replicasGrace = 30 * time.Second

// Load is what a node reports of itself in the directory.
type Load struct {
	Viewers int `json:"viewers"`
	Streams int `json:"streams"`
}

// NodeInfo is an entry of the nodes bucket.
type NodeInfo struct {
	ID        string    `json:"id"`
	PublicURL string    `json:"publicURL"`
	Started   time.Time `json:"started"`
	Load      Load      `json:"load"`
	Updated   time.Time `json:"updated"`
}

// Track describes a track of a stream (the JSON of remux.Track, without
// importing it).
type Track struct {
	Kind       string `json:"kind"`
	Codec      string `json:"codec"`
	Width      int    `json:"width,omitempty"`
	Height     int    `json:"height,omitempty"`
	SampleRate int    `json:"sampleRate,omitempty"`
	Channels   int    `json:"channels,omitempty"`
}

// StreamInfo is an entry of the streams bucket: a live stream and the node it
// is published on (its origin). Epoch is random per publish (per Claim), so a
// republish of the same name, on the same node or another, is told apart.
type StreamInfo struct {
	Stream string    `json:"stream"`
	Node   string    `json:"node"`
	Epoch  uint64    `json:"epoch"`
	MIME   string    `json:"mime,omitempty"`
	Tracks []Track   `json:"tracks,omitempty"`
	Since  time.Time `json:"since"`
}

// Options are the node's hooks; all may be left zero.
type Options struct {
	Logger *slog.Logger
	// Load reports this node's viewers and streams for its directory entry,
	// each heartbeat (default: the streams this node holds, no viewers).
	Load func() Load
	// OnLost is called when another node took over a stream this node held
	// (claimed or announced), with the epoch of the claim that was lost, so
	// that the gateway ends that publication. It is called from one
	// goroutine of the node, in order; it should not block for long, and
	// must not call Close.
	OnLost func(stream string, epoch uint64)
	// Now is the clock of the times written in entries (default
	// time.Now); the views' expiry runs on the real clock.
	Now func() time.Time
}

// Node is this gateway's membership of the cluster: its NATS connection, its
// optional embedded NATS server, its directory entries and its views of the
// directory. Its methods are safe for concurrent use.
type Node struct {
	id        string
	cfg       configs.Cluster
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	started   time.Time
	startedAt time.Time // on the real clock, for the replicas' grace

	emb *embedded
	nc  *nats.Conn
	js  jetstream.JetStream

	connCh   chan struct{} // connection state changed (coalesced)
	closedCh chan struct{} // closed by nats.go's closed handler

	ctx    context.Context // cancelled by Close: ends the loop and its I/O
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loop

	notifyWG   sync.WaitGroup // the OnLost goroutine
	notifyQuit chan struct{}
	lostSig    chan struct{}

	downLog, upLog, errLog ratelog.Limiter

	keys keyLocks

	mu        sync.Mutex
	closed    bool
	up        bool // buckets set up in the current connection
	ready     bool // up, and both views synced
	kvNodes   jetstream.KeyValue
	kvStreams jetstream.KeyValue
	ttl       time.Duration // the streams bucket's TTL, for the views' expiry
	held      map[string]*claim
	nodes     map[string]nodeEntry
	streams   map[string]streamEntry
	// The views being built from a watch's initial values.
	pendingNodes   map[string]nodeEntry
	pendingStreams map[string]streamEntry
	changed        chan struct{}
	lost           []lostEvent
}

// claim is a stream this node holds: what it wrote and at which revision.
type claim struct {
	info StreamInfo
	rev  uint64
}

type lostEvent struct {
	stream string
	epoch  uint64
}

// Start connects this node to NATS (starting the embedded server first when
// configured) and joins the directory. It returns while NATS is unreachable:
// the node keeps reconnecting, and the directory reports ErrUnavailable and
// !Healthy() meanwhile. Close it.
func Start(ctx context.Context, cfg configs.Cluster, opts Options) (*Node, error) {
	if cfg.Heartbeat <= 0 || cfg.TTL < 2*cfg.Heartbeat {
		return nil, fmt.Errorf("cluster: heartbeat %v and ttl %v: want heartbeat > 0 and ttl >= 2*heartbeat", cfg.Heartbeat, cfg.TTL)
	}
	if len(cfg.NATSURLs) == 0 && !cfg.Embedded.Enabled {
		return nil, errors.New("cluster: no nats_urls and no embedded server")
	}
	n := &Node{
		id:         nodeID(cfg.NodeID),
		cfg:        cfg,
		opts:       opts,
		now:        opts.Now,
		connCh:     make(chan struct{}, 1),
		closedCh:   make(chan struct{}),
		notifyQuit: make(chan struct{}),
		lostSig:    make(chan struct{}, 1),
		held:       map[string]*claim{},
		nodes:      map[string]nodeEntry{},
		streams:    map[string]streamEntry{},
		changed:    make(chan struct{}),
		ttl:        cfg.TTL,
		downLog:    ratelog.Limiter{Every: 10 * time.Second},
		upLog:      ratelog.Limiter{Every: 5 * time.Second},
		errLog:     ratelog.Limiter{Every: 10 * time.Second},
	}
	if n.now == nil {
		n.now = time.Now
	}
	n.started, n.startedAt = n.now(), time.Now()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n.log = log.With("component", "cluster", "node", n.id)

	urls := cfg.NATSURLs
	if cfg.Embedded.Enabled {
		emb, err := startEmbedded(ctx, cfg, n.id, log.With("component", "nats-server", "node", n.id))
		if err != nil {
			return nil, err
		}
		n.emb = emb
		urls = append([]string{emb.clients}, urls...)
		n.log.Info("embedded NATS server started", "url", emb.clients, "cluster_listen", cfg.Embedded.ClusterListen, "routes", len(cfg.Embedded.Routes))
	}
	nopts, err := n.natsOptions()
	if err != nil {
		n.emb.stop()
		return nil, err
	}
	nopts.Servers = urls
	nc, err := nopts.Connect()
	if err != nil {
		n.emb.stop()
		return nil, fmt.Errorf("cluster: NATS: %w", err)
	}
	n.nc = nc
	if n.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		n.emb.stop()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	if !nc.IsConnected() { // connected: the handler logs it
		n.log.Warn("NATS unreachable; retrying in the background (local streams work meanwhile)", "servers", len(urls))
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.notifyWG.Add(1)
	go n.notifier()
	n.wg.Add(1)
	go n.run()
	return n, nil
}

// natsOptions builds the connection's options from the config: name,
// credentials, TLS, reconnection forever with backoff, handlers.
func (n *Node) natsOptions() (nats.Options, error) {
	o := nats.GetDefaultOptions()
	c := n.cfg
	set := []nats.Option{
		nats.Name(n.id),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// Keep trying through authorization errors too (credentials
		// being rotated): nats.go would otherwise give up for good.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
		// Fail writes while disconnected instead of replaying stale
		// heartbeats after the reconnection.
		nats.ReconnectBufSize(-1),
		nats.Timeout(opTimeout),
		nats.PingInterval(min(max(c.TTL/2, time.Second), 20*time.Second)),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(n.onDisconnect),
		nats.ReconnectHandler(n.onConnect),
		nats.ConnectHandler(n.onConnect),
		nats.ReconnectErrHandler(n.onReconnectErr),
		nats.ClosedHandler(func(*nats.Conn) { close(n.closedCh) }),
		nats.ErrorHandler(n.onAsyncErr),
	}
	if n.emb != nil {
		set = append(set, nats.DontRandomize()) // the local server first
	}
	if c.CredsFile != "" {
		if _, err := os.Stat(c.CredsFile); err != nil {
			return o, fmt.Errorf("cluster.creds_file: %w", err)
		}
		set = append(set, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return o, fmt.Errorf("cluster.nkey_file: %w", err)
		}
		set = append(set, opt)
	}
	if c.User != "" {
		set = append(set, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		set = append(set, nats.Token(c.Token))
	}
	// The CAs that NATS servers are checked against: the embedded one's
	// too, for this node's connection to its own server and to its peers'.
	var cas []string
	if c.TLSCA != "" {
		cas = append(cas, c.TLSCA)
	}
	if n.emb != nil && c.Embedded.TLS() {
		cas = append(cas, c.Embedded.TLSCA)
	}
	if len(cas) > 0 {
		set = append(set, nats.RootCAs(cas...))
	}
	if c.TLSCert != "" {
		set = append(set, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	for _, opt := range set {
		if err := opt(&o); err != nil {
			return o, fmt.Errorf("cluster: NATS options: %w", err)
		}
	}
	return o, nil
}

// reconnectDelay backs off from 250 ms to 2 s, with jitter, per pass over the
// server list.
func reconnectDelay(attempts int) time.Duration {
	d := 250 * time.Millisecond << min(max(attempts-1, 0), 3)
	d = min(d, 2*time.Second)
	return d - time.Duration(rand.Int64N(int64(d/4)))
}

func (n *Node) signalConn() {
	select {
	case n.connCh <- struct{}{}:
	default:
	}
}

func (n *Node) onDisconnect(_ *nats.Conn, err error) {
	n.signalConn()
	if n.isClosed() {
		return
	}
	if ok, held := n.downLog.Allow(); ok {
		n.log.Warn("NATS connection lost; reconnecting (local streams work meanwhile)", "err", err, "held_back", held)
	}
}

func (n *Node) onReconnectErr(_ *nats.Conn, err error) {
	if ok, held := n.downLog.Allow(); ok {
		n.log.Warn("NATS unreachable; retrying", "err", err, "held_back", held)
	}
}

func (n *Node) onConnect(nc *nats.Conn) {
	n.signalConn()
	if ok, held := n.upLog.Allow(); ok {
		n.log.Info("NATS connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName(), "held_back", held)
	}
}

func (n *Node) onAsyncErr(_ *nats.Conn, sub *nats.Subscription, err error) {
	if ok, held := n.errLog.Allow(); ok {
		subj := ""
		if sub != nil {
			subj = sub.Subject
		}
		n.log.Warn("NATS error", "err", err, "subject", subj, "held_back", held)
	}
}

// ID is this node's id.
func (n *Node) ID() string { return n.id }

// Conn is the node's NATS connection, for the media relay (it reconnects by
// itself; it is closed by Close).
func (n *Node) Conn() *nats.Conn { return n.nc }

// Healthy reports whether the directory is connected and its views are in
// sync. While it is not, the views keep their last state.
func (n *Node) Healthy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Close withdraws this node's entries (its streams, then itself), drains the
// connection, stops the embedded server and every goroutine of the node. ctx
// bounds the withdrawal and the drain.
func (n *Node) Close(ctx context.Context) error { return n.shutdown(ctx, true) }

// kill stops the node as a crash would: no withdrawal, the connection closed
// at once. For tests.
func (n *Node) kill() { _ = n.shutdown(context.Background(), false) }

func (n *Node) shutdown(ctx context.Context, graceful bool) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	close(n.notifyQuit)
	n.notifyWG.Wait()

	var err error
	if graceful && n.nc.IsConnected() {
		err = n.withdrawAll(ctx)
	}
	if graceful {
		if derr := n.nc.Drain(); derr == nil {
			select {
			case <-n.closedCh:
			case <-ctx.Done():
				err = errors.Join(err, fmt.Errorf("cluster: NATS drain: %w", ctx.Err()))
			}
		}
	}
	n.nc.Close() // no-op once drained
	select {
	case <-n.closedCh:
	case <-time.After(5 * time.Second):
		n.log.Warn("NATS connection did not report its close")
	}
	n.emb.stop()
	n.log.Info("left the cluster", "graceful", graceful)
	return err
}

// withdrawAll deletes this node's stream entries (those it still holds) and
// its node entry.
func (n *Node) withdrawAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n.mu.Lock()
	names := make([]string, 0, len(n.held))
	for s := range n.held {
		names = append(names, s)
	}
	kvN := n.kvNodes
	n.mu.Unlock()
	var errs []error
	for _, s := range names {
		if err := n.withdraw(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if kvN != nil {
		if err := kvN.Delete(ctx, encodeKey(n.id)); err != nil {
			errs = append(errs, unavailable(err))
		}
	}
	return errors.Join(errs...)
}

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// notifier calls OnLost, in order, off the goroutines that detect the loss.
func (n *Node) notifier() {
	defer n.notifyWG.Done()
	for {
		select {
		case <-n.lostSig:
		case <-n.notifyQuit:
			n.deliverLost()
			return
		}
		n.deliverLost()
	}
}

func (n *Node) deliverLost() {
	n.mu.Lock()
	evs := n.lost
	n.lost = nil
	n.mu.Unlock()
	if n.opts.OnLost == nil {
		return
	}
	for _, e := range evs {
		n.opts.OnLost(e.stream, e.epoch)
	}
}
