package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/mseway/mseway/auth"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/natstest"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// TestLogsHoldNoSecrets runs `gateway serve` as main runs it, on loopback,
// with every kind of secret configured (static publish, view and admin
// tokens, an HS256 JWT secret, a webhook secret and a webhook URL with a key
// in its query, a TURN secret, NATS URLs with user:password), at log level
// debug, once per log_format. Publishers and viewers present tokens in
// Authorization headers and in ?token= query strings, good ones and bad
// ones (wrong, foreign-signed, expired), the refusals are logged, and the
// capture agent publishes with a token; then no secret and no token
// appears anywhere in the gateway's or the agent's log, and each line is
// of the configured format.
func TestLogsHoldNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway with a cluster and publishers")
	}
	video, err := mediafile.ReadH264(filepath.Join("..", "..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	audio, err := mediafile.ReadOggOpus(filepath.Join("..", "..", "testdata", "media", "opus_48k_stereo.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		natsUser     = "gwnode"
		natsPassword = "nats-password-5b1f0e7c2d"
	)
	ns := natstest.Start(t, server.Options{JetStream: true, Username: natsUser, Password: natsPassword})
	natsPort := ns.Addr().(*net.TCPAddr).Port
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			logsHoldNoSecrets(t, format, natsPort, natsUser, natsPassword, video, audio)
		})
	}
}

