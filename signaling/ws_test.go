package signaling

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/mseout"
)

// wsClient is a publisher on the WebSocket signaling.
type wsClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialWS(t *testing.T, ts *testServer, path string) *wsClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.url, "http")+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", path, err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &wsClient{t: t, ws: ws}
}

func (c *wsClient) send(m WSMessage) {
	c.t.Helper()
	if err := c.ws.WriteJSON(m); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one message and checks its type.
func (c *wsClient) next(typ string) WSMessage {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m WSMessage
	if err := c.ws.ReadJSON(&m); err != nil {
		c.t.Fatalf("waiting for %q: %v", typ, err)
	}
	if m.Type != typ {
		c.t.Fatalf("got %+v, want type %q", m, typ)
	}
	return m
}

// closedAfterError reads an error message holding has, then the close.
func (c *wsClient) closedAfterError(has string) {
	c.t.Helper()
	if m := c.next("error"); !strings.Contains(m.Message, has) {
		c.t.Fatalf("error %q, want it to hold %q", m.Message, has)
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ws.ReadMessage(); err == nil {
		c.t.Fatal("the socket stayed open after an error")
	} else if _, ok := err.(*websocket.CloseError); !ok && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		c.t.Fatalf("after the error: %v, want a close", err)
	}
}

// publish sends an offer and reads the start of a publish: the answer, the
// candidate gathered during Accept (after the answer), the viewer count.
func (c *wsClient) publish() {
	c.t.Helper()
	c.send(WSMessage{Type: "offer", SDP: offerSDP(c.t)})
	c.next("answer")
	c.next("candidate")
	c.next("viewers")
}

func TestWSPublishMessages(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	c := dialWS(t, ts, "/ws/publish/s")
	c.send(WSMessage{Type: "offer", SDP: offerSDP(t)})
	// The answer goes first, though a candidate was gathered before it.
	if m := c.next("answer"); m.SDP != "v=0 fake answer" {
		t.Fatalf("answer %q", m.SDP)
	}
	if m := c.next("candidate"); m.Candidate == nil || !strings.HasPrefix(m.Candidate.Candidate, "candidate:") {
		t.Fatalf("candidate %+v", m)
	}
	if m := c.next("viewers"); m.Count == nil || *m.Count != 0 {
		t.Fatalf("viewers %+v", m)
	}
	sess := ts.engine.session(t, 0)
	// The publisher's candidates reach the session.
	c.sendRaw(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5001 typ host","sdpMid":"0"}}`)
	// A viewer joins: the publisher is told.
	v, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.url, "http")+"/ws/watch/s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.next("viewers"); *m.Count != 1 {
		t.Fatalf("viewers %d, want 1", *m.Count)
	}
	v.Close()
	if m := c.next("viewers"); *m.Count != 0 {
		t.Fatalf("viewers %d after the viewer left, want 0", *m.Count)
	}
	sess.mu.Lock()
	cands := len(sess.candidates)
	sess.mu.Unlock()
	if cands != 1 {
		t.Fatalf("%d candidates reached the session", cands)
	}
	// A second offer with new ICE credentials restarts ICE.
	c.send(WSMessage{Type: "offer", SDP: "v=0\r\na=ice-ufrag:new\r\n"})
	if m := c.next("answer"); m.SDP != "v=0 restarted answer" {
		t.Fatalf("restart answer %q", m.SDP)
	}
	// Closing the socket ends the publish.
	c.ws.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Publishing() != 0 || sess.closedCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the publish outlived its signaling socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWSPublishErrors(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: staticAuth("tok")}, nil)
	for _, c := range []struct {
		name, send, has string
	}{
		{"not JSON", "hello", "expected JSON"},
		{"candidate before the offer", `{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 1 typ host"}}`, "candidate before offer"},
		{"unknown type", `{"type":"` + strings.Repeat("x", 100) + `"}`, "unknown message type"},
		{"malformed offer", `{"type":"offer","sdp":"nonsense"}`, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ws := dialWS(t, ts, "/ws/publish/s?token=tok")
			ws.sendRaw(c.send)
			ws.closedAfterError(c.has)
		})
	}
	t.Run("a second offer that changes more than ICE", func(t *testing.T) {
		ws := dialWS(t, ts, "/ws/publish/s2?token=tok")
		ws.publish()
		ws.send(WSMessage{Type: "offer", SDP: offerSDP(t)})
		ws.closedAfterError("open a new socket")
	})
	t.Run("the connection fails", func(t *testing.T) {
		ws := dialWS(t, ts, "/ws/publish/s3?token=tok")
		ws.publish()
		ts.engine.session(t, len(ts.engine.sessions)-1).fail()
		ws.closedAfterError("connection closed or failed")
	})
	t.Run("taken over", func(t *testing.T) {
		ws := dialWS(t, ts, "/ws/publish/s4?token=tok")
		ws.publish()
		if _, err := ts.reg.Publish("s4", mseout.PublisherInfo{Protocol: "test", TakeOver: true}); err != nil {
			t.Fatal(err)
		}
		ws.closedAfterError("replaced by a newer publisher")
	})
	t.Run("auth before the upgrade", func(t *testing.T) {
		for _, c := range []struct {
			path   string
			status int
		}{{"/ws/publish/s", 401}, {"/ws/publish/s?token=no", 403}, {"/ws/publish/bad%20name?token=tok", 400}} {
			status, h, body := ts.do(t, "GET", c.path, "", "", map[string]string{
				"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
			var e map[string]string
			if status != c.status || json.Unmarshal([]byte(body), &e) != nil || e["error"] == "" || h.Get("Upgrade") != "" {
				t.Fatalf("%s: %d %q", c.path, status, body)
			}
		}
		if status, _, _ := ts.do(t, "GET", "/ws/publish/s?token=tok", "", "", nil); status != http.StatusBadRequest {
			t.Fatalf("a plain GET: %d, want 400", status)
		}
	})
}
