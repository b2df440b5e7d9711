package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mseway/mseway/cluster"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/relay"
	"github.com/mseway/mseway/signaling"
)

// followLinger is how long a followed stream keeps its relay after its
// last local viewer left (a viewer reloading the page finds it warm).
const followLinger = 10 * time.Second

// reconcileEvery is how often the node checks what to follow, besides
// every directory change.
const reconcileEvery = 500 * time.Millisecond

// lostGrace is how long NATS may be unreachable before the viewers of
// streams followed from other nodes are sent away (a goaway naming another
// node): a NATS server restart or a route flap reconnects within it.
const lostGrace = 2 * time.Second

// clusterGlue joins this gateway to the cluster (issue 11, first
// increment): publishes claim their name cluster-wide (a busy name is 409
// unless the publisher may take over; a takeover elsewhere ends the local
// publication), the streams live here are served to other nodes (relay
// origin), and streams live elsewhere are followed while local viewers wait
// for them (relay edge).
type clusterGlue struct {
	node    *cluster.Node
	origin  *relay.Origin
	edge    *relay.Edge
	metrics *relay.Metrics
	reg     *mseout.Registry
	log     *slog.Logger
	// settings are the streams' settings: allow_takeover holds for the
	// whole cluster.
	settings func(name string) configs.Stream
	// recordsAll: this node is record.node, it follows every stream of
	// the cluster that is recorded, to record it.
	recordsAll bool
	recordNode string // record.node ("": each origin records its streams)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// kick wakes run at once: a viewer arrived (a first viewer of a stream
	// of another node should not wait for the next tick).
	kick chan struct{}

	mu      sync.Mutex
	claims  map[string]claimed  // streams published here, by name
	follows map[string]*follows // streams followed from other nodes

	// Owned by run: since when the NATS connection has been down (zero: up),
	// and whether the followed streams' viewers were sent away for it.
	downSince time.Time
	sentAway  bool

	viewersSentAway atomic.Int64 // viewers of followed streams sent away (NATS lost)
	conflicts       atomic.Int64 // publishes here ended: the name went live elsewhere meanwhile
	takenOver       atomic.Int64 // publishes here ended by a takeover on another node
}

type claimed struct {
	epoch uint64
	pub   closer
	// announced is the tracks last written to the directory ("" = none).
	announced string
}

type follows struct {
	origin    string
	stop      func()
	idleSince time.Time
}