func logsHoldNoSecrets(t *testing.T, format string, natsPort int, natsUser, natsPassword string, video []mediafile.AccessUnit, audio [][]byte) {
	s := func(name string) string { return name + "-" + format + "-7f3a9c1e5b2d4f60" } // a recognisable secret
	var (
		publishToken  = s("publish-token")
		viewToken     = s("view-token")
		adminToken    = s("admin-token")
		hsSecret      = s("hs256-secret-of-at-least-32-bytes")
		otherSecret   = s("another-hs256-secret-32-bytes-long")
		webhookSecret = s("webhook-secret")
		webhookKey    = s("webhook-url-key")
		turnSecret    = s("turn-secret")
		deadPassword  = s("dead-nats-password")
		wrongToken    = s("wrong-token")
	)
	now := time.Now()
	jwtFor := func(secret string, exp time.Time, g *auth.Grants) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, &auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", IssuedAt: jwt.NewNumericDate(now.Add(-2 * time.Hour)), ExpiresAt: jwt.NewNumericDate(exp)},
			Mseway:           g,
		})
		tok.Header["kid"] = "k1"
		signed, err := tok.SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}
	jwtPublish := jwtFor(hsSecret, now.Add(time.Hour), &auth.Grants{Publish: []string{"ws-*"}})
	jwtView := jwtFor(hsSecret, now.Add(time.Hour), &auth.Grants{View: []string{"*"}})
	jwtForeign := jwtFor(otherSecret, now.Add(time.Hour), &auth.Grants{View: []string{"*"}, Admin: true})
	jwtExpired := jwtFor(hsSecret, now.Add(-time.Hour), &auth.Grants{View: []string{"*"}})
	secrets := []string{publishToken, viewToken, adminToken, hsSecret, otherSecret, webhookSecret, webhookKey, turnSecret,
		natsPassword, deadPassword, wrongToken, jwtPublish, jwtView, jwtForeign, jwtExpired}
	for _, tok := range []string{jwtPublish, jwtView, jwtForeign, jwtExpired} {
		secrets = append(secrets, tok[strings.LastIndexByte(tok, '.')+1:]) // the signature alone
	}

	var hooks atomic.Int64
	var hooksFail atomic.Bool // until the gateway stops
	hooksFail.Store(true)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hooks.Add(1)%2 == 0 && hooksFail.Load() { // every other delivery fails: retries are logged too
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()

	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	cfgText := fmt.Sprintf(`listen: 127.0.0.1:0
log_level: debug
log_format: %s
webrtc:
  udp_port: 0
  udp_address: 127.0.0.1
  include_loopback: true
  ice_servers:
    - urls: ["turn:127.0.0.1:3478"]
      secret: %q
auth:
  publish_token: %q
  view_token: %q
  admin_token: %q
  jwt:
    hs256: [{secret: %q, kid: k1}]
webhooks:
  - url: %q
    secret: %q
cluster:
  node_id: secrets-%s
  nats_urls: [%q, %q]
sources: {}
`, format, turnSecret, publishToken, viewToken, adminToken, hsSecret,
		receiver.URL+"/hook?key="+webhookKey, webhookSecret, format,
		fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", natsUser, natsPassword, natsPort),
		fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", natsUser, deadPassword, deadPort))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- runServe(ctx, func() {}, []string{"-config", cfgPath}, &stdout, &stderr) }()
	addr := waitListening(t, &stdout, &stderr, exit)
	base, wsBase := "http://"+addr, "ws://"+addr

	// Publishers: WHIP with the static token in the header and the query,
	// WS signaling with a JWT in the query.
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	pub, err := whipclient.Publish(pctx, whipclient.Options{
		URL: base + "/whip/whip-1?token=" + publishToken, Token: publishToken,
		Video: video, Audio: audio, FPS: 30, LoopbackOnly: true,
	})
	if err != nil {
		t.Fatalf("WHIP publish: %v\n%s", err, stderr.String())
	}
	defer pub.Close()
	wsPub, err := whipclient.Publish(pctx, whipclient.Options{
		URL: base + "/whip/ws-1", WebSocketURL: wsBase + "/ws/publish/ws-1", Token: jwtPublish,
		Video: video, Audio: audio, FPS: 30, LoopbackOnly: true,
	})
	if err != nil {
		t.Fatalf("WS publish: %v\n%s", err, stderr.String())
	}
	defer wsPub.Close()

	// Viewers: the static view token in the query, a JWT in the header.
	if err := watch(pctx, wsBase+"/ws/watch/whip-1?token="+viewToken, nil); err != nil {
		t.Fatalf("viewer with the view token: %v", err)
	}
	if err := watch(pctx, wsBase+"/ws/watch/ws-1", http.Header{"Authorization": {"Bearer " + jwtView}}); err != nil {
		t.Fatalf("viewer with a JWT: %v", err)
	}

	// Refusals.
	for _, url := range []string{
		wsBase + "/ws/watch/whip-1?token=" + wrongToken,
		wsBase + "/ws/watch/whip-1?token=" + jwtForeign,
		wsBase + "/ws/watch/whip-1?token=" + jwtExpired,
		wsBase + "/ws/watch/whip-1?token=" + publishToken + "x",
	} {
		if err := watch(pctx, url, nil); err == nil {
			t.Errorf("viewer %s: not refused", url)
		}
	}
	if err := watch(pctx, wsBase+"/ws/watch/ws-1", http.Header{"Authorization": {"Bearer " + wrongToken}}); err == nil {
		t.Error("viewer with a wrong token in the header: not refused")
	}
	if _, err := whipclient.Publish(pctx, whipclient.Options{
		URL: base + "/whip/whip-2?token=" + wrongToken, Token: wrongToken, Video: video, FPS: 30, LoopbackOnly: true,
	}); err == nil {
		t.Error("WHIP publish with a wrong token: not refused")
	}
	if _, err := whipclient.Publish(pctx, whipclient.Options{ // the JWT may publish ws-* only
		URL: base + "/whip/whip-1", WebSocketURL: wsBase + "/ws/publish/whip-1", Token: jwtPublish, Video: video, FPS: 30, LoopbackOnly: true,
	}); err == nil {
		t.Error("WS publish of a stream the JWT does not grant: not refused")
	}
	for _, tc := range []struct {
		path, token string
		ok          bool // 200, or refused with a 4xx
	}{
		{"/metrics", adminToken, true},
		{"/metrics", wrongToken, false},
		{"/metrics", jwtForeign, false},
		{"/api/streams?token=" + adminToken, "", true},
		{"/api/nodes?token=" + wrongToken, "", false},
		{"/ws/watch/whip-1?token=" + viewToken, viewToken, false}, // not an upgrade
		{"/whip/whip-1?token=" + publishToken, publishToken, false},
	} {
		req, _ := http.NewRequestWithContext(pctx, http.MethodGet, base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (resp.StatusCode == http.StatusOK) != tc.ok || (!tc.ok && resp.StatusCode/100 != 4) {
			t.Errorf("GET %s: %d, want 200: %v, else a 4xx", strings.SplitN(tc.path, "?", 2)[0], resp.StatusCode, tc.ok)
		}
	}

	// The capture agent, with its token in -token and in the URL.
	var agentLog syncBuffer
	if !errors.Is((&devices.Config{Video: devices.None}).CheckBuild(), devices.ErrNoEncoder) {
		actx, acancel := context.WithCancel(ctx)
		agentExit := make(chan int, 1)
		go func() {
			agentExit <- runCapture(actx, []string{"-url", base + "/whip/agent-1?token=" + publishToken, "-token", publishToken,
				"-video", "videotest", "-audio", "audiotest", "-width", "160", "-height", "120", "-fps", "10",
				"-loopback", "-log-level", "debug", "-log-format", format}, io.Discard, &agentLog)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for l := agentLog.String(); !strings.Contains(l, "msg=live") && !strings.Contains(l, `"msg":"live"`); l = agentLog.String() {
			if time.Now().After(deadline) {
				t.Fatalf("agent never went live:\n%s", agentLog.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		acancel()
		if code := <-agentExit; code != 0 {
			t.Errorf("agent exit %d:\n%s", code, agentLog.String())
		}
	}

	pub.Close()
	wsPub.Close()
	time.Sleep(300 * time.Millisecond) // webhooks and their retries
	hooksFail.Store(false)             // the drain delivers the rest at once
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("gateway exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not stop")
	}

	logs := map[string]string{"gateway": stderr.String(), "agent": agentLog.String()}
	for name, text := range logs {
		for _, sec := range secrets {
			if i := strings.Index(text, sec); i >= 0 {
				line := text[strings.LastIndexByte(text[:i], '\n')+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				t.Errorf("%s log holds a secret (%.24s...):\n%s", name, sec, line)
			}
		}
		checkFormat(t, name, format, text)
	}
	// The log saw what it had to keep secret.
	for _, want := range []string{"request refused", "viewer joined", "publish started", "cluster joined", "NATS connected"} {
		if !strings.Contains(logs["gateway"], want) {
			t.Errorf("gateway log lacks %q", want)
		}
	}
	if hooks.Load() == 0 {
		t.Error("no webhook delivered")
	}
	if t.Failed() {
		t.Logf("gateway log:\n%s", logs["gateway"])
	}
}

var listeningRE = regexp.MustCompile(`gateway listening on (\S+)`)

// waitListening waits for runServe's "listening" line and returns the
// address.
func waitListening(t *testing.T, stdout, stderr *syncBuffer, exit <-chan int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(stdout.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-exit:
			t.Fatalf("gateway exited %d:\n%s", code, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not listening:\n%s", stderr.String())
		}
	}
}

// watch opens a viewer socket and waits for its first media message; an
// error control message or a refused handshake is an error.
func watch(ctx context.Context, url string, h http.Header) error {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("%w (status %d)", err, resp.StatusCode)
		}
		return err
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		if typ == websocket.BinaryMessage {
			return nil
		}
		var c struct{ Type, Message string }
		if json.Unmarshal(data, &c) == nil && c.Type == "error" {
			return errors.New(c.Message)
		}
	}
}

// checkFormat checks that every line of a log is of the format: a JSON
// object with time, level and msg, or slog's text with time=, level= and
// msg=.
func checkFormat(t *testing.T, name, format, text string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		switch format {
		case "json":
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil || m["time"] == nil || m["level"] == nil || m["msg"] == nil {
				t.Errorf("%s log: not a JSON log line: %s", name, line)
				return
			}
		default:
			if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=") || !strings.Contains(line, " msg=") {
				t.Errorf("%s log: not a text log line: %s", name, line)
				return
			}
		}
	}
}
