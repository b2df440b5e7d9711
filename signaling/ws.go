package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/mseout"
)

const (
	wsPingEvery    = 20 * time.Second
	wsReadTimeout  = 3 * wsPingEvery // no message and no pong this long: the publisher is gone
	wsWriteTimeout = 5 * time.Second
	wsOfferTimeout = 30 * time.Second // a socket must send its offer within this
	wsMaxOutbox    = 256
)

// WSMessage is every message of the WS publish signaling (PROTOCOL.md), both
// directions; clients in Go (the test publisher) use it too.
type WSMessage struct {
	Type      string                   `json:"type"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Count     *int                     `json:"count,omitempty"`
	Message   string                   `json:"message,omitempty"`
}

// wsConn serialises writes: one writer goroutine drains the outbox.
type wsConn struct {
	c       *websocket.Conn
	mu      sync.Mutex
	outbox  [][]byte
	wake    chan struct{}
	closing bool // an error was queued; the writer closes after it
	done    chan struct{}
	quit    chan struct{} // closed when the handler is done with the socket: the writer stops
}

func (c *wsConn) send(m WSMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if len(c.outbox) >= wsMaxOutbox {
		c.outbox = c.outbox[:0]
		m = WSMessage{Type: "error", Message: "signaling socket not reading"}
		b, _ = json.Marshal(m)
	}
	c.outbox = append(c.outbox, b)
	if m.Type == "error" {
		c.closing = true
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *wsConn) writeLoop() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			return
		case <-time.After(wsPingEvery):
			if err := c.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout)); err != nil {
				c.c.Close()
				return
			}
			continue
		}
		c.mu.Lock()
		batch := c.outbox
		c.outbox = nil
		closing := c.closing
		c.mu.Unlock()
		for _, b := range batch {
			_ = c.c.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
			if err := c.c.WriteMessage(websocket.TextMessage, b); err != nil {
				c.c.Close()
				return
			}
		}
		if closing {
			_ = c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""), time.Now().Add(time.Second))
			c.c.Close()
			return
		}
	}
}

// handleWSPublish: GET /ws/publish/{stream}, JSON signaling with trickle ICE
// and viewer counts. Closing the socket ends the publish.
func (s *Server) handleWSPublish(w http.ResponseWriter, r *http.Request) {
	stream, cred, err := s.checkStream(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.opts.Origins.Allowed(r) {
		s.fail(w, errorf(http.StatusForbidden, "origin not allowed: "+truncate(r.Header.Get("Origin"), 100)))
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(s.opts.MaxBodyBytes)
	// A publisher that sends nothing and answers no ping is gone: its
	// socket (and its publish) ends after wsReadTimeout.
	_ = conn.SetReadDeadline(time.Now().Add(wsReadTimeout))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(wsReadTimeout)) })
	c := &wsConn{c: conn, wake: make(chan struct{}, 1), done: make(chan struct{}), quit: make(chan struct{})}
	go c.writeLoop()
	defer func() {
		// An idle writer would otherwise notice the closed socket only at
		// its next ping, keeping itself and this handler up to wsPingEvery
		// (past the gateway's Close too).
		close(c.quit)
		conn.Close()
		<-c.done
	}()

	msgs := make(chan WSMessage)
	go func() { // reader: owned by this handler, ends when conn closes
		defer close(msgs)
		for {
			mt, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(wsReadTimeout))
			var m WSMessage
			if mt != websocket.TextMessage || json.Unmarshal(data, &m) != nil {
				s.countRefusal("ws")
				c.send(WSMessage{Type: "error", Message: "invalid message: expected JSON text"})
				return
			}
			select {
			case msgs <- m:
			case <-c.done:
				return
			}
		}
	}()

	var p *publish
	var viewers <-chan int
	var sessDone, live, pubDone, ended <-chan struct{}
	offerDeadline := time.NewTimer(wsOfferTimeout)
	defer offerDeadline.Stop()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				if p != nil {
					p.requestStop()
					<-p.ended
				}
				c.mu.Lock()
				flushing := c.closing
				c.mu.Unlock()
				if flushing { // let the writer deliver the error before closing
					select {
					case <-c.done:
					case <-time.After(wsWriteTimeout):
					}
				}
				return
			}
			switch m.Type {
			case "offer":
				if p != nil {
					// A second offer may only restart ICE (new credentials);
					// the gateway's new candidates trickle out as before.
					answer, err := p.sess.RestartICEWithOffer(m.SDP)
					if err != nil {
						s.log.Warn("ICE restart refused", "stream", stream, "remote", r.RemoteAddr, "err", err)
						s.countRefusal("ws")
						c.send(WSMessage{Type: "error", Message: err.Error() + "; to change anything else, open a new socket"})
						continue
					}
					c.send(WSMessage{Type: "answer", SDP: answer})
					continue
				}
				// Candidates gathered during Accept wait for the answer: a
				// browser cannot add a candidate before its remote description.
				var (
					candMu   sync.Mutex
					answered bool
					early    []webrtc.ICECandidateInit
				)
				var answer string
				p, answer, err = s.startPublish(r.Context(), r, stream, cred, m.SDP, "ws", func(ci webrtc.ICECandidateInit) {
					candMu.Lock()
					defer candMu.Unlock()
					if !answered {
						early = append(early, ci)
						return
					}
					c.send(WSMessage{Type: "candidate", Candidate: &ci})
				})
				if err != nil {
					s.countRefusal("ws")
					c.send(WSMessage{Type: "error", Message: err.Error()})
					continue
				}
				candMu.Lock()
				c.send(WSMessage{Type: "answer", SDP: answer})
				for i := range early {
					c.send(WSMessage{Type: "candidate", Candidate: &early[i]})
				}
				answered, early = true, nil
				candMu.Unlock()
				sessDone, live, ended = p.sess.Done(), p.live, p.ended
				offerDeadline.Stop()
			case "candidate":
				if p == nil || m.Candidate == nil {
					s.countRefusal("ws")
					c.send(WSMessage{Type: "error", Message: "candidate before offer"})
					continue
				}
				if !p.takeCandidates(1) {
					s.countRefusal("ws")
					c.send(WSMessage{Type: "error", Message: fmt.Sprintf("too many ICE candidates: at most %d per session", maxRemoteCandidates)})
					continue
				}
				if err := p.sess.AddCandidate(*m.Candidate); err != nil {
					s.log.Debug("bad remote candidate", "stream", stream, "err", err)
				}
			default:
				s.countRefusal("ws")
				c.send(WSMessage{Type: "error", Message: "unknown message type " + truncate(m.Type, 40)})
			}
		case <-live: // connected and the stream's source now
			live = nil
			c.send(WSMessage{Type: "viewers", Count: new(int)})
			viewers, pubDone = p.pub.Viewers(), p.pub.Done()
		case n := <-viewers:
			c.send(WSMessage{Type: "viewers", Count: &n})
		case <-sessDone:
			sessDone = nil
			<-p.ended // own is cleaning up; it says why a publish never went live
			msg := reasonSessionEnded
			if p.pub == nil && p.endMsg != "" {
				msg = "publish ended: " + p.endMsg
			}
			c.send(WSMessage{Type: "error", Message: msg})
		case <-pubDone:
			// The publication also ends when the session fails (own closes
			// it): own's reason says which came first.
			<-p.ended
			msg := "publish ended: replaced by a newer publisher"
			switch {
			case p.reason == reasonSessionEnded:
				msg = reasonSessionEnded
				sessDone = nil
			case errors.Is(s.opts.Streams.CheckPublish(stream, false), mseout.ErrClosed):
				msg = "publish ended: the gateway is shutting down"
			}
			c.send(WSMessage{Type: "error", Message: msg})
			pubDone = nil
		case <-ended:
			ended = nil
			if p.pub == nil && p.endMsg != "" { // never went live: say why
				c.send(WSMessage{Type: "error", Message: "publish ended: " + p.endMsg})
			}
		case <-offerDeadline.C:
			s.countRefusal("ws")
			c.send(WSMessage{Type: "error", Message: "no offer received"})
		case <-c.done:
			if p != nil {
				p.requestStop()
				<-p.ended
			}
			return
		}
	}
}
