package mseout

import (
	"sort"
	"time"
)

// ViewerInfo describes one viewer for an operator (the admin API).
type ViewerInfo struct {
	ID     uint64    `json:"id"`
	Remote string    `json:"remote"`
	Since  time.Time `json:"since"`
	// RecentSkips counts the skips to a keyframe in the last skip window
	// (the viewer could not keep up).
	RecentSkips int `json:"recentSkips"`
	QueuedBytes int `json:"queuedBytes"`
	// Stats is what the viewer last reported (PROTOCOL.md stats), if any.
	Stats *ViewerStats `json:"stats,omitempty"`
}

// Viewers lists the viewers of stream, oldest first; ok is false when the
// stream has no hub (no viewer and no publisher).
func (r *Registry) Viewers(stream string) (list []ViewerInfo, ok bool) {
	r.mu.Lock()
	h := r.hubs[stream]
	r.mu.Unlock()
	if h == nil {
		return nil, false
	}
	h.mu.Lock()
	vs := make([]*viewer, 0, len(h.viewers))
	for v := range h.viewers {
		vs = append(vs, v)
	}
	h.mu.Unlock()
	now := time.Now()
	list = make([]ViewerInfo, 0, len(vs))
	for _, v := range vs {
		vi := ViewerInfo{ID: v.id, Remote: v.remote, Since: v.joined, Stats: v.stats.Load()}
		v.mu.Lock()
		vi.QueuedBytes = v.queuedBytes
		for _, t := range v.skips {
			if now.Sub(t) < skipWindow {
				vi.RecentSkips++
			}
		}
		v.mu.Unlock()
		list = append(list, vi)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list, true
}

// DisconnectViewer ends one viewer of stream: it gets an error ("disconnected
// by an operator") and a close. It reports whether the viewer was found.
func (r *Registry) DisconnectViewer(stream string, id uint64) bool {
	r.mu.Lock()
	h := r.hubs[stream]
	r.mu.Unlock()
	if h == nil {
		return false
	}
	h.mu.Lock()
	var found *viewer
	for v := range h.viewers {
		if v.id == id {
			found = v
			break
		}
	}
	h.mu.Unlock()
	if found == nil {
		return false
	}
	found.mu.Lock()
	found.closeReason = "disconnected by an operator"
	found.setLeave(leaveOperator)
	found.mu.Unlock()
	found.pushControl(errorFrame("disconnected by an operator"), true)
	return true
}

// EndPublish ends the stream's current publication as a takeover does: its
// publisher's session ends (its Done channel closes) and the viewers get
// eos and wait. It reports whether there was one.
func (r *Registry) EndPublish(stream string) bool {
	r.mu.Lock()
	h := r.hubs[stream]
	r.mu.Unlock()
	if h == nil {
		return false
	}
	h.mu.Lock()
	pub := h.pub
	h.mu.Unlock()
	if pub == nil {
		return false
	}
	pub.Close()
	return true
}
