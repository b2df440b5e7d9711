package mseout

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/httpapi"
)

// ViewerStats is what a viewer last reported in a stats message.
type ViewerStats struct {
	Latency       float64 `json:"latency"`
	Buffered      float64 `json:"buffered"`
	DecodedFrames int64   `json:"decodedFrames"`
	DroppedFrames int64   `json:"droppedFrames"`
}

// item is one entry of a viewer's queue: one or more complete WebSocket
// frames, shared with other viewers, written as they are.
type item struct {
	frame    []byte
	size     int    // payload bytes, for the queue bound and metrics
	msgs     int    // WebSocket messages in frame
	initGen  uint64 // non-zero: this item is an init of that generation
	keyframe bool   // a segment starting with a keyframe
	control  bool   // a control message (waiting, eos, error)
	final    bool   // close the connection after writing it
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

	mu          sync.Mutex
	queue       []item
	queuedBytes int
	skipping    bool   // dropping segments until the next keyframe
	initGen     uint64 // generation of the last init queued or written
	writtenGen  uint64 // generation of the last init taken by the writer
	skips       []time.Time
	closing     bool   // a final item is queued; nothing more is accepted
	stopped     bool   // the connection is gone: the writer returns
	pingDue     bool   // the keep-alive timer fired
	pong        []byte // a pong frame to send (answer to the viewer's ping)
	pingTimer   *time.Timer
	writerOn    bool           // a writer goroutine is running (started on demand)
	wwg         sync.WaitGroup // the writer goroutine
	stats       atomic.Pointer[ViewerStats]
	closeReason string

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
	return len(v.pending) > 0 || len(v.queue) > 0 || v.pingDue || v.pong != nil || v.out.backlog()
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
// keep-alive, pong, the queue) into v.bufs and marks the socket owned. v.mu
// must be held; the caller writes v.bufs, then calls doneWriting.
func (v *viewer) takeLocked(control bool) (final bool, bytes, msgs int64) {
	v.writing = true
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
	}
	if final {
		bufs = append(bufs, frameClose)
	}
	clear(v.queue)
	v.queue = v.queue[:0]
	v.queuedBytes = 0
	v.bufs = bufs
	return final, bytes, msgs
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

func (v *viewer) count(bytes, msgs int64) {
	m := &v.h.r.metrics
	m.writes.Add(1)
	m.messagesSent.Add(msgs)
	m.bytesSent.Add(bytes)
}

// flushDirect writes the viewer's queue from the fan-out goroutine with one
// non-blocking writev: no goroutine is woken when the socket has room, which
// is the common case for a viewer that keeps up. A viewer whose socket is
// full gets the rest from its writer goroutine (which may block, with a
// deadline). Called without h.mu.
func (v *viewer) flushDirect() {
	defer contain.Recover(v.h.r.log, "viewer direct write", v.abandon)
	v.mu.Lock()
	if !v.out.direct() || v.writing || v.stopped || v.closing || len(v.pending) > 0 || len(v.queue) == 0 ||
		v.pingDue || v.pong != nil || v.out.backlog() {
		// The writer goroutine has been (or will be) woken for it.
		v.mu.Unlock()
		return
	}
	_, bytes, msgs := v.takeLocked(false)
	v.mu.Unlock()
	n, err := v.out.tryWrite(v.bufs)
	if err != nil {
		v.conn.Close() // the read loop ends and cleans up
		v.doneWriting(nil)
		return
	}
	v.count(bytes, msgs)
	v.h.r.metrics.directWrites.Add(1)
	v.doneWriting(consume(v.bufs, n))
}

// consume returns what is left of bufs after n bytes were written.
func consume(bufs net.Buffers, n int) net.Buffers {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}

// writeLoop writes what the fan-out could not write directly: the join burst
// (init + GOP cache), control messages, keep-alives, and everything for a
// viewer whose socket is full or that cannot take direct writes. Each round
// takes all that is waiting and writes it with one writev, so a viewer that
// falls behind costs fewer syscalls, not more. It returns when nothing is
// left (notify starts it again). No lock is held while writing.
func (v *viewer) writeLoop() {
	defer v.wwg.Done()
	defer contain.Recover(v.h.r.log, "viewer writer", v.abandon)
	nc := v.conn.NetConn()
	wt := v.h.r.opts.WriteTimeout
	for {
		v.mu.Lock()
		// A direct write in progress wakes a writer again when it is done.
		if v.stopped || v.writing || !v.hasWorkLocked() {
			v.writerOn = false
			v.mu.Unlock()
			return
		}
		final, bytes, msgs := v.takeLocked(true)
		v.mu.Unlock()

		// The deadline bounds each write to between 3/4 and all of wt; it is
		// refreshed only when needed (setting it has a cost per write). With
		// direct writes it is cleared after the write: a deadline left
		// behind would fail the next direct write once it passed.
		direct := v.out.direct()
		if now := time.Now(); direct || v.deadlineAt.Sub(now) < wt*3/4 {
			v.deadlineAt = now.Add(wt)
			_ = nc.SetWriteDeadline(v.deadlineAt)
		}
		err := v.out.write(v.bufs)
		if direct && err == nil {
			err = nc.SetWriteDeadline(time.Time{})
		}
		if err == nil && len(v.bufs) > 0 {
			v.count(bytes, msgs)
		}
		if err != nil || final {
			v.conn.Close() // the read loop ends and cleans up
			v.mu.Lock()
			v.stopped = true
			v.mu.Unlock()
			v.doneWriting(nil)
			v.mu.Lock()
			v.writerOn = false
			v.mu.Unlock()
			return
		}
		v.doneWriting(nil)
	}
}

// abandon closes a viewer whose write path panicked (contained): the
// connection is closed, so the read loop ends and cleans up, and nothing
// more is written to it.
func (v *viewer) abandon() {
	v.conn.Close()
	v.mu.Lock()
	v.stopped = true
	v.writing = false
	v.writerOn = false
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

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	// Frames are written directly to the connection, never through the
	// write buffer; a pool keeps viewers from each holding one. Reads use the
	// HTTP server's buffer, handed over by the hijack.
	WriteBufferPool: &sync.Pool{},
	// Viewers embed the player on their own sites; access is controlled by tokens.
	CheckOrigin: func(*http.Request) bool { return true },
	// Handshake failures answer in JSON like every other HTTP error.
	Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		httpapi.WriteError(w, status, "websocket handshake: "+reason.Error())
	},
}

