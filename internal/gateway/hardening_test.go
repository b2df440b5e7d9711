package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/apitest"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// hardGroup is one gateway (one config) and the hostile inputs sent to it.
type hardGroup struct {
	name string
	edit func(*configs.Config)
	run  func(t *testing.T, gw *testGateway)
}

// TestHardeningTable sends every breach with a documented answer to a real
// gateway on loopback, one gateway per group (their limits would interfere),
// and checks the answer: status and JSON error for HTTP, the error message
// and the close for WebSockets. After each group every client is closed, and
// the process's goroutines and open file descriptors (the gateway runs in
// this process) must come back to what they were once the group's gateway
// had started: nothing a hostile client did may stay behind.
func TestHardeningTable(t *testing.T) {
	const (
		pubToken   = "hardening-publish-token"
		adminToken = "hardening-admin-token"
	)
	groups := []hardGroup{
		{"connections per address", func(c *configs.Config) { c.Limits.MaxConnsPerIP = 20 }, hardConnsPerIP},
		{"request rate per address", func(c *configs.Config) {
			c.Limits.RequestsPerSecondPerIP = 2
			c.Limits.RequestBurstPerIP = 5
		}, hardRequestRate},
		{"half-open WHIP sessions", func(c *configs.Config) {
			c.Limits.MaxPendingPublishesPerIP = 2
			c.Limits.MaxStreams = 1
		}, hardPendingPublishes},
		{"takeover on an open gateway", nil, hardTakeoverOpen},
		{"takeover with the publish token", func(c *configs.Config) { c.Auth.PublishToken = pubToken }, hardTakeoverToken},
		{"ICE candidates", nil, hardCandidates},
		{"allowed origins", func(c *configs.Config) { c.Auth.AllowedOrigins = []string{"https://app.example"} }, hardOrigins},
		{"viewer stats", nil, hardViewerStats},
		{"viewers per address", func(c *configs.Config) { c.Limits.MaxViewersPerIP = 5 }, hardViewersPerIP},
		{"trusted proxy", func(c *configs.Config) {
			c.TrustedProxies = []string{"127.0.0.1/32"}
			c.Limits.MaxViewersPerIP = 2
		}, hardTrustedProxy},
		{"untrusted X-Forwarded-For", func(c *configs.Config) { c.Limits.MaxViewersPerIP = 2 }, hardUntrustedXFF},
		{"headers on every answer", nil, hardHeaders},
		{"admin with the publish token", func(c *configs.Config) { c.Auth.PublishToken = pubToken }, func(t *testing.T, gw *testGateway) {
			hardAdmin(t, gw, "", pubToken)
		}},
		{"admin with an admin token", func(c *configs.Config) {
			c.Auth.PublishToken = pubToken
			c.Auth.AdminToken = adminToken
		}, func(t *testing.T, gw *testGateway) { hardAdmin(t, gw, pubToken, adminToken) }},
		{"TURN credentials", func(c *configs.Config) {
			c.Auth.PublishToken = pubToken
			c.WebRTC.ICEServers = []configs.ICEServer{{URLs: []string{"turn:turn.example.org:3478"}, Username: "u", Credential: "c"}}
		}, hardTURN},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			gw := startGateway(t, g.edit)
			base := hardBaseline(t, gw)
			// The clients of a group are closed by the cleanups of this
			// subtest, before the gateway is looked at.
			if !t.Run("breaches", func(t *testing.T) { g.run(t, gw) }) {
				return
			}
			hardNoLeak(t, base)
		})
	}
}

// hardResources is what the process holds: goroutines and open descriptors.
type hardResources struct{ goroutines, fds int }

func hardMeasure(t *testing.T) hardResources {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return hardResources{goroutines: runtime.NumGoroutine(), fds: len(ents)}
}

