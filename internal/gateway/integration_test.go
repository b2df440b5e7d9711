package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/apitest"
	"github.com/mseway/mseway/internal/testkit/fmp4check"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// TestPublishWatch publishes H.264 + Opus over WHIP from a Pion client and
// watches with several WebSocket viewers: the waiting message, init, a
// mid-stream join starting at a keyframe, decodable output, eos on DELETE
// and a new init for the next publisher; over ws/http and wss/https.
func TestPublishWatch(t *testing.T) { transports(t, testPublishWatch) }

func testPublishWatch(t *testing.T, secure bool) {
	fmp4check.RequireFFmpeg(t)
	gw := startGatewayOn(t, secure, nil)
	video, audio := testMedia(t)

	early := watch(t, gw, "demo")
	early.expectControl("waiting", 5*time.Second)

	pub := publish(t, gw, "demo", video, audio)

	ctl, init := early.expectInit(10 * time.Second)
	if !strings.HasPrefix(ctl.MIME, `video/mp4; codecs="avc1.42`) || !strings.Contains(ctl.MIME, "opus") {
		t.Fatalf("init mime = %q", ctl.MIME)
	}
	if len(ctl.Tracks) != 2 || ctl.Tracks[0].Kind != "video" || ctl.Tracks[0].Width != 640 || ctl.Tracks[0].Height != 360 ||
		ctl.Tracks[1].Kind != "audio" || ctl.Tracks[1].Codec != "opus" || ctl.Tracks[1].SampleRate != 48000 {
		t.Fatalf("init tracks = %+v", ctl.Tracks)
	}
	earlySegs, stop := early.collect(1500 * time.Millisecond)
	if stop != nil {
		t.Fatalf("early viewer: unexpected %+v", stop)
	}

	// Viewers joining mid-stream start at once from the GOP cache.
	late := watch(t, gw, "demo")
	late2 := watch(t, gw, "demo")
	joined := time.Now()
	_, lateInit := late.expectInit(5 * time.Second)
	first, _ := late.collect(100 * time.Millisecond)
	if len(first) == 0 {
		t.Fatalf("late viewer got no segment within %v of joining", time.Since(joined))
	}
	_, late2Init := late2.expectInit(5 * time.Second)

	more, stop := early.collect(2500 * time.Millisecond)
	if stop != nil {
		t.Fatalf("early viewer: unexpected %+v", stop)
	}
	earlySegs = append(earlySegs, more...)
	lateSegs, stop := late.collect(500 * time.Millisecond)
	if stop != nil {
		t.Fatalf("late viewer: unexpected %+v", stop)
	}
	lateSegs = append(first, lateSegs...)
	late2Segs, _ := late2.collect(500 * time.Millisecond)

	// The API shows the stream.
	var streams []struct {
		Name    string `json:"name"`
		Live    bool   `json:"live"`
		Viewers int    `json:"viewers"`
		Tracks  []struct {
			Kind  string `json:"kind"`
			Codec string `json:"codec"`
			Width int    `json:"width"`
		} `json:"tracks"`
		Publisher *struct {
			Protocol string `json:"protocol"`
		} `json:"publisher"`
	}
	getJSON(t, gw.base+"/api/streams", &streams)
	if len(streams) != 1 || streams[0].Name != "demo" || !streams[0].Live || streams[0].Viewers != 3 ||
		len(streams[0].Tracks) != 2 || streams[0].Tracks[0].Width != 640 || streams[0].Publisher == nil || streams[0].Publisher.Protocol != "whip" {
		t.Fatalf("/api/streams = %+v", streams)
	}

	// The publisher leaves: every viewer gets eos.
	if status := pub.Close(); status != http.StatusOK {
		t.Fatalf("DELETE status = %d", status)
	}
	for _, v := range []*viewer{early, late, late2} {
		_, tail := v.expectControl("eos", 5*time.Second)
		if v == early {
			earlySegs = append(earlySegs, tail...)
		}
	}

	n := checkPlayable(t, "early viewer", init, earlySegs)
	if n < 90 {
		t.Fatalf("early viewer got %d video frames in ~4 s of a 30 fps stream", n)
	}
	checkPlayable(t, "late viewer", lateInit, lateSegs)
	checkPlayable(t, "late viewer 2", late2Init, late2Segs)

	// A new publisher: the waiting viewers get a new init and play on.
	publish(t, gw, "demo", video, audio)
	_, init2 := early.expectInit(10 * time.Second)
	segs2, _ := early.collect(1500 * time.Millisecond)
	if len(segs2) < 20 {
		t.Fatalf("after republish: %d segments in 1.5 s", len(segs2))
	}
	checkPlayable(t, "early viewer after republish", init2, segs2)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := testHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestVanishingPublisher: a publisher that loses its network without a
// DELETE is dropped within seconds (ICE timeouts) and its viewers get eos.
func TestVanishingPublisher(t *testing.T) {
	transports(t, func(t *testing.T, secure bool) {
		testVanishingPublisher(t, startGatewayOn(t, secure, nil))
	})
}

func testVanishingPublisher(t *testing.T, gw *testGateway) {
	video, audio := testMedia(t)
	pub := publish(t, gw, "gone", video, audio)
	v := watch(t, gw, "gone")
	v.expectInit(10 * time.Second)
	pub.Vanish()
	start := time.Now()
	v.expectControl("eos", 20*time.Second)
	t.Logf("eos %v after the publisher vanished", time.Since(start).Round(time.Millisecond))
	var streams []struct {
		Live bool `json:"live"`
	}
	getJSON(t, gw.base+"/api/streams", &streams)
	if len(streams) != 1 || streams[0].Live {
		t.Fatalf("stream still live: %+v", streams)
	}
}

// TestWebSocketSignaling publishes over the WebSocket signaling with trickle
// ICE: the publisher learns the viewer count, viewers play, and closing the
// socket ends the publish; over ws and wss.
func TestWebSocketSignaling(t *testing.T) { transports(t, testWebSocketSignaling) }

func testWebSocketSignaling(t *testing.T, secure bool) {
	fmp4check.RequireFFmpeg(t)
	gw := startGatewayOn(t, secure, nil)
	video, audio := testMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := whipclient.Publish(ctx, whipclient.Options{
		WebSocketURL: gw.ws + "/ws/publish/wsdemo", Video: video, Audio: audio, LoopbackOnly: true, TLS: gw.tls,
	})
	if err != nil {
		t.Fatalf("publish over WS: %v", err)
	}
	defer pub.Close()
	v1 := watch(t, gw, "wsdemo")
	_, init := v1.expectInit(10 * time.Second)
	v2 := watch(t, gw, "wsdemo")
	v2.expectInit(10 * time.Second)
	for deadline := time.Now().Add(5 * time.Second); pub.Viewers() != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("publisher was told %d viewers, want 2", pub.Viewers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	segs, stop := v1.collect(1500 * time.Millisecond)
	if stop != nil || len(segs) < 20 {
		t.Fatalf("%d segments, control %+v", len(segs), stop)
	}
	checkPlayable(t, "ws-published stream", init, segs)

	pub.Close() // closes the signaling socket
	v1.expectControl("eos", 10*time.Second)
	v2.expectControl("eos", 10*time.Second)
}

// TestTLSViewersSurvivePublisherEnd is the sequence that crashed the
// gateway: TLS viewers have no raw socket, and the last fan-out sweep at
// the end of a publish wrote to them as if they had. Three wss viewers of a
// WHIP publish over https; when it ends, each gets eos, and the process
// still serves (a new publish reaches the same viewers).
func TestTLSViewersSurvivePublisherEnd(t *testing.T) {
	gw := startGatewayOn(t, true, nil)
	video, audio := testMedia(t)
	var vs []*viewer
	for range 3 {
		v := watch(t, gw, "tls")
		v.expectControl("waiting", 5*time.Second)
		vs = append(vs, v)
	}
	pub := publish(t, gw, "tls", video, audio)
	for _, v := range vs {
		v.expectInit(10 * time.Second)
	}
	for i, v := range vs {
		segs, stop := v.collect(5 * time.Second / 3)
		if stop != nil || len(segs) < 20 {
			t.Fatalf("viewer %d: %d segments, control %+v", i, len(segs), stop)
		}
	}
	if status := pub.Close(); status != http.StatusOK {
		t.Fatalf("DELETE status = %d", status)
	}
	for _, v := range vs {
		v.expectControl("eos", 5*time.Second)
	}
	var health struct {
		Status string `json:"status"`
	}
	getJSON(t, gw.base+"/healthz", &health)
	if health.Status != "ok" {
		t.Fatalf("/healthz after the publish ended: %+v", health)
	}
	publish(t, gw, "tls", video, audio)
	for _, v := range vs {
		v.expectInit(10 * time.Second)
		if segs, _ := v.collect(time.Second); len(segs) < 10 {
			t.Fatalf("after republish: %d segments in 1 s", len(segs))
		}
	}
	var m []byte
	resp, err := testHTTP.Get(gw.base + "/metrics")
	if err == nil {
		m, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if strings.Contains(string(m), "gateway_panics_contained_total{") {
		t.Fatalf("a panic was contained during the run:\n%s", m)
	}
}

// TestTLSViewerResumesSession: a viewer that reconnects resumes its TLS
// session (a ticket from the first connection), as browsers do, instead of a
// full handshake; and the gateway's certificate is the ECDSA one it was given.
func TestTLSViewerResumesSession(t *testing.T) {
	gw := startGatewayOn(t, true, nil)
	cfg := gw.tls.Clone()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	u := "wss://" + strings.TrimPrefix(gw.base, "https://") + "/ws/watch/resume"
	var states []tls.ConnectionState
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d := websocket.Dialer{TLSClientConfig: cfg}
		ws, _, err := d.DialContext(ctx, u, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		// The ticket arrives after the handshake: read the first message.
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), "waiting") {
			t.Fatalf("first message %q, %v", msg, err)
		}
		states = append(states, ws.NetConn().(*tls.Conn).ConnectionState())
		ws.Close()
	}
	if states[0].DidResume || !states[1].DidResume {
		t.Fatalf("resumed: first %v, second %v; want false, true", states[0].DidResume, states[1].DidResume)
	}
	if _, ok := states[0].PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("certificate key %T", states[0].PeerCertificates[0].PublicKey)
	}
}