// ServeViewer handles GET /ws/watch/{stream}: it validates the request,
// upgrades to WebSocket and runs the viewer protocol until the viewer leaves.
func (r *Registry) ServeViewer(w http.ResponseWriter, req *http.Request, name string) {
	if err := httpapi.StreamName(name); err != nil {
		httpapi.Fail(w, err)
		return
	}
	if err := httpapi.CheckToken(httpapi.Token(req), r.opts.ViewToken, "view"); err != nil {
		httpapi.Fail(w, err)
		return
	}
	conn, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return // Upgrade has written the HTTP error
	}
	conn.SetReadLimit(maxViewerMsg)
	remote := req.RemoteAddr
	if refuse := r.attach(name); refuse != "" {
		r.refuse(conn, refuse)
		return
	}
	defer r.detach()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.refuse(conn, ErrClosed.Error())
		return
	}
	h := r.hubLocked(name)
	r.mu.Unlock()

	v := &viewer{h: h, conn: conn, remote: remote, out: newTransport(conn.NetConn())}
	r.wg.Add(1) // done when the viewer and its writer are gone
	if refuse := h.addViewer(v); refuse != "" {
		r.wg.Done()
		r.removeIfIdle(h)
		r.refuse(conn, refuse)
		return
	}
	r.metrics.viewersJoined.Add(1)
	r.log.Info("viewer joined", "stream", name, "remote", remote)
	start := time.Now()

	v.mu.Lock()
	v.pingTimer = time.AfterFunc(r.opts.KeepAlive, v.keepAlive)
	v.mu.Unlock()
	reason := v.serve()
	v.stop()
	conn.Close()
	v.wwg.Wait()
	r.wg.Done()
	h.removeViewer(v)
	v.mu.Lock()
	if v.closeReason != "" {
		reason = v.closeReason
	}
	v.mu.Unlock()
	r.log.Info("viewer left", "stream", name, "remote", remote, "watched", time.Since(start).Round(time.Millisecond), "reason", reason)
}