// hardCloseIdle closes the idle keep-alive connections of the clients the
// tests use (their goroutines and descriptors, and the gateway's for them).
func hardCloseIdle() {
	testHTTP.CloseIdleConnections()
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// hardBaseline waits until the gateway answers (its listener, UDP sockets
// and goroutines are up), then measures the process.
func hardBaseline(t *testing.T, gw *testGateway) hardResources {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(gw.base + "/healthz")
	if err != nil {
		t.Fatalf("gateway not answering: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	hardCloseIdle()
	time.Sleep(200 * time.Millisecond) // the connection's goroutines end
	b := hardMeasure(t)
	t.Logf("baseline: %d goroutines, %d fds", b.goroutines, b.fds)
	return b
}

// Slack over the baseline, for a goroutine or descriptor of the test binary
// that comes and goes (a timer firing). Once settled, every group comes back
// to its baseline exactly; the wait (15 s) is shorter than any timer of the
// gateway (keep-alive pings every 20 s), so what only a ping would notice
// is caught.
const (
	hardGoroutineSlack = 1
	hardFDSlack        = 1
)

// hardNoLeak waits (up to 15 s) for the goroutines and descriptors to come
// back to the baseline, and dumps the goroutines when they do not.
func hardNoLeak(t *testing.T, base hardResources) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		hardCloseIdle()
		now := hardMeasure(t)
		if now.goroutines <= base.goroutines+hardGoroutineSlack && now.fds <= base.fds+hardFDSlack {
			t.Logf("after the group: %d goroutines, %d fds (baseline %d, %d)", now.goroutines, now.fds, base.goroutines, base.fds)
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			fds := ""
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				for _, e := range ents {
					l, _ := os.Readlink("/proc/self/fd/" + e.Name())
					fds += e.Name() + " -> " + l + "\n"
				}
			}
			t.Fatalf("after the group: %d goroutines, %d fds; baseline %d, %d (slack %d, %d)\ngoroutines:\n%s\nfds:\n%s",
				now.goroutines, now.fds, base.goroutines, base.fds, hardGoroutineSlack, hardFDSlack, b.String(), fds)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hardWaitFor polls cond for up to 15 s.
func hardWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hardMetric reads one series of /metrics (with token, when set). A 429
// (the request-rate group) is waited out as its Retry-After says.
func hardMetric(t *testing.T, gw *testGateway, token, series string) float64 {
	t.Helper()
	hdr := map[string]string{}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", hdr)
		if r.Status == http.StatusTooManyRequests && time.Now().Before(deadline) {
			secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(secs, 1)) * time.Second)
			continue
		}
		if r.Status != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", r.Status, r.Body)
		}
		for _, line := range strings.Split(r.Body, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatalf("/metrics: %q: %v", line, err)
				}
				return f
			}
		}
		t.Fatalf("/metrics has no %s:\n%s", series, r.Body)
	}
}

// hardJSONError checks an HTTP answer is status with a JSON error holding has.
func hardJSONError(t *testing.T, what string, r apitest.Result, status int, has string) {
	t.Helper()
	if r.Status != status || r.Header.Get("Content-Type") != "application/json" || r.Error == "" || !strings.Contains(r.Error, has) {
		t.Fatalf("%s: %d %q %q, want %d with a JSON error holding %q", what, r.Status, r.Header.Get("Content-Type"), r.Body, status, has)
	}
}

