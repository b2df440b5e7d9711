package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// nodeEntry and streamEntry are the views' entries: the value, and when this
// node last saw it written (its own clock), for the expiry sweep.
type nodeEntry struct {
	info NodeInfo
	seen time.Time
}

type streamEntry struct {
	info StreamInfo
	raw  []byte
	rev  uint64
	seen time.Time
}

// Nodes returns the live nodes, by id.
func (n *Node) Nodes() []NodeInfo {
	n.mu.Lock()
	out := make([]NodeInfo, 0, len(n.nodes))
	for _, e := range n.nodes {
		out = append(out, e.info)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Node returns the live node of that id.
func (n *Node) Node(id string) (NodeInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.nodes[id]
	return e.info, ok
}

// Streams returns the cluster's live streams with their nodes, by name.
func (n *Node) Streams() []StreamInfo {
	n.mu.Lock()
	out := make([]StreamInfo, 0, len(n.streams))
	for _, e := range n.streams {
		out = append(out, e.info)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b StreamInfo) int { return strings.Compare(a.Stream, b.Stream) })
	return out
}

// Lookup returns the directory's entry of a stream.
func (n *Node) Lookup(stream string) (StreamInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.streams[stream]
	return e.info, ok
}

// Changed returns a channel closed at the next change of the views: a node
// or stream appearing, going or changing (a node's load and update time
// excepted), or Healthy changing. Take the channel before reading the views:
//
//	for {
//		ch := n.Changed()
//		use(n.Streams())
//		<-ch
//	}
func (n *Node) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

func (n *Node) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// run is the node's loop: one session per connection.
func (n *Node) run() {
	defer n.wg.Done()
	fails := 0
	for {
		if !n.waitConnected() {
			return
		}
		err := n.session()
		if n.ctx.Err() != nil {
			return
		}
		if err == nil {
			fails = 0
			continue
		}
		// Setup failed while connected (JetStream not ready, no
		// JetStream, permissions): retry with backoff.
		fails++
		if ok, held := n.errLog.Allow(); ok {
			n.log.Warn("directory unavailable; retrying", "err", err, "held_back", held)
		}
		t := time.NewTimer(reconnectDelay(fails))
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (n *Node) waitConnected() bool {
	for !n.nc.IsConnected() {
		select {
		case <-n.ctx.Done():
			return false
		case <-n.connCh:
		}
	}
	return n.ctx.Err() == nil
}

// session sets the directory up on the current connection, watches it and
// renews this node's entries until the connection drops (nil) or the node
// closes. It returns the error of a failed setup.
func (n *Node) session() error {
	ctx, cancel := context.WithTimeout(n.ctx, 2*opTimeout)
	kvN, err := n.bucket(ctx, NodesBucket)
	var kvS jetstream.KeyValue
	if err == nil {
		kvS, err = n.bucket(ctx, StreamsBucket)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("directory buckets (JetStream not ready, or not enabled?): %w", err)
	}
	n.mu.Lock()
	n.kvNodes, n.kvStreams, n.up = kvN, kvS, true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.up = false
		if n.ready {
			n.ready = false
			n.notifyLocked()
		}
		n.mu.Unlock()
	}()

	// This node first, then its streams, then the views.
	n.beat()

	// The watches live as long as their context (nats.go unsubscribes when
	// it ends): the session's.
	wctx, wcancel := context.WithCancel(n.ctx)
	synced := make(chan struct{}, 2)
	ended := make(chan struct{}, 2)
	var watchers []jetstream.KeyWatcher
	var wwg sync.WaitGroup
	defer func() {
		wcancel()
		for _, w := range watchers {
			_ = w.Stop()
		}
		wwg.Wait()
	}()
	for _, b := range []struct {
		kv    jetstream.KeyValue
		apply func(initial bool, e jetstream.KeyValueEntry, now time.Time)
		swap  func()
	}{{kvN, n.applyNode, n.swapNodes}, {kvS, n.applyStream, n.swapStreams}} {
		w, err := b.kv.WatchAll(wctx)
		if err != nil {
			return err
		}
		watchers = append(watchers, w)
		wwg.Add(1)
		go n.watch(w, b.apply, b.swap, synced, ended, &wwg)
	}

	tick := time.NewTicker(n.cfg.Heartbeat)
	defer tick.Stop()
	nsynced := 0
	for {
		select {
		case <-n.ctx.Done():
			return nil
		case <-n.connCh:
			if !n.nc.IsConnected() {
				return nil
			}
		case <-ended:
			return errors.New("a directory watch ended")
		case <-synced:
			if nsynced++; nsynced == 2 {
				n.mu.Lock()
				n.ready = true
				n.notifyLocked()
				n.mu.Unlock()
				n.log.Info("directory in sync", "nodes", len(n.Nodes()), "streams", len(n.Streams()))
			}
		case <-tick.C:
			n.beat()
			if nsynced == 2 {
				n.sweep()
			}
		}
	}
}

// watch feeds a bucket's updates to the views until the watcher closes (it
// must be drained until then: nats.go blocks its delivery on the channel).
// The initial values go to a fresh view, swapped in whole when complete.
func (n *Node) watch(w jetstream.KeyWatcher, apply func(bool, jetstream.KeyValueEntry, time.Time), swap func(), synced, ended chan<- struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	initial := true
	for e := range w.Updates() {
		if e == nil {
			if initial {
				initial = false
				swap()
				synced <- struct{}{}
			}
			continue
		}
		apply(initial, e, time.Now())
	}
	ended <- struct{}{}
}

func (n *Node) applyNode(initial bool, e jetstream.KeyValueEntry, now time.Time) {
	id := decodeKey(e.Key())
	n.mu.Lock()
	defer n.mu.Unlock()
	view := n.nodes
	if initial {
		if n.pendingNodes == nil {
			n.pendingNodes = map[string]nodeEntry{}
		}
		view = n.pendingNodes
	}
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := view[id]; ok {
			delete(view, id)
			if !initial {
				n.notifyLocked()
			}
		}
		return
	}
	var info NodeInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil || info.ID != id {
		if ok, _ := n.errLog.Allow(); ok {
			n.log.Warn("directory: bad node entry", "key", e.Key(), "err", err)
		}
		return
	}
	old, had := view[id]
	view[id] = nodeEntry{info: info, seen: now}
	if !initial && (!had || old.info.PublicURL != info.PublicURL || !old.info.Started.Equal(info.Started)) {
		n.notifyLocked()
	}
}

func (n *Node) swapNodes() {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.pendingNodes
	n.pendingNodes = nil
	if p == nil {
		p = map[string]nodeEntry{}
	}
	n.nodes = p
	n.notifyLocked()
}

func (n *Node) applyStream(initial bool, e jetstream.KeyValueEntry, now time.Time) {
	name := decodeKey(e.Key())
	n.mu.Lock()
	defer n.mu.Unlock()
	view := n.streams
	if initial {
		if n.pendingStreams == nil {
			n.pendingStreams = map[string]streamEntry{}
		}
		view = n.pendingStreams
	}
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := view[name]; ok {
			delete(view, name)
			if !initial {
				n.notifyLocked()
			}
		}
		return
	}
	var info StreamInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil || info.Stream != name || info.Node == "" {
		if ok, _ := n.errLog.Allow(); ok {
			n.log.Warn("directory: bad stream entry", "key", e.Key(), "err", err)
		}
		return
	}
	old, had := view[name]
	view[name] = streamEntry{info: info, raw: e.Value(), rev: e.Revision(), seen: now}
	if !initial && (!had || string(old.raw) != string(e.Value())) {
		n.notifyLocked()
	}
	// Another node wrote a stream this node holds, after this node's last
	// write: it was taken over. (This node's own writes are checked by
	// revision where they are made.)
	if c := n.held[name]; c != nil && info.Node != n.id && e.Revision() > c.rev {
		n.loseLocked(name, c, info.Node)
	}
}

