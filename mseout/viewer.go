package mseout

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/configs"
)

// ViewerStats is what a viewer last reported in a stats message.
type ViewerStats struct {
	Latency       float64 `json:"latency"`
	Buffered      float64 `json:"buffered"`
	DecodedFrames int64   `json:"decodedFrames"`
	DroppedFrames int64   `json:"droppedFrames"`
}

// item is one entry of a viewer's queue: up to two messages written in order.
type item struct {
	text    *websocket.PreparedMessage
	binary  *websocket.PreparedMessage
	size    int
	initGen uint64 // non-zero: this item is an init of that generation
	final   bool   // close the connection after writing it
}

const (
	skipWindow      = time.Minute
	maxViewerMsg    = 4096 // largest message a viewer may send
	viewerReadSlack = 3    // read deadline = this many keep-alive intervals
)

// viewer is one WebSocket watching a stream.
type viewer struct {
	h      *hub
	conn   *websocket.Conn
	remote string

	mu          sync.Mutex
	queue       []item
	spare       []item
	queuedBytes int
	skipping    bool   // dropping segments until the next keyframe
	initGen     uint64 // generation of the last init queued or written
	writtenGen  uint64 // generation of the last init taken by the writer
	skips       []time.Time
	closing     bool // a final item is queued; nothing more is accepted
	wake        chan struct{}
	done        chan struct{}
	stats       atomic.Pointer[ViewerStats]
	closeReason string
}

// notify wakes the writer. v.mu must be held.
func (v *viewer) notify() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// pushSegment queues s, keeping the viewer's stream decodable: a viewer
// starts, and restarts after falling behind, at a keyframe, with the init it
// belongs to in front of it. h.mu must be held (init is h.init).
func (v *viewer) pushSegment(s *segMsg, init *initMsg) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closing {
		return
	}
	if v.skipping || v.initGen != init.gen {
		if !s.keyframe {
			v.skipping = true
			return
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
			v.queue = append(v.queue, item{text: prepareError("viewer too far behind: the connection cannot keep up with the stream"), final: true})
			v.closing = true
			v.notify()
			return
		}
		if !s.keyframe {
			v.skipping = true
			return
		}
	}
	if v.initGen != init.gen {
		v.queue = append(v.queue, item{text: init.text, binary: init.binary, size: init.size, initGen: init.gen})
		v.queuedBytes += init.size
		v.initGen = init.gen
	}
	v.queue = append(v.queue, item{binary: s.pm, size: s.size})
	v.queuedBytes += s.size
	v.notify()
}

// pushControl queues a control message (waiting, eos, error). A final one
// closes the connection after it is written. A control message resets the
// viewer's init: what follows starts with a new init.
func (v *viewer) pushControl(pm *websocket.PreparedMessage, final bool) {
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
	v.queue = append(v.queue, item{text: pm, final: final})
	v.initGen = 0
	v.skipping = false
	v.notify()
}

// writeLoop owns all data writes to the connection.
func (v *viewer) writeLoop() {
	ping := time.NewTicker(v.h.r.opts.KeepAlive)
	defer ping.Stop()
	wt := v.h.r.opts.WriteTimeout
	for {
		select {
		case <-v.done:
			return
		case <-ping.C:
			if err := v.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wt)); err != nil {
				v.conn.Close()
				return
			}
			continue
		case <-v.wake:
		}
		v.mu.Lock()
		batch := v.queue
		v.queue, v.spare = v.spare[:0], nil
		v.queuedBytes = 0
		for _, it := range batch {
			if it.initGen != 0 {
				v.writtenGen = it.initGen
			}
		}
		v.mu.Unlock()

		final := false
		var bytes, msgs int64
		_ = v.conn.SetWriteDeadline(time.Now().Add(wt))
		for _, it := range batch {
			for _, pm := range [2]*websocket.PreparedMessage{it.text, it.binary} {
				if pm == nil {
					continue
				}
				if err := v.conn.WritePreparedMessage(pm); err != nil {
					v.conn.Close() // the read loop ends and cleans up
					return
				}
				msgs++
			}
			bytes += int64(it.size)
			final = final || it.final
		}
		v.h.r.metrics.messagesSent.Add(msgs)
		v.h.r.metrics.bytesSent.Add(bytes)
		if final {
			_ = v.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""), time.Now().Add(time.Second))
			v.conn.Close()
			return
		}
		clear(batch)
		v.mu.Lock()
		v.spare = batch[:0]
		v.mu.Unlock()
	}
}

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	// Segments are written as prepared frames, which bypass the write buffer;
	// a pool keeps idle viewers from each holding one.
	WriteBufferPool: &sync.Pool{},
	// Viewers embed the player on their own sites; access is controlled by tokens.
	CheckOrigin: func(*http.Request) bool { return true },
}

// ServeViewer handles GET /ws/watch/{stream}: it validates the request,
// upgrades to WebSocket and runs the viewer protocol until the viewer leaves.
func (r *Registry) ServeViewer(w http.ResponseWriter, req *http.Request, name string) {
	if !configs.ValidStreamName(name) {
		writeJSONError(w, http.StatusBadRequest, "invalid stream name: 1-64 characters of [A-Za-z0-9._-]")
		return
	}
	if tok := r.opts.ViewToken; tok != "" {
		got := req.URL.Query().Get("token")
		if got == "" {
			writeJSONError(w, http.StatusUnauthorized, "view token required")
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			writeJSONError(w, http.StatusForbidden, "wrong view token")
			return
		}
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

	v := &viewer{h: h, conn: conn, remote: remote, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if refuse := h.addViewer(v); refuse != "" {
		r.removeIfIdle(h)
		r.refuse(conn, refuse)
		return
	}
	r.metrics.viewersJoined.Add(1)
	r.log.Info("viewer joined", "stream", name, "remote", remote)
	start := time.Now()

	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		v.writeLoop()
	}()
	reason := v.readLoop()
	close(v.done)
	conn.Close()
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
	_ = conn.WritePreparedMessage(prepareError(msg))
	_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""))
	conn.Close()
	r.log.Info("viewer refused", "remote", conn.RemoteAddr().String(), "reason", msg)
}

// readLoop reads what the viewer sends (stats) until the connection ends, and
// returns why it ended.
func (v *viewer) readLoop() string {
	deadline := viewerReadSlack * v.h.r.opts.KeepAlive
	_ = v.conn.SetReadDeadline(time.Now().Add(deadline))
	v.conn.SetPongHandler(func(string) error {
		return v.conn.SetReadDeadline(time.Now().Add(deadline))
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
			v.pushControl(prepareError("invalid message: not JSON"), true)
			continue
		}
		if msg.Type == "stats" {
			st := msg.ViewerStats
			v.stats.Store(&st)
		}
		// Unknown message types are ignored so clients can be newer than the server.
	}
}

// writeJSONError writes {"error": msg} with status code.
func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