// hardOffer is a real offer of a Pion PeerConnection sending H.264 and Opus
// (sendonly transceivers), ICE on loopback. With gather, the local
// description is set and gathering waited for: the offer holds its
// candidates. The PeerConnection never gets an answer, so it never
// connects; it is closed when the test ends.
func hardOffer(t *testing.T, gather bool) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []struct {
		c    webrtc.RTPCodecParameters
		kind webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
	} {
		if err := me.RegisterCodec(c.c, c.kind); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !gather {
		return offer.SDP
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(20 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// hardCandidateLine is a host candidate on a TEST-NET-1 address (RFC 5737):
// nothing is ever sent there (a loopback-only gateway drops it, and no
// test answers from it).
func hardCandidateLine(i int) string {
	return fmt.Sprintf("candidate:%d 1 udp 2130706431 192.0.2.%d %d typ host", i, 1+i%250, 10000+i)
}

// hardDial opens a WebSocket to path with extra request headers. The socket
// (when the upgrade succeeded) is closed when the test ends.
func hardDial(t *testing.T, gw *testGateway, path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, resp, err := d.DialContext(ctx, gw.ws+path, hdr)
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// hardNext reads the next text message (binary ones are skipped) within
// timeout and returns its type and message. A timeout breaks the socket:
// only wait where a message must come.
func hardNext(ws *websocket.Conn, timeout time.Duration) (typ, msg string, err error) {
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	for {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			return "", "", err
		}
		if mt != websocket.TextMessage {
			continue
		}
		var m struct{ Type, Message string }
		if err := json.Unmarshal(data, &m); err != nil {
			return "", "", fmt.Errorf("text message is not JSON: %q", data)
		}
		return m.Type, m.Message, nil
	}
}

// hardClosedAfterError reads text messages until an error, which must hold
// has, then the socket must be closed by the gateway (not time out).
func hardClosedAfterError(t *testing.T, what string, ws *websocket.Conn, has string) {
	t.Helper()
	for {
		typ, msg, err := hardNext(ws, 15*time.Second)
		if err != nil {
			t.Fatalf("%s: waiting for an error message: %v", what, err)
		}
		if typ != "error" {
			continue // answer, candidates
		}
		if !strings.Contains(msg, has) {
			t.Fatalf("%s: error %q, want it to hold %q", what, msg, has)
		}
		break
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		mt, _, err := ws.ReadMessage()
		if err == nil {
			if mt == websocket.TextMessage {
				t.Fatalf("%s: a message after the error", what)
			}
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatalf("%s: the socket stayed open after the error", what)
		}
		return
	}
}

// hardViewer opens a viewer socket of stream with an X-Forwarded-For (when
// xff is set) and returns it with its first message's type and text.
func hardViewer(t *testing.T, gw *testGateway, stream, xff string) (ws *websocket.Conn, typ, msg string) {
	t.Helper()
	hdr := http.Header{}
	if xff != "" {
		hdr.Set("X-Forwarded-For", xff)
	}
	ws, resp, err := hardDial(t, gw, "/ws/watch/"+stream, hdr)
	if err != nil {
		t.Fatalf("viewer of %s (X-Forwarded-For %q): %v %v", stream, xff, err, resp)
	}
	typ, msg, err = hardNext(ws, 15*time.Second)
	if err != nil {
		t.Fatalf("viewer of %s (X-Forwarded-For %q): no first message: %v", stream, xff, err)
	}
	return ws, typ, msg
}

// hardExpectViewerRefused opens a viewer that must get the per-address
// refusal and then be closed.
func hardExpectViewerRefused(t *testing.T, gw *testGateway, stream, xff string) {
	t.Helper()
	ws, typ, msg := hardViewer(t, gw, stream, xff)
	if typ != "error" || !strings.Contains(msg, "too many viewers from your address") {
		t.Fatalf("viewer (X-Forwarded-For %q): got %s %q, want the per-address refusal", xff, typ, msg)
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("a refused viewer got a message after its error")
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("a refused viewer's socket stayed open")
	}
}

// hardExpectViewerAccepted opens a viewer of a stream nobody publishes:
// accepted, it waits.
func hardExpectViewerAccepted(t *testing.T, gw *testGateway, stream, xff string) *websocket.Conn {
	t.Helper()
	ws, typ, msg := hardViewer(t, gw, stream, xff)
	if typ != "waiting" {
		t.Fatalf("viewer (X-Forwarded-For %q): got %s %q, want waiting", xff, typ, msg)
	}
	return ws
}

// 1. Connections per address: past limits.max_conns_per_ip a connection is
// closed as soon as it is accepted, counted; the address is served again
// once it holds fewer.
func hardConnsPerIP(t *testing.T, gw *testGateway) {
	addr := strings.TrimPrefix(gw.base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// A refused connection is closed (reset) by the server as soon as it is
	// accepted: on loopback the reset may even beat the end of the dial. An
	// admitted one waits for its request (headers within 10 s).
	closed, held := 0, 0
	for range 30 {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if errors.Is(err, syscall.ECONNRESET) {
			closed++
			continue
		}
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var b [1]byte
			_, err := c.Read(b[:])
			mu.Lock()
			defer mu.Unlock()
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				held++
			} else if err != nil {
				closed++
			}
		})
	}
	wg.Wait()
	t.Logf("30 connections: %d closed by the server, %d held", closed, held)
	if closed < 10 || held < 15 {
		t.Fatalf("30 connections with max_conns_per_ip 20: %d closed at once, %d held; want at least 10 closed and the rest (but for one still being released) held", closed, held)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// The server releases the slots as it sees the connections close.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	hardWaitFor(t, "/healthz to answer once the held connections are closed", func() bool {
		resp, err := c.Get(gw.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if n := hardMetric(t, gw, "", `gateway_connections_refused_total{reason="max_conns_per_ip"}`); n < 10 {
		t.Fatalf("gateway_connections_refused_total{reason=\"max_conns_per_ip\"} = %v, want >= 10", n)
	}
}

// 2. Request rate: past the token bucket of the address, 429 with
// Retry-After and a JSON error, counted.
func hardRequestRate(t *testing.T, gw *testGateway) {
	var limited *apitest.Result
	ok := 0
	for range 10 {
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/healthz", "", "", nil)
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			if limited == nil {
				limited = &r
			}
		default:
			t.Fatalf("GET /healthz: %d %s", r.Status, r.Body)
		}
	}
	if limited == nil {
		t.Fatal("10 quick requests with 2/s and a burst of 5: none was limited")
	}
	if ok < 4 { // the burst, less the baseline's request
		t.Fatalf("only %d of 10 requests answered before the limit (burst 5)", ok)
	}
	hardJSONError(t, "limited request", *limited, http.StatusTooManyRequests, "too many requests")
	if secs, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", limited.Header.Get("Retry-After"))
	}
	if n := hardMetric(t, gw, "", "gateway_requests_limited_total"); n <= 0 {
		t.Fatalf("gateway_requests_limited_total = %v, want > 0", n)
	}
}

// 3. Half-open WHIP sessions: publishes that never connect are capped per
// address and hold no stream; DELETE ends them.
func hardPendingPublishes(t *testing.T, gw *testGateway) {
	post := func(stream string) apitest.Result {
		return apitest.Do(t, testHTTP, "POST", gw.base+"/whip/"+stream, "application/sdp", hardOffer(t, true), nil)
	}
	pending := func() float64 { return hardMetric(t, gw, "", "gateway_publishers_pending") }
	var locs []string
	for _, s := range []string{"p1", "p2"} {
		r := post(s)
		if r.Status != http.StatusCreated || r.Header.Get("Location") == "" {
			t.Fatalf("pending publish of %s: %d %s", s, r.Status, r.Body)
		}
		locs = append(locs, r.Header.Get("Location"))
	}
	hardJSONError(t, "third half-open publish from one address", post("p3"), http.StatusTooManyRequests, "waiting to connect")
	if n := pending(); n != 2 {
		t.Fatalf("gateway_publishers_pending = %v, want 2", n)
	}
	if n := hardMetric(t, gw, "", "gateway_streams_live"); n != 0 {
		t.Fatalf("gateway_streams_live = %v with only pending publishes, want 0", n)
	}

	// One ends; the other is still pending on p2 when a real publisher
	// takes p2 (with max_streams 1): the pending one held nothing.
	if r := apitest.Do(t, testHTTP, "DELETE", gw.base+locs[0], "", "", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE of a pending session: %d %s", r.Status, r.Body)
	}
	hardWaitFor(t, "one pending publish", func() bool { return pending() == 1 })
	video, audio := testMedia(t)
	pub := publish(t, gw, "p2", video, audio)
	v := watch(t, gw, "p2")
	v.expectInit(15 * time.Second)
	if r := apitest.Do(t, testHTTP, "DELETE", gw.base+locs[1], "", "", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE of the pending session of p2: %d %s", r.Status, r.Body)
	}
	hardWaitFor(t, "no pending publish", func() bool { return pending() == 0 })
	// Ending the pending session of p2 did not end its live publish.
	if segs, ctl := v.collect(2 * time.Second); ctl != nil || len(segs) == 0 {
		t.Fatalf("viewer of p2 after its pending session ended: %d segments, control %+v", len(segs), ctl)
	}
	if st := pub.Close(); st != http.StatusOK {
		t.Fatalf("DELETE of the live publish: %d", st)
	}
	v.expectControl("eos", 15*time.Second)

	// The one stream slot is free again.
	publish(t, gw, "live", video, audio)
	watch(t, gw, "live").expectInit(15 * time.Second)
}

// 4a. On an open gateway nobody may take a live stream over: that needs a
// credential.
func hardTakeoverOpen(t *testing.T, gw *testGateway) {
	video, audio := testMedia(t)
	publish(t, gw, "s", video, audio)
	v := watch(t, gw, "s")
	v.expectInit(15 * time.Second)
	r := apitest.Do(t, testHTTP, "POST", gw.base+"/whip/s", "application/sdp", hardOffer(t, true), nil)
	hardJSONError(t, "anonymous takeover", r, http.StatusConflict, "already has a publisher")
	if segs, ctl := v.collect(2 * time.Second); ctl != nil || len(segs) == 0 {
		t.Fatalf("viewer after a refused takeover: %d segments, control %+v", len(segs), ctl)
	}
}

// 4b. With a publish token, a second publisher presenting it takes over:
// the viewer gets the new publisher's init.
func hardTakeoverToken(t *testing.T, gw *testGateway) {
	video, audio := testMedia(t)
	publish(t, gw, "s", video, audio)
	v := watch(t, gw, "s")
	v.expectInit(15 * time.Second)
	publish(t, gw, "s", video, audio)
	v.expectInit(15 * time.Second)
	if segs, ctl := v.collect(2 * time.Second); ctl != nil || len(segs) == 0 {
		t.Fatalf("viewer after the takeover: %d segments, control %+v", len(segs), ctl)
	}
}

// 5. A publish gives at most 100 remote ICE candidates: in the offer (400),
// or trickled over the WS signaling (an error, and the socket, with its
// publish, is closed: every signaling error ends the socket).
func hardCandidates(t *testing.T, gw *testGateway) {
	offer := hardOffer(t, false)
	if n := strings.Count(offer, "a=candidate:"); n != 0 {
		t.Fatalf("an offer made before gathering has %d candidates", n)
	}
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString("a=" + hardCandidateLine(i) + "\r\n")
		}
		return b.String()
	}
	r := apitest.Do(t, testHTTP, "POST", gw.base+"/whip/c", "application/sdp", offer+many(101), nil)
	hardJSONError(t, "an offer with 101 candidates", r, http.StatusBadRequest, "at most 100")
	r = apitest.Do(t, testHTTP, "POST", gw.base+"/whip/c", "application/sdp", hardOffer(t, false)+many(100), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("an offer with 100 candidates: %d %s", r.Status, r.Body)
	}
	if r := apitest.Do(t, testHTTP, "DELETE", gw.base+r.Header.Get("Location"), "", "", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}

	ws, resp, err := hardDial(t, gw, "/ws/publish/c", nil)
	if err != nil {
		t.Fatalf("WS publish: %v %v", err, resp)
	}
	if err := ws.WriteJSON(map[string]string{"type": "offer", "sdp": hardOffer(t, false)}); err != nil {
		t.Fatal(err)
	}
	if typ, msg, err := hardNext(ws, 15*time.Second); err != nil || typ != "answer" {
		t.Fatalf("WS publish: got %s %q %v, want the answer", typ, msg, err)
	}
	for i := range 101 {
		m := map[string]any{"type": "candidate", "candidate": map[string]any{"candidate": hardCandidateLine(i), "sdpMid": "0"}}
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteJSON(m); err != nil {
			t.Fatalf("candidate %d: %v", i, err)
		}
	}
	hardClosedAfterError(t, "101 trickled candidates", ws, "too many ICE candidates: at most 100")
	hardWaitFor(t, "the WS publish to end with its socket", func() bool {
		return hardMetric(t, gw, "", "gateway_publishers_pending") == 0
	})
}

