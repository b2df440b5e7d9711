package signaling

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/internal/testkit/promtext"
)

// openAuth is an open gateway's answer: anyone may publish, without a
// credential.
func openAuth(*http.Request, string) (bool, error) { return false, nil }

// A negotiated publish holds no stream until it connects: it cannot evict
// or block a live publisher, and half-open sessions are capped apart.
func TestPendingPublishes(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: staticAuth("tok"), MaxPending: 3, MaxPendingPerIP: 2}, nil)
	auth := map[string]string{"Authorization": "Bearer tok"}
	publishWHIP(t, ts, "live", auth)
	live := ts.engine.session(t, 0)

	ts.engine.mu.Lock()
	ts.engine.holdConnect = true
	ts.engine.mu.Unlock()
	publishWHIP(t, ts, "live", auth) // may take over, but only once connected
	pending := ts.engine.session(t, 1)
	publishWHIP(t, ts, "other", auth)
	if got := ts.srv.Pending(); got != 2 {
		t.Fatalf("Pending() = %d, want 2", got)
	}
	if got := ts.srv.Publishing(); got != 1 {
		t.Fatalf("Publishing() = %d, want 1 (pending ones are not publishing)", got)
	}
	if !live.isStarted() || pending.isStarted() {
		t.Fatal("the pending session replaced the live one before it connected")
	}
	if l, _ := ts.reg.State("other"); l {
		t.Fatal("a pending publish made its stream live")
	}
	status, h, body := ts.do(t, "POST", "/whip/third", "application/sdp", offerSDP(t), auth)
	jsonError(t, "third pending publish from one address", status, h, body, 429, "waiting to connect")
	if m := promtext.Text(t, ts.srv.Collector(true)); !strings.Contains(m, `gateway_publish_refused_total{status="429"} 1`) {
		t.Errorf("the refusal is not counted:\n%s", m)
	} else if !strings.Contains(m, `gateway_webrtc_sessions{state="connecting"} 2`) || !strings.Contains(m, `gateway_webrtc_sessions{state="connected"} 1`) {
		t.Errorf("sessions by state:\n%s", m)
	}

	// Once connected, the pending one takes over (it has a credential).
	pending.connect()
	ts.waitStarted(t, pending)
	select {
	case <-live.Done():
	case <-waitFor(t):
		t.Fatal("the replaced session was not closed")
	}
	if got := ts.srv.Pending(); got != 1 {
		t.Fatalf("Pending() = %d after one connected, want 1", got)
	}
	// A pending session that fails frees its slot.
	ts.engine.session(t, 2).fail()
	waitUntil(t, "the failed pending session's slot is freed", func() bool { return ts.srv.Pending() == 0 })
}

// On an open gateway (no credentials configured) anyone may publish a free
// stream, but nobody may take over a live one: takeover needs the publish
// right proved by a credential.
func TestTakeoverNeedsACredential(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: openAuth}, nil)
	publishWHIP(t, ts, "s", nil)
	status, h, body := ts.do(t, "POST", "/whip/s", "application/sdp", offerSDP(t), nil)
	jsonError(t, "anonymous takeover", status, h, body, 409, "already has a publisher")

	// Two anonymous publishers racing for a free stream: the second to
	// connect is refused at connect and its session closed.
	ts.engine.mu.Lock()
	ts.engine.holdConnect = true
	ts.engine.mu.Unlock()
	publishWHIP(t, ts, "race", nil)
	publishWHIP(t, ts, "race", nil)
	first, second := ts.engine.session(t, 1), ts.engine.session(t, 2)
	first.connect()
	ts.waitStarted(t, first)
	second.connect()
	waitUntil(t, "the second publisher is closed", func() bool { return second.closedCount() > 0 })
	if second.isStarted() {
		t.Fatal("the second anonymous publisher went live")
	}
	select {
	case <-first.Done():
		t.Fatal("the first publisher was replaced")
	default:
	}

	// Over WS a publisher refused at connect is told why.
	publishWHIP(t, ts, "race2", nil)
	ws := dialWS(t, ts, "/ws/publish/race2")
	ws.send(WSMessage{Type: "offer", SDP: offerSDP(t)})
	ws.next("answer")
	ws.next("candidate")
	whipFirst := ts.engine.session(t, 3)
	whipFirst.connect()
	ts.waitStarted(t, whipFirst)
	ts.engine.session(t, 4).connect()
	ws.closedAfterError("already has a publisher")
}