// TestDrain: a stopping gateway answers /readyz with 503 at once and keeps
// serving its viewers for drain_delay; then they get goaway.
func TestDrain(t *testing.T) {
	cfg := loopbackConfig()
	cfg.DrainDelay = 2 * time.Second
	gw := startGatewayConfig(t, cfg, gateway.Options{LoopbackOnly: true})
	ready := func() int {
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/readyz", "", "", nil)
		return r.Status
	}
	if s := ready(); s != 200 {
		t.Fatalf("/readyz: %d", s)
	}
	v := watch(t, gw, "d")
	v.expectControl("waiting", 5*time.Second)
	closed := make(chan error, 1)
	go func() { closed <- gw.stop() }()
	deadline := time.Now().Add(5 * time.Second)
	for ready() != 503 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready while draining")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still serving meanwhile: the viewer has nothing yet.
	if m, err := v.c.Next(300 * time.Millisecond); !errors.Is(err, viewerclient.ErrTimeout) {
		t.Fatalf("during the drain delay the viewer got %+v, %v", m.Control, err)
	}
	v.expectControl("goaway", 10*time.Second)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// publisherKindOf returns the publisher kind /api/streams gives stream ("":
// not live).
func publisherKindOf(t *testing.T, gw *testGateway, stream string) string {
	t.Helper()
	var streams []struct {
		Name      string `json:"name"`
		Publisher *struct {
			Kind string `json:"kind"`
		} `json:"publisher"`
	}
	getJSON(t, gw.base+"/api/streams", &streams)
	for _, s := range streams {
		if s.Name == stream && s.Publisher != nil {
			return s.Publisher.Kind
		}
	}
	return ""
}