func (n *Node) swapStreams() {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.pendingStreams
	n.pendingStreams = nil
	if p == nil {
		p = map[string]streamEntry{}
	}
	n.streams = p
	n.notifyLocked()
}

// sweep drops from the views the entries not renewed for one TTL: a bucket
// without limit markers expires entries without telling watchers.
func (n *Node) sweep() {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	dropped := false
	for id, e := range n.nodes {
		if now.Sub(e.seen) > n.ttl {
			delete(n.nodes, id)
			dropped = true
		}
	}
	for s, e := range n.streams {
		if now.Sub(e.seen) > n.ttl {
			delete(n.streams, s)
			dropped = true
		}
	}
	if dropped {
		n.notifyLocked()
	}
}

// loseLocked records that this node no longer holds the stream of claim c
// (taken over by node by) and queues OnLost.
func (n *Node) loseLocked(stream string, c *claim, by string) {
	if n.held[stream] != c {
		return
	}
	delete(n.held, stream)
	n.lost = append(n.lost, lostEvent{stream, c.info.Epoch})
	select {
	case n.lostSig <- struct{}{}:
	default:
	}
	n.log.Warn("stream taken over by another node; no longer renewing it", "stream", stream, "by", by, "epoch", c.info.Epoch)
}

// bucket opens a directory bucket, creating it when missing: History 1, TTL
// from the config, limit markers so that watchers see expiries, memory
// storage (the directory is rebuilt by the heartbeats), 1 replica on a single
// server and 3 on a clustered one.
func (n *Node) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	clustered := n.nc.ConnectedClusterName() != ""
	kv, err := n.js.KeyValue(ctx, name)
	if err == nil {
		n.checkBucket(ctx, name, kv, clustered)
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:         name,
		Description:    "mseway cluster directory (docs/CLUSTER.md)",
		History:        1,
		TTL:            n.cfg.TTL,
		LimitMarkerTTL: max(n.cfg.TTL, time.Second),
		Storage:        jetstream.MemoryStorage,
		Replicas:       1,
	}
	if clustered {
		cfg.Replicas = 3
	}
	kv, err = n.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		n.log.Info("NATS server without limit markers: directory expiries seen by the views' timer only", "bucket", name)
		cfg.LimitMarkerTTL = 0
		kv, err = n.js.CreateKeyValue(ctx, cfg)
	}
	if cfg.Replicas > 1 && apiCode(err, 10005, 10023, 10074) {
		if time.Since(n.startedAt) < replicasGrace {
			return nil, err // peers may still be joining
		}
		n.log.Warn("NATS cluster cannot place 3 replicas: directory bucket with 1 replica (raised at a later connection when it can)", "bucket", name, "err", err)
		cfg.Replicas = 1
		kv, err = n.js.CreateKeyValue(ctx, cfg)
	}
	if errors.Is(err, jetstream.ErrBucketExists) {
		return n.js.KeyValue(ctx, name) // made by another node meanwhile
	}
	if err != nil {
		return nil, err
	}
	n.log.Info("directory bucket created", "bucket", name, "ttl", cfg.TTL, "replicas", cfg.Replicas)
	return kv, nil
}

