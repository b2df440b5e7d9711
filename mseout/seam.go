package mseout

import (
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/remux"
)

// A stream hub has one way in and two kinds of way out.
//
// In: a Publication (Registry.Publish). Whatever makes a stream's fMP4 feeds
// its hub through it as a remux.Sink (WriteInit, WriteSegment with keyframe
// flag and timing), ends it with Close (viewers get eos), learns through
// Done that it was replaced or shut down, and through
// PublisherInfo.RequestKeyframe receives keyframe requests from upstream of
// the hub: a WebRTC publisher (peer session -> remux), a local source
// (capture -> remux), and a stream relayed from another gateway all feed a
// hub alike.
//
// Out: WebSocket viewers (ServeViewer), and any Output attached with
// Registry.Attach: a relay to other nodes, a recorder.

// Output receives one stream's output as the hub makes it, like a viewer but
// without the WebSocket. The hub calls it in order and synchronously, with
// the stream's lock held: an Output must not block or call into the
// Registry; it queues, and does its I/O on a goroutine of its own.
type Output interface {
	// WriteInit starts a new init; the segments after it belong to it.
	WriteInit(*remux.Init)
	// WriteSegment is one media segment. The first after an init is a
	// keyframe. Its Data is shared with every viewer: read it, never change it.
	WriteSegment(*remux.Segment)
	// WriteEnd says the publisher left (eos), or the gateway shut down. A
	// new init follows when another publisher takes the stream.
	WriteEnd()
}

// attached is an Output with its place in the stream.
type attached struct {
	out Output
	// waitKey: it got the init but no GOP (the cache was off or dropped):
	// segments reach it from the next keyframe on.
	waitKey bool
}

// Attach adds out to stream name (a stream with no publisher yet is
// waited for, as by a viewer). It first gets what a joining viewer gets: the
// current init and the segments since the newest keyframe (with no GOP
// cached, the init alone, then the segments from the next keyframe on; the
// publisher is asked for one). detach removes it;
// after detach returns, out is not called again. An attached output keeps the
// stream listed, like a viewer.
func (r *Registry) Attach(name string, out Output) (detach func(), err error) {
	if err := httpapi.StreamName(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	h := r.hubLocked(name)
	h.mu.Lock()
	r.mu.Unlock()
	a := &attached{out: out}
	h.outputs = append(h.outputs, a)
	var pub *Publication
	if h.init != nil {
		out.WriteInit(h.init.src)
		for _, s := range h.gop {
			out.WriteSegment(&s.src)
		}
		if len(h.gop) == 0 {
			a.waitKey, pub = true, h.pub
		}
	}
	h.mu.Unlock()
	if pub != nil {
		pub.requestKeyframe()
	}
	return func() {
		h.mu.Lock()
		for i, o := range h.outputs {
			if o == a {
				h.outputs = append(h.outputs[:i], h.outputs[i+1:]...)
				break
			}
		}
		h.mu.Unlock()
		r.removeIfIdle(h)
	}, nil
}