// 6. Allowed origins: other origins get a JSON 403 before the upgrade on
// both WebSockets, and no CORS grant on the API.
func hardOrigins(t *testing.T, gw *testGateway) {
	const good, evil = "https://app.example", "http://evil.example"
	for _, path := range []string{"/ws/watch/x", "/ws/publish/x"} {
		ws, resp, err := hardDial(t, gw, path, http.Header{"Origin": {evil}})
		if err == nil || ws != nil || resp == nil {
			t.Fatalf("%s with Origin %s: upgraded (%v)", path, evil, err)
		}
		body, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Upgrade") != "" || resp.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "origin not allowed") {
			t.Fatalf("%s with Origin %s: %d %v %q, want a JSON 403 naming the origin", path, evil, resp.StatusCode, resp.Header, body)
		}
		ws, resp, err = hardDial(t, gw, path, http.Header{"Origin": {good}})
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s with Origin %s: %v %v, want 101", path, good, err, resp)
		}
		ws.Close()
	}
	r := apitest.Do(t, testHTTP, "GET", gw.base+"/api/streams", "", "", map[string]string{"Origin": evil})
	if r.Status != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("/api/streams with Origin %s: %d, Access-Control-Allow-Origin %q, want none", evil, r.Status, r.Header.Get("Access-Control-Allow-Origin"))
	}
	r = apitest.Do(t, testHTTP, "GET", gw.base+"/api/streams", "", "", map[string]string{"Origin": good})
	if r.Status != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != good {
		t.Fatalf("/api/streams with Origin %s: %d, Access-Control-Allow-Origin %q, want it echoed", good, r.Status, r.Header.Get("Access-Control-Allow-Origin"))
	}
}