// startCluster joins the cluster when the config asks for it (nil when not).
func startCluster(cfg configs.Cluster, recordNode string, settings func(string) configs.Stream, reg *mseout.Registry, log *slog.Logger) (*clusterGlue, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	g := &clusterGlue{reg: reg, log: log, settings: settings, claims: map[string]claimed{}, follows: map[string]*follows{}, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	node, err := cluster.Start(g.ctx, cfg, cluster.Options{Logger: log, OnLost: g.lost, Load: g.load})
	if err != nil {
		g.cancel()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	g.node = node
	g.recordNode, g.recordsAll = recordNode, recordNode != "" && recordNode == node.ID()
	g.metrics = &relay.Metrics{}
	rc := cfg.Relay
	g.origin, err = relay.NewOrigin(node.Conn(), reg, relay.OriginOptions{
		Period: rc.InterestPeriod, GOPBytes: rc.GOPBytes, QueueBytes: rc.QueueBytes, QueueMessages: rc.QueueMessages,
		RequestKeyframe: reg.RequestKeyframe, Metrics: g.metrics, Logger: log,
	})
	if err != nil {
		_ = node.Close(context.Background())
		g.cancel()
		return nil, fmt.Errorf("cluster relay: %w", err)
	}
	g.edge = relay.NewEdge(node.Conn(), reg, relay.EdgeOptions{
		Period: rc.InterestPeriod, SnapshotTimeout: rc.SnapshotTimeout, PendingBytes: rc.PendingBytes,
		Metrics: g.metrics, Logger: log,
	})
	go g.run()
	urls := make([]string, len(cfg.NATSURLs))
	for i, u := range cfg.NATSURLs {
		urls[i] = configs.RedactURL(u) // a URL may carry user:password@
	}
	log.Info("cluster joined", "node", node.ID(), "nats", urls, "embedded", cfg.Embedded.Enabled)
	return g, nil
}

// close leaves the cluster: stops following, stops serving, withdraws this
// node's entries.
func (g *clusterGlue) close(ctx context.Context) error {
	if g == nil {
		return nil
	}
	g.cancel()
	<-g.done
	g.mu.Lock()
	for name, f := range g.follows {
		f.stop()
		delete(g.follows, name)
	}
	g.mu.Unlock()
	g.edge.Close()
	g.origin.Close()
	return g.node.Close(ctx)
}

// streams wraps signaling's view of the registry: a publish claims its
// name in the cluster first.
func (g *clusterGlue) streams(inner signaling.Streams) signaling.Streams {
	if g == nil {
		return inner
	}
	return clusterStreams{Streams: inner, g: g}
}

type clusterStreams struct {
	signaling.Streams
	g *clusterGlue
}

// CheckPublish refuses early a name live on another node that this
// publisher may not take over.
func (c clusterStreams) CheckPublish(name string, takeOver bool) error {
	if si, ok := c.g.node.Lookup(name); ok && si.Node != c.g.node.ID() && !(takeOver && c.g.settings(name).AllowTakeover) {
		return mseout.ErrStreamBusy
	}
	if c.g.following(name) {
		return nil // the relay's publication gives way to a publisher here
	}
	return c.Streams.CheckPublish(name, takeOver)
}

// Publish claims name cluster-wide, then makes the publisher its source
// here. With NATS unreachable the publish goes on locally (logged) and is
// claimed once NATS answers again.
func (c clusterStreams) Publish(name string, info mseout.PublisherInfo) (signaling.Publication, error) {
	g := c.g
	if !g.following(name) {
		// A publisher here that may not replace the current one: refused
		// before the claim, which would renew the name for the new one.
		if err := c.Streams.CheckPublish(name, info.TakeOver); err != nil {
			return nil, err
		}
	}
	epoch, err := g.claim(name, info.TakeOver)
	if err != nil {
		return nil, err
	}
	g.unfollow(name) // a publisher here replaces the relay of another node's
	pub, err := c.Streams.Publish(name, info)
	if err != nil {
		g.release(name, epoch)
		return nil, err
	}
	g.track(name, epoch, pub)
	return &clusterPub{Publication: pub, g: g, name: name}, nil
}

// publishLocal is how the config's local sources publish in a cluster:
// their names are claimed cluster-wide like any publisher's, and a name
// live on another node waits (mseout.ErrStreamBusy; the source retries).
func (g *clusterGlue) publishLocal(name string, info mseout.PublisherInfo) (*mseout.Publication, error) {
	if si, ok := g.node.Lookup(name); ok && si.Node != g.node.ID() {
		return nil, mseout.ErrStreamBusy
	}
	if err := g.reg.CheckPublish(name, false); err != nil {
		return nil, err
	}
	epoch, err := g.claim(name, false)
	if err != nil {
		return nil, err
	}
	pub, err := g.reg.Publish(name, info)
	if err != nil {
		g.release(name, epoch)
		return nil, err
	}
	g.track(name, epoch, pub)
	// The publication's owner is the source; this ends with it.
	go func() {
		<-pub.Done()
		g.ended(name, pub)
	}()
	return pub, nil
}

// publisher is the local sources' Publish (nil without a cluster).
func (g *clusterGlue) publisher() func(string, mseout.PublisherInfo) (*mseout.Publication, error) {
	if g == nil {
		return nil
	}
	return g.publishLocal
}

// claim claims name cluster-wide for a publisher here (a takeover when it
// may take over and the stream allows it). Epoch 0: NATS did not answer;
// the publish goes on and reconcile claims it later.
func (g *clusterGlue) claim(name string, takeOver bool) (uint64, error) {
	epoch, err := g.node.Claim(name, takeOver && g.settings(name).AllowTakeover)
	switch {
	case errors.Is(err, cluster.ErrBusy):
		return 0, mseout.ErrStreamBusy
	case err != nil:
		g.log.Warn("cluster: publishing without a cluster-wide claim for now", "stream", name, "err", err)
		return 0, nil
	}
	return epoch, nil
}

// release withdraws a claim no publication took.
func (g *clusterGlue) release(name string, epoch uint64) {
	if epoch == 0 {
		return
	}
	if held, ok := g.node.Held(name); ok && held == epoch {
		_ = g.node.Withdraw(name)
	}
}

// track records the publication here of a claimed name.
func (g *clusterGlue) track(name string, epoch uint64, pub closer) {
	g.mu.Lock()
	g.claims[name] = claimed{epoch: epoch, pub: pub}
	g.mu.Unlock()
}

// ended withdraws the claim of pub, once, if it is still the name's
// publication here. The epoch is the claim's latest: a publish made while
// NATS was unreachable is claimed later, by reconcile.
func (g *clusterGlue) ended(name string, pub closer) {
	g.mu.Lock()
	c, ok := g.claims[name]
	mine := ok && c.pub == pub
	if mine {
		delete(g.claims, name)
	}
	g.mu.Unlock()
	if mine && c.epoch != 0 {
		if held, ok := g.node.Held(name); ok && held == c.epoch {
			if err := g.node.Withdraw(name); err != nil {
				g.log.Debug("cluster: withdraw", "stream", name, "err", err)
			}
		}
	}
}

// closer is a publication here, as the cluster ends it (a takeover
// elsewhere, a conflict after a partition).
type closer interface{ Close() }

// clusterPub withdraws its claim when it ends.
type clusterPub struct {
	signaling.Publication
	g    *clusterGlue
	name string
	once sync.Once
}

func (p *clusterPub) Close() {
	p.Publication.Close()
	p.once.Do(func() { p.g.ended(p.name, p.Publication) })
}

// lost: another node took the stream over; the publication here ends (its
// session closes, its viewers follow the new origin).
func (g *clusterGlue) lost(stream string, epoch uint64) {
	g.mu.Lock()
	c, ok := g.claims[stream]
	if ok && c.epoch == epoch {
		delete(g.claims, stream)
	} else {
		ok = false
	}
	g.mu.Unlock()
	if ok {
		g.takenOver.Add(1)
		g.log.Info("cluster: stream taken over by another node; ending the publish here", "stream", stream)
		go c.pub.Close() // not on the node's goroutine: Close may take the hub's lock
	}
}

// records reports whether this node records a stream whose publication is
// relayed from another node (relayed) or fed here: without a cluster or
// record.node, the node a publisher feeds; with record.node, that node only.
func (g *clusterGlue) records(relayed bool) bool {
	if g == nil || g.recordNode == "" {
		return !relayed
	}
	return g.recordsAll
}

// viewerJoined wakes the reconcile loop when a viewer arrives for a stream
// with no publisher here: if another node publishes it, following starts
// now rather than at the next tick (the first viewer's time to first frame).
func (g *clusterGlue) viewerJoined(stream string) {
	if g == nil || g.following(stream) || !g.remoteLive(stream) {
		return
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *clusterGlue) following(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.follows[name] != nil
}

func (g *clusterGlue) unfollow(name string) {
	g.mu.Lock()
	f := g.follows[name]
	delete(g.follows, name)
	g.mu.Unlock()
	if f != nil {
		f.stop()
	}
}

// run reconciles what this node follows with the directory and its
// viewers, on every directory change and every reconcileEvery.
func (g *clusterGlue) run() {
	defer close(g.done)
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		changed := g.node.Changed()
		g.reconcile()
		select {
		case <-g.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		case <-g.kick:
		}
	}
}

// reconcile follows streams that local viewers wait for and another node
// publishes, and stops following what nobody here watches any more (after
// followLinger) or what moved.
func (g *clusterGlue) reconcile() {
	now := time.Now()
	self := g.node.ID()
	if !g.connected(now) {
		return
	}
	g.claimUnclaimed()
	watched := map[string]bool{}
	local := g.reg.Streams()
	for _, s := range local {
		if s.Viewers > 0 {
			watched[s.Name] = true
		}
	}
	if g.recordsAll { // record.node: every recorded stream is wanted here
		for _, si := range g.node.Streams() {
			if si.Node != self && g.settings(si.Stream).Record {
				watched[si.Stream] = true
			}
		}
	}
	g.announce(local)
	g.mu.Lock()
	var stop []func()
	for name, f := range g.follows {
		si, ok := g.node.Lookup(name)
		switch {
		case !ok && g.edge.Receiving(name, time.Second):
			// The entry lapsed while the origin still sends: the
			// directory is catching up (a NATS server lost, a new
			// JetStream leader); the origin writes it again. An origin
			// that ends the stream says so through the relay.
		case !ok || si.Node == self || si.Node != f.origin:
			stop = append(stop, f.stop) // gone, here, or moved: follow anew below
			delete(g.follows, name)
		case watched[name]:
			f.idleSince = time.Time{}
		case f.idleSince.IsZero():
			f.idleSince = now
		case now.Sub(f.idleSince) > followLinger:
			stop = append(stop, f.stop)
			delete(g.follows, name)
		}
	}
	var start []cluster.StreamInfo
	for name := range watched {
		if g.follows[name] != nil {
			continue
		}
		if si, ok := g.node.Lookup(name); ok && si.Node != self {
			if _, local := g.claims[name]; !local {
				start = append(start, si)
			}
		}
	}
	g.mu.Unlock()
	for _, s := range stop {
		s()
	}
	for _, si := range start {
		stopFn, err := g.edge.Follow(si.Stream, si.Node)
		if err != nil {
			g.log.Debug("cluster: not following", "stream", si.Stream, "origin", si.Node, "err", err)
			continue
		}
		g.mu.Lock()
		if g.follows[si.Stream] != nil || g.ctx.Err() != nil {
			g.mu.Unlock()
			stopFn()
			continue
		}
		g.follows[si.Stream] = &follows{origin: si.Node, stop: stopFn}
		g.mu.Unlock()
		g.log.Info("cluster: following a stream of another node", "stream", si.Stream, "origin", si.Node)
	}
}

// listStreams adds to the local list the cluster's streams that are not
// here, each with its node, and names the node of the local ones.
func (g *clusterGlue) listStreams(local []mseout.StreamInfo) []mseout.StreamInfo {
	if g == nil {
		return local
	}
	seen := map[string]bool{}
	for i := range local {
		seen[local[i].Name] = true
		if si, ok := g.node.Lookup(local[i].Name); ok {
			local[i].Node = si.Node
		}
	}
	for _, si := range g.node.Streams() {
		if !seen[si.Stream] {
			tracks := make([]mseout.TrackInfo, 0, len(si.Tracks))
			for _, t := range si.Tracks {
				tracks = append(tracks, mseout.TrackInfo{Kind: t.Kind, Codec: t.Codec, Width: t.Width, Height: t.Height, SampleRate: t.SampleRate, Channels: t.Channels})
			}
			local = append(local, mseout.StreamInfo{Name: si.Stream, Live: true, Node: si.Node, Tracks: tracks})
		}
	}
	return local
}

// load is this node's load for its directory entry.
func (g *clusterGlue) load() cluster.Load {
	var l cluster.Load
	for _, s := range g.reg.Streams() {
		l.Viewers += s.Viewers
		if s.Live {
			l.Streams++
		}
	}
	return l
}

// goawayURL names the viewer socket of stream on the least loaded other
// live node, for the goaway viewers get when this one stops ("" when there
// is none, or no cluster: they reconnect here after a pause).
func (g *clusterGlue) goawayURL(stream string) string {
	if g == nil {
		return ""
	}
	var best *cluster.NodeInfo
	nodes := g.node.Nodes()
	for i := range nodes {
		n := &nodes[i]
		if n.ID == g.node.ID() || n.PublicURL == "" {
			continue
		}
		if best == nil || n.Load.Viewers < best.Load.Viewers {
			best = n
		}
	}
	if best == nil {
		return ""
	}
	return watchURL(best.PublicURL, stream)
}

// remoteLive reports whether another node publishes stream.
func (g *clusterGlue) remoteLive(stream string) bool {
	if g == nil {
		return false
	}
	si, ok := g.node.Lookup(stream)
	return ok && si.Node != g.node.ID()
}

// announce writes the tracks of the streams claimed here to the directory
// when they change (a new init), so every node lists them.
func (g *clusterGlue) announce(local []mseout.StreamInfo) {
	type todo struct {
		name  string
		epoch uint64
		key   string
		info  cluster.StreamInfo
	}
	var work []todo
	g.mu.Lock()
	for _, s := range local {
		c, ok := g.claims[s.Name]
		if !ok || c.epoch == 0 || len(s.Tracks) == 0 {
			continue
		}
		tracks := make([]cluster.Track, 0, len(s.Tracks))
		for _, t := range s.Tracks {
			tracks = append(tracks, cluster.Track{Kind: t.Kind, Codec: t.Codec, Width: t.Width, Height: t.Height, SampleRate: t.SampleRate, Channels: t.Channels})
		}
		key := fmt.Sprint(tracks)
		if key != c.announced {
			work = append(work, todo{s.Name, c.epoch, key, cluster.StreamInfo{Epoch: c.epoch, Tracks: tracks}})
		}
	}
	g.mu.Unlock()
	for _, w := range work {
		if err := g.node.Announce(w.name, w.info); err != nil {
			g.log.Debug("cluster: announce", "stream", w.name, "err", err)
			continue
		}
		g.mu.Lock()
		if c, ok := g.claims[w.name]; ok && c.epoch == w.epoch {
			c.announced = w.key
			g.claims[w.name] = c
		}
		g.mu.Unlock()
	}
}

// connected tracks the NATS connection for reconcile. While it is down,
// or while the directory is out of sync (a NATS server lost, JetStream
// electing new leaders), the directory's view is stale: nothing new is
// followed or claimed, and what is followed goes on (media flows over the
// connection alone). Once the connection itself has been down for
// lostGrace, the followed streams' viewers are sent away to another node
// (their relays are stopped: nothing would reach them). Local publishes
// and their viewers are not touched.
func (g *clusterGlue) connected(now time.Time) bool {
	if g.node.Conn().IsConnected() {
		if !g.downSince.IsZero() {
			g.log.Info("cluster: NATS connection back", "down_for", now.Sub(g.downSince).Round(time.Millisecond))
			g.downSince, g.sentAway = time.Time{}, false
		}
		return g.node.Healthy()
	}
	if g.downSince.IsZero() {
		g.downSince = now
		return false
	}
	if g.sentAway || now.Sub(g.downSince) < lostGrace {
		return false
	}
	g.sentAway = true
	g.mu.Lock()
	lost := g.follows
	g.follows = map[string]*follows{}
	g.mu.Unlock()
	sent := 0
	for name, f := range lost {
		// goaway first: the relay's end would tell the viewers eos.
		sent += g.reg.Goaway(name, "this node lost its connection to the cluster")
		f.stop()
	}
	g.viewersSentAway.Add(int64(sent))
	g.log.Warn("cluster: NATS unreachable; viewers of streams of other nodes sent away, local streams go on",
		"down_for", now.Sub(g.downSince).Round(time.Millisecond), "streams", len(lost), "viewers", sent)
	return false
}

// claimUnclaimed claims, once NATS answers again, the names published here
// while it did not (epoch 0). A name that went live on another node
// meanwhile stays there: the publish here ends (two origins of one name
// would mix two sources for the viewers).
func (g *clusterGlue) claimUnclaimed() {
	g.mu.Lock()
	var names []string
	for name, c := range g.claims {
		if c.epoch == 0 {
			names = append(names, name)
		}
	}
	g.mu.Unlock()
	for _, name := range names {
		epoch, err := g.node.Claim(name, false)
		var held uint64
		if err == nil {
			held, _ = g.node.Held(name)
		}
		g.mu.Lock()
		c, ok := g.claims[name]
		switch {
		case err == nil && held != epoch:
			g.mu.Unlock() // a republish here claimed it again meanwhile
		case err == nil && !ok:
			g.mu.Unlock() // the publish ended meanwhile
			_ = g.node.Withdraw(name)
		case err == nil:
			c.epoch = epoch
			g.claims[name] = c
			g.mu.Unlock()
			g.log.Info("cluster: a stream published while NATS was unreachable is now claimed", "stream", name)
		case errors.Is(err, cluster.ErrBusy) && ok && c.epoch == 0:
			delete(g.claims, name)
			g.mu.Unlock()
			g.conflicts.Add(1)
			si, _ := g.node.Lookup(name)
			g.log.Warn("cluster: a stream published here while NATS was unreachable is live on another node; ending the publish here",
				"stream", name, "node", si.Node)
			go c.pub.Close()
		default:
			g.mu.Unlock()
			if err != nil {
				g.log.Debug("cluster: claim after reconnection", "stream", name, "err", err)
			}
		}
	}
}

// state is the node's cluster state for /readyz.
func (g *clusterGlue) state() string {
	if g == nil {
		return ""
	}
	if g.node.Healthy() {
		return "connected"
	}
	return "disconnected"
}

// nodeEntry is an element of /api/nodes.
type nodeEntry struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Watch   string `json:"watch,omitempty"`
	Self    bool   `json:"self,omitempty"`
	Viewers int    `json:"viewers"`
}

// nodes lists the live nodes that browsers can reach (a public_url), the
// least loaded first, each with its viewer socket for stream when one is
// named: where a player goes when its node disappears.
func (g *clusterGlue) nodes(stream string) []nodeEntry {
	out := []nodeEntry{}
	if g == nil {
		return out
	}
	for _, n := range g.node.Nodes() {
		if n.PublicURL == "" {
			continue
		}
		e := nodeEntry{ID: n.ID, URL: n.PublicURL, Self: n.ID == g.node.ID(), Viewers: n.Load.Viewers}
		if stream != "" {
			e.Watch = watchURL(n.PublicURL, stream)
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b nodeEntry) int { return a.Viewers - b.Viewers })
	return out
}

// watchURL is the viewer socket of stream on the node at publicURL ("" when
// it does not parse).
func watchURL(publicURL, stream string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path, u.RawQuery, u.Fragment = "/ws/watch/"+stream, "", ""
	return u.String()
}

// nodeOrigin reports whether origin (scheme://host[:port]) is a live node's
// public URL: its pages may open viewer sockets here when
// auth.allowed_origins is set (a player moving to another node).
func (g *clusterGlue) nodeOrigin(origin string) bool {
	for _, n := range g.node.Nodes() {
		u, err := url.Parse(n.PublicURL)
		if err == nil && u.Host != "" && strings.EqualFold(u.Scheme+"://"+u.Host, origin) {
			return true
		}
	}
	return false
}
