package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mseway/mseway/configs"
)

// Claim takes the stream's name for this node, cluster-wide, with a new
// epoch, and returns it. The name is free when no entry holds it, when its
// entry names this node, or when the node it names is gone from the
// directory; otherwise Claim fails with ErrBusy unless takeOver, in which
// case the entry is rewritten to this node and the old origin is told
// (its OnLost). The heartbeat renews the claim until Withdraw, Close or a
// loss. Claiming a stream this node already holds (a republish here) makes a
// new epoch without OnLost. Errors: ErrBusy, ErrUnavailable (within about
// 2 s), ErrClosed.
func (n *Node) Claim(stream string, takeOver bool) (epoch uint64, err error) {
	if !configs.ValidStreamName(stream) {
		return 0, fmt.Errorf("cluster: %q is not a stream name", stream)
	}
	unlock := n.keys.lock(stream)
	defer unlock()
	return n.claimLocked(stream, takeOver, StreamInfo{})
}

// Announce publishes the stream's details (MIME, tracks, and Since when set)
// in its entry. With e.Epoch set (from Claim), it is for that claim only:
// ErrLost when this node no longer holds it under that epoch. With e.Epoch
// zero, a stream this node does not hold is claimed first, without takeover
// (ErrBusy when it is live elsewhere). The entry's Node is this node.
func (n *Node) Announce(stream string, e StreamInfo) error {
	if !configs.ValidStreamName(stream) {
		return fmt.Errorf("cluster: %q is not a stream name", stream)
	}
	unlock := n.keys.lock(stream)
	defer unlock()
	n.mu.Lock()
	c := n.held[stream]
	n.mu.Unlock()
	switch {
	case e.Epoch != 0 && (c == nil || c.info.Epoch != e.Epoch):
		return fmt.Errorf("%w: %s (epoch %d) is no longer held by this node", ErrLost, stream, e.Epoch)
	case c == nil:
		_, err := n.claimLocked(stream, false, e)
		return err
	}
	kv, err := n.streamsKV()
	if err != nil {
		return err
	}
	info := c.info
	info.MIME, info.Tracks = e.MIME, e.Tracks
	if !e.Since.IsZero() {
		info.Since = e.Since
	}
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	return n.write(ctx, kv, c, info)
}

// Withdraw removes the stream's entry if it still names this claim of this
// node, and stops renewing it. When NATS is unavailable the entry expires
// after the TTL (and Withdraw returns ErrUnavailable).
func (n *Node) Withdraw(stream string) error {
	if n.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	return n.withdraw(ctx, stream)
}

// Held returns the epoch of this node's claim of the stream.
func (n *Node) Held(stream string) (epoch uint64, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.held[stream]
	if c == nil {
		return 0, false
	}
	return c.info.Epoch, true
}

func (n *Node) withdraw(ctx context.Context, stream string) error {
	unlock := n.keys.lock(stream)
	defer unlock()
	n.mu.Lock()
	c := n.held[stream]
	delete(n.held, stream)
	kv := n.kvStreams
	n.mu.Unlock()
	if c == nil {
		return nil
	}
	if kv == nil || !n.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS; %s expires after the TTL", ErrUnavailable, stream)
	}
	key := encodeKey(stream)
	rev := c.rev
	for range 2 {
		err := kv.Delete(ctx, key, jetstream.LastRevision(rev))
		if err == nil {
			n.log.Debug("stream withdrawn", "stream", stream, "epoch", c.info.Epoch)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return unavailable(err)
		}
		// Written since (a renewal this node did not record, or
		// another node): delete only what is still this claim.
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return unavailable(err)
		}
		var cur StreamInfo
		if json.Unmarshal(e.Value(), &cur) != nil || cur.Node != n.id || cur.Epoch != c.info.Epoch {
			return nil
		}
		rev = e.Revision()
	}
	return fmt.Errorf("%w: %s: contended", ErrUnavailable, stream)
}

