package mseout

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/contain"
)

// frames, shared with other viewers, written as they are.
type item struct {
	frame    []byte
	size     int    // payload bytes, for the queue bound and metrics
	msgs     int    // WebSocket messages in frame
	initGen  uint64 // non-zero: this item is an init of that generation
	keyframe bool   // a segment starting with a keyframe
	control  bool   // a control message (waiting, eos, error)
	final    bool   // close the connection after writing it
	closes   bool   // frame ends with its own close frame (goaway: 1001, not 1008)
}

const (
	skipWindow      = time.Minute
	maxViewerMsg    = 4096 // largest message a viewer may send
	viewerReadSlack = 3    // read deadline = this many keep-alive intervals
)

// viewer is one WebSocket watching a stream. It costs the HTTP handler's
// goroutine (reading), its queue of references and the socket; a writer
// goroutine exists only while something waits that the fan-out could not
// write directly (join burst, control messages, a full socket).
type viewer struct {
	h      *hub
	conn   *websocket.Conn
	remote string
	id     uint64    // unique in the registry, for the admin API
	joined time.Time // the WebSocket upgrade, for the TTFF histogram

	mu          sync.Mutex
	queue       []item
	queuedBytes int
	skipping    bool   // dropping segments until the next keyframe
	initGen     uint64 // generation of the last init queued or written
	writtenGen  uint64 // generation of the last init taken by the writer
	skips       []time.Time
	closing     bool          // a final item is queued; nothing more is accepted
	stopped     bool          // the connection is gone: the writer returns
	pingDue     bool          // the keep-alive timer fired
	pong        []byte        // a pong frame to send (answer to the viewer's ping)
	echo        []byte        // the close frame echoing the viewer's (RFC 6455 5.5.1): written last
	echoed      chan struct{} // closed once echo is written (or given up)
	pingTimer   *time.Timer
	writerOn    bool           // a writer goroutine is running (started on demand)
	wwg         sync.WaitGroup // the writer goroutine
	stats       atomic.Pointer[ViewerStats]
	closeReason string
	leave       leaveReason // why the viewer is leaving, when the gateway knows first
	mediaTaken  bool        // a media segment was taken for writing (TTFF observed)

	// Direct writes (flushDirect): the fan-out writes to the connection
	// itself, without blocking, when nobody else is writing and the
	// transport allows it; what it does not take is left in pending (or in
	// the transport's backlog) for the writer goroutine.
	out     transport
	writing bool        // the fan-out or the writer goroutine owns the connection
	pending net.Buffers // the rest of a partial direct write; goes first

	// owned by whoever has writing set
	bufs       net.Buffers
	deadlineAt time.Time // the write deadline last set (writer goroutine)
}

// notify makes sure a writer goroutine runs for what is waiting. The writer
// is started on demand and exits when nothing is left, so a viewer that
// keeps up (written to directly by the fan-out) has no writer goroutine and
// no stack for it. v.mu must be held.
func (v *viewer) notify() {
	if v.writerOn || v.stopped || v.conn == nil { // no conn: a queue driven by hand in tests
		return
	}
	v.writerOn = true
	v.wwg.Add(1)
	go v.writeLoop()
}

// hasWorkLocked reports whether anything waits to be written. v.mu must be held.
func (v *viewer) hasWorkLocked() bool {
	return len(v.pending) > 0 || len(v.queue) > 0 || v.pingDue || v.pong != nil || v.echo != nil || v.out.backlog()
}

// pushSegment queues s, keeping the viewer's stream decodable: a viewer
// starts, and restarts after falling behind, at a keyframe, with the init it
// belongs to in front of it. h.mu must be held (init is h.init).
//
// With direct set, it returns true when the caller should call flushDirect
// (after releasing h.mu) instead of waking the writer goroutine.
func (v *viewer) pushSegment(s *segMsg, init *initMsg, direct bool) (flush bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pushSegmentLocked(s, init, direct)
}

// pushBurst queues the join burst (the GOP cache) under one hold of v.mu, so
// the writer goroutine, woken by the first segment, takes the whole burst
// and writes it with one writev instead of racing the pushes. h.mu must be held.
func (v *viewer) pushBurst(gop []*segMsg, init *initMsg) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range gop {
		v.pushSegmentLocked(s, init, false)
	}
}

// pushSegmentLocked is pushSegment with v.mu held.
func (v *viewer) pushSegmentLocked(s *segMsg, init *initMsg, direct bool) (flush bool) {
	if v.closing {
		return false
	}
	if v.skipping || v.initGen != init.gen {
		if !s.keyframe {
			v.skipping = true
			return false
		}
		v.skipping = false
	}
	st := v.h.settings
	need := s.size
	n := 1
	if v.initGen != init.gen {
		need += init.size
		n++
	}
	if len(v.queue)+n > st.ViewerQueueMessages || v.queuedBytes+need > st.ViewerQueueBytes {
		// Behind: drop what is queued and restart at a keyframe.
		v.h.r.metrics.viewerSkips.Add(1)
		clear(v.queue)
		v.queue, v.queuedBytes = v.queue[:0], 0
		v.initGen = v.writtenGen
		now := time.Now()
		kept := v.skips[:0]
		for _, t := range v.skips {
			if now.Sub(t) < skipWindow {
				kept = append(kept, t)
			}
		}
		v.skips = append(kept, now)
		if len(v.skips) >= st.ViewerMaxSkips {
			v.h.r.metrics.viewersDropped.Add(1)
			v.closeReason = "viewer too far behind"
			v.setLeave(leaveTooFarBehind)
			v.queue = append(v.queue, item{frame: errorFrame("viewer too far behind: the connection cannot keep up with the stream"), msgs: 1, control: true, final: true})
			v.closing = true
			v.notify()
			return false
		}
		if !s.keyframe {
			v.skipping = true
			return false
		}
	}
	if v.initGen != init.gen {
		v.queue = append(v.queue, item{frame: init.frames, size: init.size, msgs: 2, initGen: init.gen})
		v.queuedBytes += init.size
		v.initGen = init.gen
	}
	v.queue = append(v.queue, item{frame: s.frame, size: s.size, msgs: 1, keyframe: s.keyframe})
	v.queuedBytes += s.size
	if direct && v.out.direct() && !v.writing && v.pending == nil && !v.out.backlog() {
		return true
	}
	v.notify()
	return false
}