// 7. Viewer stats: a flood is ignored past one per 250 ms, an implausible
// report is ignored, and /api/streams stays valid JSON.
func hardViewerStats(t *testing.T, gw *testGateway) {
	flood := watch(t, gw, "st")
	flood.expectControl("waiting", 15*time.Second)
	wild := watch(t, gw, "st")
	wild.expectControl("waiting", 15*time.Second)
	before := hardMetric(t, gw, "", "gateway_viewer_stats_ignored_total")
	for i := range 2000 {
		if err := flood.c.SendText(`{"type":"stats","latency":0.2,"buffered":0.5,"decodedFrames":100,"droppedFrames":0}`); err != nil {
			t.Fatalf("stats %d: %v", i, err)
		}
	}
	if err := wild.c.SendText(`{"type":"stats","latency":1e308,"buffered":1e308,"decodedFrames":1,"droppedFrames":0}`); err != nil {
		t.Fatal(err)
	}
	var ignored float64
	hardWaitFor(t, "the stats flood to be ignored", func() bool {
		ignored = hardMetric(t, gw, "", "gateway_viewer_stats_ignored_total") - before
		return ignored >= 1901
	})
	t.Logf("%v of 2001 stats messages ignored", ignored)
	res, err := testHTTP.Get(gw.base + "/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []struct {
		Name        string
		ViewerStats *struct {
			Reporting  int     `json:"reporting"`
			LatencyMax float64 `json:"latencyMax"`
		} `json:"viewerStats"`
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/api/streams: %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatalf("/api/streams: %v", err)
	}
	for _, s := range list {
		if s.Name != "st" {
			continue
		}
		if s.ViewerStats == nil || s.ViewerStats.Reporting != 1 || math.IsInf(s.ViewerStats.LatencyMax, 0) || s.ViewerStats.LatencyMax > 1 {
			t.Fatalf("viewer stats of st: %+v, want only the plausible viewer's (latency 0.2)", s.ViewerStats)
		}
		return
	}
	t.Fatalf("/api/streams has no stream st: %+v", list)
}

