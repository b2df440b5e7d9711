package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/apitest"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// vp8OnlyOffer makes a real offer that proposes nothing but VP8 video.
func vp8OnlyOffer(t *testing.T) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

type apiResult struct {
	status int
	ctype  string
	errMsg string
}

func do(t *testing.T, method, url, ctype, body string, hdr map[string]string) apiResult {
	t.Helper()
	r := apitest.Do(t, testHTTP, method, url, ctype, body, hdr)
	return apiResult{status: r.Status, ctype: r.Header.Get("Content-Type"), errMsg: r.Error}
}

// TestBadInput sends what clients get wrong while a stream is live and checks
// each gets its documented error, and the live stream keeps flowing.
func TestBadInput(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) {
		c.Limits.MaxBodyBytes = 32 << 10
		c.Streams["strict"] = func() configs.Stream {
			s := c.StreamDefaults
			s.WaitForPublisher = false
			s.AllowTakeover = false
			return s
		}()
	})
	video, audio := testMedia(t)
	publish(t, gw, "live", video, audio)
	v := watch(t, gw, "live")
	v.expectInit(10 * time.Second)

	offer := vp8OnlyOffer(t)
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		errHas                          string
	}{
		{"malformed SDP", "POST", "/whip/x", "application/sdp", "v=0\r\nthis is not sdp\r\n", 400, "malformed SDP"},
		{"empty body", "POST", "/whip/x", "application/sdp", "", 400, "empty"},
		{"wrong content type", "POST", "/whip/x", "text/plain", "v=0", 415, "application/sdp"},
		{"no content type", "POST", "/whip/x", "", "v=0", 415, "application/sdp"},
		{"oversized body", "POST", "/whip/x", "application/sdp", strings.Repeat("a", 40<<10), 413, "larger than"},
		{"invalid stream name", "POST", "/whip/bad%20name", "application/sdp", "v=0", 400, "invalid stream name"},
		{"too long stream name", "POST", "/whip/" + strings.Repeat("x", 65), "application/sdp", "v=0", 400, "invalid stream name"},
		{"VP8 only", "POST", "/whip/x", "application/sdp", offer, 406, "VP8"},
		{"unknown session PATCH", "PATCH", "/whip/x/nope", "application/trickle-ice-sdpfrag", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", 404, "no such WHIP session"},
		{"unknown session DELETE", "DELETE", "/whip/x/nope", "", "", 404, "no such WHIP session"},
		{"method not allowed", "PUT", "/whip/x", "application/sdp", "v=0", 405, "method not allowed"},
		{"unknown API", "GET", "/api/nothing", "", "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, gw.base+tc.path, tc.ctype, tc.body, nil)
			if r.status != tc.status || r.ctype != "application/json" || !strings.Contains(r.errMsg, tc.errHas) {
				t.Fatalf("got %d %q %q, want %d with JSON error containing %q", r.status, r.ctype, r.errMsg, tc.status, tc.errHas)
			}
		})
	}
	t.Run("406 names what is accepted", func(t *testing.T) {
		r := do(t, "POST", gw.base+"/whip/x", "application/sdp", offer, nil)
		if !strings.Contains(r.errMsg, "H264") || !strings.Contains(r.errMsg, "opus") {
			t.Fatalf("406 body %q should name the accepted codecs", r.errMsg)
		}
	})
	t.Run("OPTIONS", func(t *testing.T) {
		req, _ := http.NewRequest("OPTIONS", gw.base+"/whip/x", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Accept-Post") != "application/sdp" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("WS publish non-JSON", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(gw.ws+"/ws/publish/y", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte("hello, not json"))
		expectWSErrorThenClose(t, ws, "JSON")
	})
	t.Run("WS publish VP8 only", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(gw.ws+"/ws/publish/y", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		b, _ := json.Marshal(map[string]string{"type": "offer", "sdp": offer})
		_ = ws.WriteMessage(websocket.TextMessage, b)
		expectWSErrorThenClose(t, ws, "VP8")
	})
	t.Run("viewer of unknown stream with waiting disabled", func(t *testing.T) {
		c, _, err := viewerclient.Dial(context.Background(), gw.ws+"/ws/watch/strict")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m, err := c.Next(5 * time.Second)
		if err != nil || m.Control == nil || m.Control.Type != "error" || !strings.Contains(m.Control.Message, "not found") {
			t.Fatalf("got %+v %v, want an error message", m.Control, err)
		}
		if _, err := c.Next(5 * time.Second); err == nil || errors.Is(err, viewerclient.ErrTimeout) {
			t.Fatalf("socket not closed after the error: %v", err)
		}
	})
	t.Run("viewer with invalid stream name", func(t *testing.T) {
		r := do(t, "GET", gw.base+"/ws/watch/a%20b", "", "", nil)
		if r.status != 400 || r.errMsg == "" {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("second publisher without takeover gets 409", func(t *testing.T) {
		publish(t, gw, "strict", video[:30], nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := whipclient.Publish(ctx, whipclient.Options{URL: gw.base + "/whip/strict", Video: video, LoopbackOnly: true})
		var he *whipclient.HTTPError
		if !errors.As(err, &he) || he.Status != 409 {
			t.Fatalf("second publish: %v, want 409", err)
		}
	})

	// The live stream kept flowing through all of it.
	segs, stop := v.collect(1 * time.Second)
	if stop != nil || len(segs) < 15 {
		t.Fatalf("live viewer after bad input: %d segments, control %+v", len(segs), stop)
	}
}

func expectWSErrorThenClose(t *testing.T, ws *websocket.Conn, has string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("no error message: %v", err)
	}
	var m struct{ Type, Message string }
	if json.Unmarshal(data, &m) != nil || m.Type != "error" || !strings.Contains(m.Message, has) {
		t.Fatalf("got %s, want an error containing %q", data, has)
	}
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("socket not closed after the error")
	}
}

// TestAuth checks publish and view tokens.
func TestAuth(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) {
		c.Auth.PublishToken = "pub-secret"
		c.Auth.ViewToken = "view-secret"
	})
	for _, tc := range []struct {
		hdr    map[string]string
		status int
	}{
		{nil, 401},
		{map[string]string{"Authorization": "Bearer wrong"}, 403},
		{map[string]string{"Authorization": "Basic cHViLXNlY3JldA=="}, 401},
	} {
		r := do(t, "POST", gw.base+"/whip/a", "application/sdp", "v=0", tc.hdr)
		if r.status != tc.status || r.errMsg == "" {
			t.Errorf("%v: got %+v, want %d", tc.hdr, r, tc.status)
		}
	}
	// The right token gets past auth to SDP validation.
	if r := do(t, "POST", gw.base+"/whip/a", "application/sdp", "v=0", map[string]string{"Authorization": "Bearer pub-secret"}); r.status != 400 {
		t.Errorf("right token: got %+v, want 400 for the bad SDP", r)
	}
	if r := do(t, "GET", gw.base+"/ws/watch/a", "", "", nil); r.status != 401 {
		t.Errorf("viewer without token: %+v", r)
	}
	if r := do(t, "GET", gw.base+"/ws/watch/a?token=nope", "", "", nil); r.status != 403 {
		t.Errorf("viewer with wrong token: %+v", r)
	}
	// A Pion publisher refused on the WebSocket signaling gets an error back
	// (the client used to hang in its cleanup here).
	video, audio := testMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		p, err := whipclient.Publish(ctx, whipclient.Options{WebSocketURL: gw.ws + "/ws/publish/a", Video: video, Audio: audio, LoopbackOnly: true})
		if p != nil {
			p.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("WS publish without the token succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a refused WS publish did not return")
	}
	c, _, err := viewerclient.Dial(context.Background(), gw.ws+"/ws/watch/a?token=view-secret")
	if err != nil {
		t.Fatalf("viewer with token: %v", err)
	}
	defer c.Close()
	if m, err := c.Next(5 * time.Second); err != nil || m.Control == nil || m.Control.Type != "waiting" {
		t.Fatalf("viewer with token: %+v %v", m.Control, err)
	}
}