// checkBucket adopts an existing bucket's TTL for the views, and raises its
// replicas to 3 on a clustered server when they are fewer (best effort).
func (n *Node) checkBucket(ctx context.Context, name string, kv jetstream.KeyValue, clustered bool) {
	st, err := kv.Status(ctx)
	if err != nil {
		return
	}
	if ttl := st.TTL(); ttl > 0 {
		if ttl != n.cfg.TTL {
			n.log.Warn("directory bucket has another TTL than this node's config; using the bucket's", "bucket", name, "bucket_ttl", ttl, "ttl", n.cfg.TTL)
		}
		if name == StreamsBucket {
			n.mu.Lock()
			n.ttl = ttl
			n.mu.Unlock()
		}
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || !clustered || bs.StreamInfo().Config.Replicas >= 3 {
		return
	}
	cfg := bs.StreamInfo().Config
	cfg.Replicas = 3
	if _, err := n.js.UpdateStream(ctx, cfg); err != nil {
		n.log.Debug("directory bucket: replicas not raised", "bucket", name, "err", err)
		return
	}
	n.log.Info("directory bucket raised to 3 replicas", "bucket", name)
}

// apiCode reports whether err is a JetStream API error of one of the codes.
func apiCode(err error, codes ...jetstream.ErrorCode) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && slices.Contains(codes, api.ErrorCode)
}