// 8. Viewers per address: the one past limits.max_viewers_per_ip gets an
// error and a close; a slot freed is usable again.
func hardViewersPerIP(t *testing.T, gw *testGateway) {
	var vs []*viewer
	for range 5 {
		v := watch(t, gw, "w")
		v.expectControl("waiting", 15*time.Second)
		vs = append(vs, v)
	}
	c, _, err := viewerclient.Dial(context.Background(), gw.ws+"/ws/watch/w")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Next(15 * time.Second)
	if err != nil || m.Control == nil || m.Control.Type != "error" || !strings.Contains(m.Control.Message, "too many viewers from your address") {
		t.Fatalf("sixth viewer: %+v %v, want the per-address refusal", m.Control, err)
	}
	if _, err := c.Next(15 * time.Second); err == nil || errors.Is(err, viewerclient.ErrTimeout) {
		t.Fatalf("sixth viewer not closed after its error: %v", err)
	}
	if n := hardMetric(t, gw, "", "gateway_viewers_refused_per_ip_total"); n < 1 {
		t.Fatalf("gateway_viewers_refused_per_ip_total = %v", n)
	}
	// One leaves: its slot is taken again (once the gateway saw it go).
	vs[0].c.Close()
	hardWaitFor(t, "the freed viewer slot", func() bool {
		c, _, err := viewerclient.Dial(context.Background(), gw.ws+"/ws/watch/w")
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Next(15 * time.Second)
		if err == nil && m.Control != nil && m.Control.Type == "waiting" {
			t.Cleanup(func() { c.Close() })
			return true
		}
		c.Close()
		return false
	})
}