// streamsKV returns the streams bucket when the directory is usable.
func (n *Node) streamsKV() (jetstream.KeyValue, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if !n.up || !n.nc.IsConnected() {
		return nil, fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	return n.kvStreams, nil
}

// claimLocked claims the stream (its key lock held) with the details of d.
func (n *Node) claimLocked(stream string, takeOver bool, d StreamInfo) (uint64, error) {
	kv, err := n.streamsKV()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	info := StreamInfo{Stream: stream, Node: n.id, Epoch: newEpoch(), MIME: d.MIME, Tracks: d.Tracks, Since: d.Since}
	if info.Since.IsZero() {
		info.Since = n.now()
	}
	val, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	key := encodeKey(stream)
	for range 4 {
		rev, err := kv.Create(ctx, key, val)
		if err == nil {
			n.hold(info, rev)
			n.log.Info("stream claimed", "stream", stream, "epoch", info.Epoch)
			return info.Epoch, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, unavailable(err)
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or withdrawn meanwhile
		}
		if err != nil {
			return 0, unavailable(err)
		}
		var cur StreamInfo
		_ = json.Unmarshal(e.Value(), &cur) // a bad entry is overwritten
		if cur.Node != "" && cur.Node != n.id && !takeOver {
			live, err := n.nodeLive(ctx, cur.Node)
			if err != nil {
				return 0, unavailable(err)
			}
			if live {
				return 0, fmt.Errorf("%w: %s is on node %s", ErrBusy, stream, cur.Node)
			}
		}
		rev, err = kv.Update(ctx, key, val, e.Revision())
		if err == nil {
			n.hold(info, rev)
			if cur.Node != n.id {
				n.log.Info("stream taken over from another node", "stream", stream, "from", cur.Node, "epoch", info.Epoch)
			} else {
				n.log.Info("stream claimed", "stream", stream, "epoch", info.Epoch)
			}
			return info.Epoch, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, unavailable(err)
		}
	}
	return 0, fmt.Errorf("%w: %s: contended", ErrBusy, stream)
}

func (n *Node) hold(info StreamInfo, rev uint64) {
	n.mu.Lock()
	n.held[info.Stream] = &claim{info: info, rev: rev}
	n.mu.Unlock()
}

// nodeLive reports whether the node has an entry in the nodes bucket.
func (n *Node) nodeLive(ctx context.Context, id string) (bool, error) {
	n.mu.Lock()
	kv := n.kvNodes
	n.mu.Unlock()
	_, err := kv.Get(ctx, encodeKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, err
}

// write rewrites the entry of claim c (its key lock held) with info, checked
// against the revision this node wrote last: a node that lost the name does
// not write it back, it calls OnLost and returns ErrLost.
func (n *Node) write(ctx context.Context, kv jetstream.KeyValue, c *claim, info StreamInfo) error {
	val, err := json.Marshal(info)
	if err != nil {
		return err
	}
	key := encodeKey(info.Stream)
	rev := c.rev
	for range 3 {
		nrev, err := kv.Update(ctx, key, val, rev)
		if err == nil {
			n.mu.Lock()
			c.info, c.rev = info, nrev
			n.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return unavailable(err)
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// Expired (this node could not renew it in time) or
			// deleted: take it again if it is still free.
			nrev, err := kv.Create(ctx, key, val)
			if err == nil {
				n.mu.Lock()
				c.info, c.rev = info, nrev
				n.mu.Unlock()
				n.log.Warn("stream entry had lapsed; written again", "stream", info.Stream, "epoch", info.Epoch)
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return unavailable(err)
			}
			continue // someone was faster: look again
		}
		if err != nil {
			return unavailable(err)
		}
		var cur StreamInfo
		_ = json.Unmarshal(e.Value(), &cur)
		if cur.Node == n.id && cur.Epoch == c.info.Epoch {
			rev = e.Revision() // this claim's own write, unrecorded
			continue
		}
		n.mu.Lock()
		n.loseLocked(info.Stream, c, cur.Node)
		n.mu.Unlock()
		return fmt.Errorf("%w: %s is on node %s", ErrLost, info.Stream, cur.Node)
	}
	return fmt.Errorf("%w: %s: contended", ErrUnavailable, info.Stream)
}

// beat renews this node's entry and the entries of the streams it holds.
func (n *Node) beat() {
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	n.mu.Lock()
	kvN, kvS := n.kvNodes, n.kvStreams
	names := make([]string, 0, len(n.held))
	for s := range n.held {
		names = append(names, s)
	}
	n.mu.Unlock()
	load := Load{Streams: len(names)}
	if n.opts.Load != nil {
		load = n.opts.Load()
	}
	val, _ := json.Marshal(NodeInfo{ID: n.id, PublicURL: n.cfg.PublicURL, Started: n.started, Load: load, Updated: n.now()})
	if _, err := kvN.Put(ctx, encodeKey(n.id), val); err != nil {
		n.beatFailed(err, "")
	}
	for _, s := range names {
		if err := n.renew(ctx, kvS, s); err != nil && !errors.Is(err, ErrLost) {
			n.beatFailed(err, s)
		}
	}
}

func (n *Node) beatFailed(err error, stream string) {
	if n.ctx.Err() != nil {
		return
	}
	if ok, held := n.errLog.Allow(); ok {
		n.log.Warn("directory heartbeat failed", "stream", stream, "err", err, "held_back", held)
	}
}

// renew rewrites a held stream's entry, as it is, under a new revision (which
// restarts its TTL).
func (n *Node) renew(ctx context.Context, kv jetstream.KeyValue, stream string) error {
	unlock := n.keys.lock(stream)
	defer unlock()
	n.mu.Lock()
	c := n.held[stream]
	n.mu.Unlock()
	if c == nil {
		return nil
	}
	return n.write(ctx, kv, c, c.info)
}