// TURN credentials go only to requests that may publish.
func TestTURNCredentialsNeedThePublishRight(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: staticAuth("tok")}, nil)
	ts.engine.ice = []webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.org"}},
		{URLs: []string{"turn:turn.example.org"}, Username: "u", Credential: "secret"},
	}
	_, h, _ := ts.do(t, "OPTIONS", "/whip/s", "", "", nil)
	if links := strings.Join(h.Values("Link"), "\n"); strings.Contains(links, "secret") || !strings.Contains(links, "stun:") {
		t.Fatalf("OPTIONS without a token: Link %q, want the STUN server and no credentials", links)
	}
	_, h, _ = ts.do(t, "OPTIONS", "/whip/s", "", "", map[string]string{"Authorization": "Bearer nope"})
	if strings.Contains(strings.Join(h.Values("Link"), "\n"), "secret") {
		t.Fatal("OPTIONS with a wrong token got TURN credentials")
	}
	_, h, _ = ts.do(t, "OPTIONS", "/whip/s", "", "", map[string]string{"Authorization": "Bearer tok"})
	if !strings.Contains(strings.Join(h.Values("Link"), "\n"), `credential="secret"`) {
		t.Fatal("OPTIONS with the publish token: no TURN credentials")
	}
	status, h, _ := ts.do(t, "POST", "/whip/s", "application/sdp", offerSDP(t), map[string]string{"Authorization": "Bearer tok"})
	if status != http.StatusCreated || !strings.Contains(strings.Join(h.Values("Link"), "\n"), `credential="secret"`) {
		t.Fatalf("POST %d: Link %q, want TURN credentials", status, h.Values("Link"))
	}
}

// With allowed origins, a WebSocket from another origin is refused before
// the upgrade, and CORS answers only the listed origins.
func TestOrigins(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: openAuth, Origins: httpapi.NewOrigins([]string{"https://app.example"})}, nil)
	for _, c := range []struct {
		origin string
		status int
	}{{"http://evil.example", 403}, {"https://app.example.evil", 403}, {"https://app.example", 101}, {"", 101}} {
		hdr := http.Header{}
		if c.origin != "" {
			hdr.Set("Origin", c.origin)
		}
		ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.url, "http")+"/ws/publish/o", hdr)
		if ws != nil {
			ws.Close()
		}
		if resp == nil || resp.StatusCode != c.status {
			t.Fatalf("Origin %q: %v %v, want %d", c.origin, resp, err, c.status)
		}
		if c.status == 403 {
			body, _ := io.ReadAll(resp.Body)
			jsonError(t, "origin "+c.origin, resp.StatusCode, resp.Header, string(body), 403, "origin not allowed")
		}
	}
	_, h, _ := ts.do(t, "OPTIONS", "/whip/s", "", "", map[string]string{"Origin": "https://app.example"})
	if got := h.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("CORS for a listed origin: %q", got)
	}
	_, h, _ = ts.do(t, "OPTIONS", "/whip/s", "", "", map[string]string{"Origin": "http://evil.example"})
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("CORS for another origin: %q, want none", got)
	}
}

// A WS publisher is told why its publish ended when the gateway stops.
func TestWSPublishToldOfShutdown(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: openAuth}, nil)
	ws := dialWS(t, ts, "/ws/publish/s")
	ws.publish()
	ts.reg.Close()
	ws.closedAfterError("the gateway is shutting down")
}
