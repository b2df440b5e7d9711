package mseout

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
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
	// Stalls and StallTime are the player's stall episodes and the seconds
	// spent in them since it started (absent from older players: 0).
	Stalls    int64   `json:"stalls"`
	StallTime float64 `json:"stallTime"`
}

// item is one entry of a viewer's queue: one or more complete WebSocket

// minStatsInterval is the least time between two stats messages of a viewer
// that are taken (the player sends one a second).
const minStatsInterval = 250 * time.Millisecond

// plausible reports whether the numbers are ones a player measures: times
// from 0 to an hour, frame counts from 0 to 10^12, stalls from 0 to 10^9
// lasting at most a year in all.
func (s ViewerStats) plausible() bool {
	return s.Latency >= 0 && s.Latency <= 3600 && s.Buffered >= 0 && s.Buffered <= 3600 &&
		s.DecodedFrames >= 0 && s.DecodedFrames <= 1e12 && s.DroppedFrames >= 0 && s.DroppedFrames <= s.DecodedFrames+1e6 &&
		s.Stalls >= 0 && s.Stalls <= 1e9 && s.StallTime >= 0 && s.StallTime <= 366*24*3600
}

// closeEchoWait bounds the wait for a close echo to be written.
const closeEchoWait = time.Second

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	// Frames are written directly to the connection, never through the
	// write buffer; a pool keeps viewers from each holding one. Reads use the
	// HTTP server's buffer, handed over by the hijack.
	WriteBufferPool: &sync.Pool{},
	// Viewers embed the player on their own sites: ServeViewer has checked
	// the Origin against auth.allowed_origins (any, when none is set) before.
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
	if !r.opts.Origins.Allowed(req) {
		httpapi.WriteError(w, http.StatusForbidden, "origin not allowed: "+truncate(req.Header.Get("Origin"), 100))
		return
	}
	if r.opts.Authorize != nil {
		if err := r.opts.Authorize(req, name); err != nil {
			httpapi.Fail(w, err)
			return
		}
	}
	conn, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return // Upgrade has written the HTTP error
	}
	joined := time.Now()
	conn.SetReadLimit(maxViewerMsg)
	remote := req.RemoteAddr
	if client := httpapi.ClientIP(req); client != remoteIP(remote) {
		remote = client + " via " + remote // a trusted proxy's client
	}
	ip := httpapi.AddressGroup(httpapi.ClientIP(req)) // an IPv6 client counts by its /64
	if refuse := r.attach(name, ip); refuse != "" {
		r.refuse(conn, refuse)
		return
	}
	defer r.detach(ip)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.refuse(conn, ErrClosed.Error())
		return
	}
	h := r.hubLocked(name)
	r.mu.Unlock()

	v := &viewer{h: h, conn: conn, remote: remote, id: r.viewerIDs.Add(1), joined: joined, out: newTransport(conn.NetConn())}
	r.wg.Add(1) // done when the viewer and its writer are gone
	if refuse := h.addViewer(v); refuse != "" {
		r.wg.Done()
		r.removeIfIdle(h)
		r.refuse(conn, refuse)
		return
	}
	r.metrics.viewersJoined.Add(1)
	r.event("viewer.joined", name, nil)
	r.log.Info("viewer joined", "stream", name, "viewer", v.id, "remote", remote)
	start := time.Now()

	v.mu.Lock()
	v.pingTimer = time.AfterFunc(r.opts.KeepAlive, v.keepAlive)
	v.mu.Unlock()
	reason, readLeave := v.serve()
	v.stop()
	conn.Close()
	v.wwg.Wait()
	r.wg.Done()
	h.removeViewer(v)
	v.mu.Lock()
	if v.closeReason != "" {
		reason = v.closeReason
	}
	leave := v.leave
	v.mu.Unlock()
	if leave == leaveUnknown {
		leave = readLeave
	}
	r.metrics.disconnects[leave].Add(1)
	r.event("viewer.left", name, nil)
	r.log.Info("viewer left", "stream", name, "viewer", v.id, "remote", remote, "watched", time.Since(start).Round(time.Millisecond), "reason", reason)
}

