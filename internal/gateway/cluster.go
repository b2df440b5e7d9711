package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
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

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	claims  map[string]claimed  // streams published here, by name
	follows map[string]*follows // streams followed from other nodes
}

type claimed struct {
	epoch uint64
	pub   signaling.Publication
	// announced is the tracks last written to the directory ("" = none).
	announced string
}

type follows struct {
	origin    string
	stop      func()
	idleSince time.Time
}

// startCluster joins the cluster when the config asks for it (nil when not).
func startCluster(cfg configs.Cluster, settings func(string) configs.Stream, reg *mseout.Registry, log *slog.Logger) (*clusterGlue, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	g := &clusterGlue{reg: reg, log: log, settings: settings, claims: map[string]claimed{}, follows: map[string]*follows{}, done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	node, err := cluster.Start(g.ctx, cfg, cluster.Options{Logger: log, OnLost: g.lost, Load: g.load})
	if err != nil {
		g.cancel()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	g.node = node
	g.metrics = &relay.Metrics{}
	g.origin, err = relay.NewOrigin(node.Conn(), reg, relay.OriginOptions{RequestKeyframe: reg.RequestKeyframe, Metrics: g.metrics, Logger: log})
	if err != nil {
		_ = node.Close(context.Background())
		g.cancel()
		return nil, fmt.Errorf("cluster relay: %w", err)
	}
	g.edge = relay.NewEdge(node.Conn(), reg, relay.EdgeOptions{Metrics: g.metrics, Logger: log})
	go g.run()
	log.Info("cluster joined", "node", node.ID(), "nats", cfg.NATSURLs, "embedded", cfg.Embedded.Enabled)
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
// here. With NATS unreachable the publish goes on locally (logged).
func (c clusterStreams) Publish(name string, info mseout.PublisherInfo) (signaling.Publication, error) {
	g := c.g
	if !g.following(name) {
		// A publisher here that may not replace the current one: refused
		// before the claim, which would renew the name for the new one.
		if err := c.Streams.CheckPublish(name, info.TakeOver); err != nil {
			return nil, err
		}
	}
	epoch, err := g.node.Claim(name, info.TakeOver && g.settings(name).AllowTakeover)
	switch {
	case errors.Is(err, cluster.ErrBusy):
		return nil, mseout.ErrStreamBusy
	case err != nil:
		g.log.Warn("cluster: publishing without a cluster-wide claim", "stream", name, "err", err)
		epoch = 0
	}
	g.unfollow(name) // a publisher here replaces the relay of another node's
	pub, err := c.Streams.Publish(name, info)
	if err != nil {
		if epoch != 0 {
			if held, ok := g.node.Held(name); ok && held == epoch {
				_ = g.node.Withdraw(name)
			}
		}
		return nil, err
	}
	g.mu.Lock()
	g.claims[name] = claimed{epoch: epoch, pub: pub}
	g.mu.Unlock()
	return &clusterPub{Publication: pub, g: g, name: name, epoch: epoch}, nil
}

// clusterPub withdraws its claim when it ends.
type clusterPub struct {
	signaling.Publication
	g     *clusterGlue
	name  string
	epoch uint64
	once  sync.Once
}

func (p *clusterPub) Close() {
	p.Publication.Close()
	p.once.Do(func() {
		g := p.g
		g.mu.Lock()
		c, ok := g.claims[p.name]
		mine := ok && c.epoch == p.epoch && c.pub == p.Publication
		if mine {
			delete(g.claims, p.name)
		}
		g.mu.Unlock()
		if mine && p.epoch != 0 {
			if held, ok := g.node.Held(p.name); ok && held == p.epoch {
				if err := g.node.Withdraw(p.name); err != nil {
					g.log.Debug("cluster: withdraw", "stream", p.name, "err", err)
				}
			}
		}
	})
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
		g.log.Info("cluster: stream taken over by another node; ending the publish here", "stream", stream)
		go c.pub.Close() // not on the node's goroutine: Close may take the hub's lock
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
		}
	}
}

// reconcile follows streams that local viewers wait for and another node
// publishes, and stops following what nobody here watches any more (after
// followLinger) or what moved.
func (g *clusterGlue) reconcile() {
	now := time.Now()
	self := g.node.ID()
	watched := map[string]bool{}
	local := g.reg.Streams()
	for _, s := range local {
		if s.Viewers > 0 {
			watched[s.Name] = true
		}
	}
	g.announce(local)
	g.mu.Lock()
	var stop []func()
	for name, f := range g.follows {
		si, ok := g.node.Lookup(name)
		switch {
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
	u, err := url.Parse(best.PublicURL)
	if err != nil {
		return ""
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = "/ws/watch/" + stream
	return u.String()
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