// 9a. Behind a trusted proxy, viewers count against the address the proxy
// names.
func hardTrustedProxy(t *testing.T, gw *testGateway) {
	hardExpectViewerAccepted(t, gw, "x", "203.0.113.7")
	hardExpectViewerAccepted(t, gw, "x", "203.0.113.7")
	hardExpectViewerRefused(t, gw, "x", "203.0.113.7")
	hardExpectViewerAccepted(t, gw, "x", "203.0.113.8")
	hardExpectViewerAccepted(t, gw, "x", "") // the proxy's own address
}

// 9b. From an address that is not a trusted proxy, X-Forwarded-For is
// ignored: every viewer counts against 127.0.0.1.
func hardUntrustedXFF(t *testing.T, gw *testGateway) {
	hardExpectViewerAccepted(t, gw, "x", "203.0.113.7")
	hardExpectViewerAccepted(t, gw, "x", "203.0.113.8")
	hardExpectViewerRefused(t, gw, "x", "203.0.113.9")
}

// 10. Every answer has Referrer-Policy: no-referrer; pages have a CSP that
// runs the gateway's scripts only; the test pages are off by default.
func hardHeaders(t *testing.T, gw *testGateway) {
	for _, p := range []string{"/", "/api/streams", "/healthz", "/watch.html", "/api/nothing"} {
		r := apitest.Do(t, testHTTP, "GET", gw.base+p, "", "", nil)
		if rp := r.Header.Get("Referrer-Policy"); rp != "no-referrer" {
			t.Errorf("GET %s (%d): Referrer-Policy %q", p, r.Status, rp)
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s (%d): no X-Content-Type-Options: nosniff", p, r.Status)
		}
	}
	r := apitest.Do(t, testHTTP, "GET", gw.base+"/watch.html", "", "", nil)
	if csp := r.Header.Get("Content-Security-Policy"); r.Status != http.StatusOK || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("/watch.html: %d, Content-Security-Policy %q", r.Status, csp)
	}
	hardJSONError(t, "/test/g2g-watch.html", apitest.Do(t, testHTTP, "GET", gw.base+"/test/g2g-watch.html", "", "", nil), http.StatusNotFound, "not found")
}