// attach counts a viewer against the global and per-address limits.
func (r *Registry) attach(name, ip string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed.Error()
	}
	if r.viewers >= r.limits().MaxViewers {
		return "too many viewers"
	}
	if max := r.limits().MaxViewersPerIP; max > 0 && r.perIP[ip] >= max {
		r.metrics.viewersRefusedPerIP.Add(1)
		return "too many viewers from your address"
	}
	if _, ok := r.hubs[name]; !ok && len(r.hubs) >= 2*r.limits().MaxStreams {
		return "too many streams"
	}
	r.viewers++
	if r.perIP == nil {
		r.perIP = map[string]int{}
	}
	r.perIP[ip]++
	return ""
}

func (r *Registry) detach(ip string) {
	r.mu.Lock()
	r.viewers--
	if r.perIP[ip]--; r.perIP[ip] <= 0 {
		delete(r.perIP, ip)
	}
	r.mu.Unlock()
}

// remoteIP is the host of a host:port address.
func remoteIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// refuse sends an error message and closes a viewer that was not attached.
func (r *Registry) refuse(conn *websocket.Conn, msg string) {
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	nc := conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = nc.Write(append(errorFrame(msg), frameClose...))
	conn.Close()
	if ok, held := r.refuseLog.Allow(); ok { // a client can cause thousands a second
		r.log.Info("viewer refused", "remote", conn.RemoteAddr().String(), "reason", msg, "refusals_not_logged", held)
	}
}

// serve runs the read loop; a panic in it is contained, and the viewer is
// then cleaned up like any other that left.
func (v *viewer) serve() (reason string, leave leaveReason) {
	defer contain.Recover(v.h.r.log, "viewer reader", func() {
		reason, leave = "internal error (panic contained)", leavePanic
		v.abandon()
	})
	return v.readLoop()
}

// readLoop reads what the viewer sends (stats) until the connection ends, and
// returns why it ended.
func (v *viewer) readLoop() (string, leaveReason) {
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
		// Echo the close (RFC 6455 5.5.1) through the writer, after what it
		// is writing (never in the middle of a frame); the writer closes the
		// connection after it. Wait for that, briefly: the read loop closes
		// the connection once this returns.
		var payload []byte
		if code != websocket.CloseNoStatusReceived {
			payload = websocket.FormatCloseMessage(code, "")
		}
		v.mu.Lock()
		if v.stopped || v.closing {
			v.mu.Unlock()
			return nil
		}
		v.echo = newFrame(opClose, payload)
		echoed := make(chan struct{})
		v.echoed = echoed
		v.notify()
		v.mu.Unlock()
		select {
		case <-echoed:
		case <-time.After(closeEchoWait):
		}
		return nil
	})
	var lastStats time.Time
	for {
		mt, data, err := v.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return "closed by viewer", leaveViewerClosed
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return err.Error(), leaveReadTimeout
			}
			return err.Error(), leaveConnLost
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
			v.mu.Lock()
			v.setLeave(leaveProtocol)
			v.mu.Unlock()
			v.pushControl(errorFrame("invalid message: not JSON"), true)
			continue
		}
		if msg.Type == "stats" && (time.Since(lastStats) < minStatsInterval || !msg.ViewerStats.plausible()) {
			v.h.r.metrics.statsIgnored.Add(1)
		} else if msg.Type == "stats" {
			// A report faster than the player sends them, or with numbers no
			// player measures, is ignored: it would cost CPU, or poison the
			// averages of /api/streams (two latencies of 1e308 sum to +Inf).
			lastStats = time.Now()
			st := msg.ViewerStats
			v.h.r.metrics.observeStats(&st, v.stats.Swap(&st))
		}
		// Unknown message types are ignored so clients can be newer than the server.
	}
}
