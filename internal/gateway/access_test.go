package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/webhooks"
)

const hsSecret = "an-hs256-secret-of-at-least-32-bytes!"

// grants is the mseway claim of a test token.
type grants struct {
	Publish []string `json:"publish,omitempty"`
	View    []string `json:"view,omitempty"`
	Admin   bool     `json:"admin,omitempty"`
}

type testClaims struct {
	jwt.RegisteredClaims
	Mseway *grants `json:"mseway,omitempty"`
}

func claims(g grants, exp time.Duration) testClaims {
	return testClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: "tester", Issuer: "https://issuer.example", Audience: jwt.ClaimStrings{"mseway"},
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp)),
		},
		Mseway: &g,
	}
}

func hsToken(t *testing.T, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString([]byte(hsSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksServer serves one RSA key as a JWKS.
func jwksServer(t *testing.T) (*httptest.Server, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	return srv, key
}

func rsToken(t *testing.T, key *rsa.PrivateKey, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = "r1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestJWTGrants runs the access-control rules of PROTOCOL.md against a real
// gateway configured with an HS256 secret and a JWKS URL: scoped publish and
// view rights, each bad token kind, the admin endpoints, /api/streams
// filtered by grants, and real publishes and viewers holding such tokens.
func TestJWTGrants(t *testing.T) {
	jwks, rsKey := jwksServer(t)
	gw := startGateway(t, func(c *configs.Config) {
		c.Auth.JWT.HS256 = []configs.HMACKey{{Secret: hsSecret, KID: "k1"}}
		c.Auth.JWT.JWKSURL = jwks.URL
		c.Auth.JWT.Issuer = "https://issuer.example"
		c.Auth.JWT.Audience = "mseway"
	})
	cam := hsToken(t, claims(grants{Publish: []string{"cam-*"}}, time.Hour))
	viewCam := hsToken(t, claims(grants{View: []string{"cam-*"}}, time.Hour))
	admin := rsToken(t, rsKey, claims(grants{Admin: true}, time.Hour))
	everything := rsToken(t, rsKey, claims(grants{Publish: []string{"*"}, View: []string{"*"}}, time.Hour))

	expired := hsToken(t, claims(grants{Publish: []string{"*"}}, -time.Hour))
	wrongAud := claims(grants{Publish: []string{"*"}}, time.Hour)
	wrongAud.Audience = jwt.ClaimStrings{"someone-else"}
	noExp := claims(grants{Publish: []string{"*"}}, time.Hour)
	noExp.ExpiresAt = nil
	forged := cam[:len(cam)-4] + "AAAA"
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(grants{Publish: []string{"*"}}, time.Hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for _, c := range []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		status int
		has    string
	}{
		// "v=0" is not SDP: a request past access control gets 400.
		{"scoped publish token, its stream", "POST", "/whip/cam-1", bearer(cam), 400, ""},
		{"scoped publish token, another stream", "POST", "/whip/lobby", bearer(cam), 403, "may not publish"},
		{"view token cannot publish", "POST", "/whip/cam-1", bearer(viewCam), 403, "may not publish"},
		{"no token", "POST", "/whip/cam-1", nil, 401, "token required"},
		{"expired", "POST", "/whip/cam-1", bearer(expired), 401, "expired"},
		{"wrong audience", "POST", "/whip/cam-1", bearer(hsToken(t, wrongAud)), 401, "audience"},
		{"no exp", "POST", "/whip/cam-1", bearer(hsToken(t, noExp)), 401, "exp"},
		{"bad signature", "POST", "/whip/cam-1", bearer(forged), 401, "signature"},
		{"alg none", "POST", "/whip/cam-1", bearer(none), 401, ""},
		{"not a token of this gateway", "POST", "/whip/cam-1", bearer("opaque"), 401, ""},
		{"JWKS key", "POST", "/whip/lobby", bearer(everything), 400, ""},
		{"viewer, its stream, before the upgrade", "GET", "/ws/watch/lobby?token=" + viewCam, nil, 403, "may not view"},
		{"metrics without a token", "GET", "/metrics", nil, 401, ""},
		{"metrics with a view token", "GET", "/metrics", bearer(viewCam), 403, ""},
		{"api without a token", "GET", "/api/streams", nil, 401, ""},
	} {
		r := do(t, c.method, gw.base+c.path, "application/sdp", "v=0", c.hdr)
		if r.status != c.status || (c.status >= 400 && (r.errMsg == "" || !strings.Contains(r.errMsg, c.has))) {
			t.Errorf("%s: %d %q, want %d with an error holding %q", c.name, r.status, r.errMsg, c.status, c.has)
		}
	}
	res, err := testHTTP.Do(mustRequest(t, "GET", gw.base+"/metrics", admin))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("metrics with an admin token: %v %v", res, err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), `gateway_auth_refused_total{action="publish",status="401"}`) {
		t.Errorf("refusals not counted in /metrics")
	}
	if strings.Contains(string(metrics), hsSecret) || strings.Contains(string(metrics), cam) {
		t.Error("a secret or a token in /metrics")
	}

	// Real publishes with scoped tokens, and a viewer with a view token.
	video, audio := testMedia(t)
	gw.token = cam
	publish(t, gw, "cam-1", video, audio)
	gw.token = everything
	publish(t, gw, "lobby", video, audio)
	c, _, err := viewerclient.Dial(context.Background(), gw.ws+"/ws/watch/cam-1?token="+viewCam)
	if err != nil {
		t.Fatalf("viewer with a view token: %v", err)
	}
	defer c.Close()
	if m, err := c.Next(10 * time.Second); err != nil || m.Control == nil || (m.Control.Type != "init" && m.Control.Type != "waiting") {
		t.Fatalf("viewer with a view token: %+v %v", m, err)
	}

	// /api/streams: a view token sees its streams without publisher
	// addresses; admin sees everything.
	type entry struct {
		Name      string
		Publisher *struct{ RemoteAddr string }
	}
	list := func(tok string) []entry {
		t.Helper()
		res, err := testHTTP.Do(mustRequest(t, "GET", gw.base+"/api/streams", tok))
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("/api/streams: %v %v", res, err)
		}
		defer res.Body.Close()
		var out []entry
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	waitFor(t, "both streams live", 20*time.Second, func() bool { return len(list(admin)) == 2 })
	for _, e := range list(admin) {
		if e.Publisher == nil || e.Publisher.RemoteAddr == "" {
			t.Errorf("admin: %s has no publisher address", e.Name)
		}
	}
	got := list(viewCam)
	if len(got) != 1 || got[0].Name != "cam-1" || got[0].Publisher == nil || got[0].Publisher.RemoteAddr != "" {
		t.Errorf("view token for cam-*: %+v, want cam-1 without a publisher address", got)
	}
	if got := list(cam); len(got) != 0 {
		t.Errorf("a publish-only token lists %+v, want nothing", got)
	}
}

func mustRequest(t *testing.T, method, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webhookReceiver records verified deliveries.
type webhookReceiver struct {
	mu     sync.Mutex
	events []map[string]any
	bad    int
}

// TestWebhooks: a real publish, viewers and a refusal reach a receiver as
// signed Standard Webhooks deliveries, each verified with the secret.
func TestWebhooks(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	rec := &webhookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if err := webhooks.Verify(secret, r.Header, body, time.Minute, time.Now()); err != nil {
			rec.bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev map[string]any
		if json.Unmarshal(body, &ev) != nil {
			rec.bad++
		}
		rec.events = append(rec.events, ev)
	}))
	t.Cleanup(srv.Close) // after the gateway's cleanup: it delivers what is queued as it stops
	gw := startGateway(t, func(c *configs.Config) {
		c.Auth.PublishToken = "pub"
		c.Webhooks = []configs.Webhook{{URL: srv.URL, Secret: secret}}
	})
	seen := func(typ string) map[string]any {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, ev := range rec.events {
			if ev["type"] == typ {
				return ev
			}
		}
		return nil
	}
	video, audio := testMedia(t)
	p := publish(t, gw, "hooked", video, audio)
	v := watch(t, gw, "hooked")
	v.expectInit(20 * time.Second)
	if r := do(t, "POST", gw.base+"/whip/hooked", "application/sdp", "v=0", bearer("tok-xyz-123")); r.status != 403 {
		t.Fatalf("wrong token: %+v", r)
	}
	p.Close()
	for _, typ := range []string{"publish.started", "viewers.changed", "auth.refused", "publish.ended"} {
		waitFor(t, "webhook "+typ, 20*time.Second, func() bool { return seen(typ) != nil })
		data, _ := seen(typ)["data"].(map[string]any)
		if data["stream"] != "hooked" {
			t.Errorf("%s: data %v, want stream hooked", typ, data)
		}
	}
	data := seen("viewers.changed")["data"].(map[string]any)
	if data["joined"] != float64(1) {
		t.Errorf("viewers.changed: %v, want joined 1", data)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.bad != 0 {
		t.Errorf("%d deliveries failed verification", rec.bad)
	}
	for _, ev := range rec.events {
		if strings.Contains(string(must(json.Marshal(ev))), "tok-xyz-123") {
			t.Errorf("a token in a webhook: %v", ev)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