// leaveReason says why a viewer left, for gateway_viewer_disconnects_total.
type leaveReason int

const (
	leaveUnknown      leaveReason = iota
	leaveViewerClosed             // the viewer closed its socket
	leaveReadTimeout              // nothing from the viewer, not even a pong
	leaveConnLost                 // the connection broke
	leaveWriteTimeout             // a write did not finish in time (a stalled client)
	leaveWriteError
	leaveTooFarBehind // skipped too often
	leaveProtocol     // the viewer sent what the protocol does not allow
	leaveShutdown     // goaway: the gateway stops
	leavePanic        // a contained panic
	leaveOperator     // an operator ended it (admin API)
	numLeaveReasons
)

func (l leaveReason) String() string {
	return [...]string{"unknown", "viewer_closed", "read_timeout", "connection_lost", "write_timeout", "write_error",
		"too_far_behind", "protocol_error", "shutdown", "panic", "operator"}[l]
}

// setLeave records why the viewer is leaving; the first reason stands. v.mu
// must be held.
func (v *viewer) setLeave(l leaveReason) {
	if v.leave == leaveUnknown {
		v.leave = l
	}
}

// pushGoaway queues a goaway and the close (1001, going away) after it:
// the viewer reconnects, to the goaway's URL or the same one.
func (v *viewer) pushGoaway(frames []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closing {
		return
	}
	clear(v.queue)
	v.queue, v.queuedBytes = v.queue[:0], 0
	v.closing = true
	v.setLeave(leaveShutdown)
	v.queue = append(v.queue, item{frame: frames, msgs: 1, control: true, final: true, closes: true})
	v.initGen = 0
	v.notify()
}

// pushControl queues a control message (waiting, eos, error). A final one
// closes the connection after it is written. A control message resets the
// viewer's init: what follows starts with a new init.
func (v *viewer) pushControl(frame []byte, final bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closing {
		return
	}
	if final {
		// Nothing queued matters any more.
		clear(v.queue)
		v.queue, v.queuedBytes = v.queue[:0], 0
		v.closing = true
	}
	v.queue = append(v.queue, item{frame: frame, msgs: 1, control: true, final: final})
	v.initGen = 0
	v.skipping = false
	v.notify()
}

// takeLocked moves what is to be written (a partial direct write's rest,
// keep-alive, pong, the queue, a close echo) into v.bufs and marks the
// socket owned. v.mu must be held; the caller writes v.bufs, then calls
// doneWriting. final: the connection is closed after this write; first: it
// carries the viewer's first media segment (for the TTFF histogram).
func (v *viewer) takeLocked(control bool) (final bool, bytes, msgs int64, first bool) {
	v.writing = true
	closed := false // an item brought its own close frame
	bufs := v.bufs[:0]
	if len(v.pending) > 0 {
		bufs = append(bufs, v.pending...)
		clear(v.pending)
		v.pending = v.pending[:0]
	}
	if control {
		if v.pingDue {
			bufs = append(bufs, framePing)
		}
		if v.pong != nil {
			bufs = append(bufs, v.pong)
		}
		v.pingDue, v.pong = false, nil
	}
	for _, it := range v.queue {
		if it.initGen != 0 {
			v.writtenGen = it.initGen
		}
		bufs = append(bufs, it.frame)
		bytes += int64(it.size)
		msgs += int64(it.msgs)
		final = final || it.final
		closed = closed || it.closes
		if it.keyframe && !v.mediaTaken { // a viewer's first segment is a keyframe
			v.mediaTaken, first = true, true
		}
	}
	switch {
	case final && !closed:
		bufs = append(bufs, frameClose)
	case control && v.echo != nil:
		bufs = append(bufs, v.echo)
		final = true
	}
	if control {
		v.echo = nil
	}
	clear(v.queue)
	v.queue = v.queue[:0]
	v.queuedBytes = 0
	v.bufs = bufs
	return final, bytes, msgs, first
}

// doneWriting releases the socket and v.bufs; if more is waiting, the writer
// goroutine is woken for it. rest (a part of v.bufs) is what could not be
// written (direct writes only).
func (v *viewer) doneWriting(rest net.Buffers) {
	v.mu.Lock()
	if len(rest) > 0 {
		v.pending = append(v.pending[:0], rest...)
	}
	clear(v.bufs)
	v.bufs = v.bufs[:0]
	v.writing = false
	if v.hasWorkLocked() {
		v.notify()
	}
	v.mu.Unlock()
}

// keepAlive queues a ping; it re-arms itself until the viewer stops.
func (v *viewer) keepAlive() {
	defer contain.Recover(v.h.r.log, "viewer keep-alive", v.abandon)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	v.pingDue = true
	v.notify()
	v.pingTimer.Reset(v.h.r.opts.KeepAlive)
}

// stop ends the writer and the keep-alive.
func (v *viewer) stop() {
	v.mu.Lock()
	v.stopped = true
	if v.pingTimer != nil {
		v.pingTimer.Stop()
	}
	clear(v.queue)
	v.queue = nil
	v.notify()
	v.mu.Unlock()
}