// attach counts a viewer against the global limit.
func (r *Registry) attach(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed.Error()
	}
	if r.viewers >= r.opts.Limits.MaxViewers {
		return "too many viewers"
	}
	if _, ok := r.hubs[name]; !ok && len(r.hubs) >= 2*r.opts.Limits.MaxStreams {
		return "too many streams"
	}
	r.viewers++
	return ""
}

func (r *Registry) detach() {
	r.mu.Lock()
	r.viewers--
	r.mu.Unlock()
}

// refuse sends an error message and closes a viewer that was not attached.
func (r *Registry) refuse(conn *websocket.Conn, msg string) {
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	nc := conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = nc.Write(append(errorFrame(msg), frameClose...))
	conn.Close()
	r.log.Info("viewer refused", "remote", conn.RemoteAddr().String(), "reason", msg)
}

// serve runs the read loop; a panic in it is contained, and the viewer is
// then cleaned up like any other that left.
func (v *viewer) serve() (reason string) {
	defer contain.Recover(v.h.r.log, "viewer reader", func() { reason = "internal error (panic contained)"; v.abandon() })
	return v.readLoop()
}

// readLoop reads what the viewer sends (stats) until the connection ends, and
// returns why it ended.
func (v *viewer) readLoop() string {
	deadline := viewerReadSlack * v.h.r.opts.KeepAlive
	_ = v.conn.SetReadDeadline(time.Now().Add(deadline))
	v.conn.SetPongHandler(func(string) error {
		return v.conn.SetReadDeadline(time.Now().Add(deadline))
	})
	// Every write goes through the writer (gorilla's handlers would write
	// from this goroutine, and set the connection's write deadline).
	v.conn.SetPingHandler(func(data string) error {
		v.mu.Lock()
		v.pong = newFrame(opPong, []byte(data))
		v.notify()
		v.mu.Unlock()
		return nil
	})
	v.conn.SetCloseHandler(func(code int, _ string) error {
		// Echo the close (RFC 6455 5.5.1) when the socket is free: never in
		// the middle of a frame. The connection is closed right after.
		v.mu.Lock()
		free := !v.writing && len(v.pending) == 0 && !v.stopped && !v.out.backlog()
		v.writing = v.writing || free
		v.mu.Unlock()
		if free {
			var payload []byte
			if code != websocket.CloseNoStatusReceived {
				payload = websocket.FormatCloseMessage(code, "")
			}
			nc := v.conn.NetConn()
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = nc.Write(newFrame(opClose, payload))
			v.mu.Lock()
			v.writing = false
			v.mu.Unlock()
		}
		return nil
	})
	for {
		mt, data, err := v.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return "closed by viewer"
			}
			return err.Error()
		}
		_ = v.conn.SetReadDeadline(time.Now().Add(deadline))
		if mt != websocket.TextMessage {
			continue
		}
		var msg struct {
			Type string `json:"type"`
			ViewerStats
		}
		if err := json.Unmarshal(data, &msg); err != nil {
			v.pushControl(errorFrame("invalid message: not JSON"), true)
			continue
		}
		if msg.Type == "stats" {
			st := msg.ViewerStats
			v.stats.Store(&st)
		}
		// Unknown message types are ignored so clients can be newer than the server.
	}
}