// 11. /metrics and the publisher addresses of /api/streams are for admin:
// the admin token, or the publish token when there is none. notAdmin is a
// valid token that is not the admin's ("" when the publish token is it).
func hardAdmin(t *testing.T, gw *testGateway, notAdmin, admin string) {
	bearer := func(tok string) map[string]string {
		if tok == "" {
			return nil
		}
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	hardJSONError(t, "/metrics without a token", apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", nil), http.StatusUnauthorized, "token")
	if notAdmin != "" {
		hardJSONError(t, "/metrics with the publish token", apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", bearer(notAdmin)), http.StatusForbidden, "")
	}
	if r := apitest.Do(t, testHTTP, "GET", gw.base+"/metrics", "", "", bearer(admin)); r.Status != http.StatusOK || !strings.Contains(r.Body, "gateway_publishers_pending") {
		t.Fatalf("/metrics with the admin token: %d", r.Status)
	}

	video, audio := testMedia(t)
	publish(t, gw, "adm", video, audio)
	remoteAddr := func(tok string) (string, bool) {
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/api/streams", "", "", bearer(tok))
		if r.Status != http.StatusOK {
			t.Fatalf("/api/streams (token %q): %d %s", tok, r.Status, r.Body)
		}
		var list []struct {
			Name      string
			Live      bool
			Publisher *struct {
				RemoteAddr *string `json:"remoteAddr"`
			}
		}
		if err := json.Unmarshal([]byte(r.Body), &list); err != nil {
			t.Fatalf("/api/streams: %v", err)
		}
		for _, s := range list {
			if s.Name == "adm" && s.Live && s.Publisher != nil {
				if s.Publisher.RemoteAddr == nil {
					return "", true
				}
				return *s.Publisher.RemoteAddr, true
			}
		}
		return "", false
	}
	hardWaitFor(t, "the publish live in /api/streams", func() bool { _, ok := remoteAddr(admin); return ok })
	tokens := []string{""} // viewing is open: no view token
	if notAdmin != "" {
		tokens = append(tokens, notAdmin)
	}
	for _, tok := range tokens {
		if a, ok := remoteAddr(tok); !ok || a != "" {
			t.Fatalf("/api/streams with token %q: live %v, remoteAddr %q; want the stream without the address", tok, ok, a)
		}
	}
	if a, _ := remoteAddr(admin); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("/api/streams with the admin token: remoteAddr %q", a)
	}
}

// 12. TURN credentials go only to a request that may publish.
func hardTURN(t *testing.T, gw *testGateway) {
	for _, c := range []struct {
		name, token string
		creds       bool
	}{{"no token", "", false}, {"a wrong token", "nope", false}, {"the publish token", gw.token, true}} {
		hdr := map[string]string{}
		if c.token != "" {
			hdr["Authorization"] = "Bearer " + c.token
		}
		r := apitest.Do(t, testHTTP, "OPTIONS", gw.base+"/whip/x", "", "", hdr)
		links := strings.Join(r.Header.Values("Link"), "\n")
		if r.Status != http.StatusNoContent {
			t.Fatalf("OPTIONS with %s: %d %s", c.name, r.Status, r.Body)
		}
		has := strings.Contains(links, `credential="c"`) && strings.Contains(links, `username="u"`) && strings.Contains(links, "<turn:turn.example.org:3478>")
		if c.creds != has || (!c.creds && (strings.Contains(links, "credential") || strings.Contains(links, "username"))) {
			t.Fatalf("OPTIONS with %s: Link %q, want TURN credentials: %v", c.name, links, c.creds)
		}
	}
}