// TestPlainGETOnSocketsIsJSONError: a request to a WebSocket endpoint without
// the upgrade gets a JSON error like every other endpoint.
func TestPlainGETOnSocketsIsJSONError(t *testing.T) {
	gw := startGateway(t, nil)
	for _, path := range []string{"/ws/publish/x", "/ws/watch/x"} {
		r := do(t, "GET", gw.base+path, "", "", nil)
		if r.status != http.StatusBadRequest || r.ctype != "application/json" || !strings.Contains(r.errMsg, "websocket") {
			t.Errorf("GET %s: %+v", path, r)
		}
	}
}

// A client that sends a request slowly (a body that never ends, headers that
// never end) is cut off after the request timeout; headers over the limit
// get 431; the viewer and publisher sockets, which set their own read
// deadlines once upgraded, are not cut by it.
func TestSlowAndHugeRequests(t *testing.T) {
	gw := startGatewayConfig(t, loopbackConfig(), gateway.Options{LoopbackOnly: true, RequestTimeout: time.Second})
	addr := strings.TrimPrefix(gw.base, "http://")
	for _, c := range []struct{ name, send string }{
		{"a body that stops", "POST /whip/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0\r\n"},
		{"headers that stop", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(c.send)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.ReadAll(conn) // until the server closes
		conn.Close()
		if err != nil {
			t.Fatalf("%s: the server did not close the connection: %v", c.name, err)
		}
		t.Logf("%s: closed after %v", c.name, time.Since(start).Round(time.Millisecond))
	}
	big := do(t, "GET", gw.base+"/healthz", "", "", map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if big.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d", big.status)
	}
	// A viewer idle longer than the request timeout keeps its socket.
	v := watch(t, gw, "idle")
	v.expectControl("waiting", 5*time.Second)
	time.Sleep(2 * time.Second)
	video, audio := testMedia(t)
	publish(t, gw, "idle", video, audio)
	v.expectInit(10 * time.Second)
}
