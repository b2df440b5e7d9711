package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
)

// hookServer records the requests it gets and answers with status (or
// hangs until the client gives up when status is 0).
type hookServer struct {
	*httptest.Server
	status   atomic.Int64
	delay    atomic.Int64 // nanoseconds before answering
	requests atomic.Int64
	mu       sync.Mutex
	bodies   []map[string]string
	ctypes   []string
}

func newHookServer(t *testing.T, status int) *hookServer {
	s := &hookServer{}
	s.status.Store(int64(status))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		var body map[string]string
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("hook body %q: %v", raw, err)
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.ctypes = append(s.ctypes, r.Method+" "+r.Header.Get("Content-Type"))
		s.mu.Unlock()
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		st := int(s.status.Load())
		if st == 0 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte(strings.Repeat("x", 64<<10))) // more than is read
	}))
	t.Cleanup(s.Close)
	return s
}

func hookConfig(url string) configs.Auth {
	return configs.Auth{HTTPHook: configs.HTTPHook{URL: url, Timeout: 2 * time.Second, CacheTTL: 5 * time.Second}}
}

func TestHookRequest(t *testing.T) {
	srv := newHookServer(t, http.StatusNoContent)
	a := newAuth(t, hookConfig(srv.URL), Options{})
	if a.Open(Publish) || a.Open(View) || a.Open(Admin) {
		t.Error("an action is open with a hook")
	}
	req := Request{Action: Publish, Stream: "cam-1", Token: "opaque-token-123", RemoteIP: "198.51.100.7", Protocol: "whip", UserAgent: "obs/31"}
	check(t, a, req, 0, ViaHook)
	check(t, a, Request{Action: Admin, RemoteIP: "198.51.100.8", Protocol: "http", UserAgent: "curl"}, 0, ViaHook)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	want := []map[string]string{
		{"action": "publish", "stream": "cam-1", "token": "opaque-token-123", "remote_ip": "198.51.100.7", "protocol": "whip", "user_agent": "obs/31"},
		{"action": "admin", "stream": "", "token": "", "remote_ip": "198.51.100.8", "protocol": "http", "user_agent": "curl"},
	}
	if len(srv.bodies) != len(want) {
		t.Fatalf("%d hook requests, want %d", len(srv.bodies), len(want))
	}
	for i, w := range want {
		if fmt.Sprint(srv.bodies[i]) != fmt.Sprint(w) {
			t.Errorf("hook body %v, want %v", srv.bodies[i], w)
		}
		if srv.ctypes[i] != "POST application/json" {
			t.Errorf("hook request %q, want POST application/json", srv.ctypes[i])
		}
	}
}

func TestHookAnswers(t *testing.T) {
	for _, c := range []struct {
		hook, status int
		msg          string
	}{
		{200, 0, ""},
		{204, 0, ""},
		{401, 401, "token refused"},
		{403, 403, `not allowed to view stream "s"`},
		{404, 403, "not allowed"},
		{302, 403, "not allowed"},
		{500, 503, "authorization service unavailable"},
		{502, 503, "authorization service unavailable"},
		{429, 503, "authorization service unavailable"},
	} {
		t.Run(fmt.Sprint(c.hook), func(t *testing.T) {
			srv := newHookServer(t, c.hook)
			a := newAuth(t, hookConfig(srv.URL), Options{Logger: testLogger(&logBuf{})})
			req := Request{Action: View, Stream: "s", Token: "tok-abcdefgh", RemoteIP: "192.0.2.1"}
			if c.status == 0 {
				check(t, a, req, 0, ViaHook)
			} else {
				expectMsg(t, a, req, c.status, c.msg)
			}
		})
	}
}

// No token on a protected action: the hook is asked; its 401 is the usual
// "token required".
func TestHookNoToken(t *testing.T) {
	srv := newHookServer(t, http.StatusUnauthorized)
	a := newAuth(t, hookConfig(srv.URL), Options{})
	expectMsg(t, a, Request{Action: Publish, Stream: "s"}, 401, "publish token required")
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d hook requests, want 1", n)
	}
}

// The hook is not asked about static tokens, valid JWTs or open actions;
// it is asked about tokens that are neither (invalid JWTs included).
func TestHookOnlyWhenNothingElseDecides(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	clk := newClock()
	cfg := hookConfig(srv.URL)
	cfg.PublishToken = pubTok
	cfg.JWT.HS256 = []configs.HMACKey{{Secret: secret1}}
	cfg.PublicView = true
	a := newAuth(t, cfg, Options{Now: clk.Now})
	now := clk.Now()
	viewOnly := sign(t, jwt.SigningMethodHS256, []byte(secret1), "", claimsAt(now, &Grants{View: []string{"*"}}))
	publisher := sign(t, jwt.SigningMethodHS256, []byte(secret1), "", claimsAt(now, &Grants{Publish: []string{"*"}}))
	expired := claimsAt(now, &Grants{Publish: []string{"*"}})
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour))

	check(t, a, Request{Action: Publish, Stream: "s", Token: pubTok}, 0, ViaStatic)
	check(t, a, Request{Action: Publish, Stream: "s", Token: publisher}, 0, ViaJWT)
	check(t, a, Request{Action: Publish, Stream: "s", Token: viewOnly}, 403, "") // valid JWT: its answer stands
	check(t, a, Request{Action: View, Stream: "s", Token: "whatever"}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s"}, 0, ViaOpen)
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("%d hook requests, want none", n)
	}
	check(t, a, Request{Action: Publish, Stream: "s", Token: "opaque"}, 0, ViaHook)
	check(t, a, Request{Action: Publish, Stream: "s", Token: sign(t, jwt.SigningMethodHS256, []byte(secret1), "", expired)}, 0, ViaHook)
	check(t, a, Request{Action: Publish, Stream: "s"}, 0, ViaHook)
	if n := srv.requests.Load(); n != 3 {
		t.Errorf("%d hook requests, want 3", n)
	}
	// Too long for anything: refused without asking.
	check(t, a, Request{Action: Publish, Stream: "s", Token: strings.Repeat("x", MaxTokenLen+1)}, 401, "")
	if n := srv.requests.Load(); n != 3 {
		t.Errorf("%d hook requests, want 3", n)
	}
}

// A hook that does not answer in time is a 503; the failure is logged
// without the token, once per period.
func TestHookTimeout(t *testing.T) {
	srv := newHookServer(t, 0)
	var logs logBuf
	cfg := hookConfig(srv.URL + "/auth?key=hunter2")
	cfg.HTTPHook.Timeout = 200 * time.Millisecond
	a := newAuth(t, cfg, Options{Logger: testLogger(&logs)})
	tok := "secret-token-of-the-client"
	for i := range 3 {
		expectMsg(t, a, Request{Action: Publish, Stream: "s", Token: tok, RemoteIP: fmt.Sprint(i)}, 503, "authorization service unavailable")
	}
	out := logs.String()
	if strings.Count(out, "auth: hook failed") != 1 {
		t.Errorf("want one logged failure, got %q", out)
	}
	if strings.Contains(out, tok) || strings.Contains(out, "hunter2") {
		t.Errorf("the log has a secret: %q", out)
	}
	// Errors are not cached.
	before := srv.requests.Load()
	expectMsg(t, a, Request{Action: Publish, Stream: "s", Token: tok, RemoteIP: "0"}, 503, "")
	if srv.requests.Load() != before+1 {
		t.Error("a failed hook call was cached")
	}
}

// The caller's context ends its wait.
func TestHookCallerContext(t *testing.T) {
	srv := newHookServer(t, 0)
	a := newAuth(t, hookConfig(srv.URL), Options{Logger: testLogger(&logBuf{})})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d, err := a.Check(ctx, Request{Action: Publish, Stream: "s", Token: "t"})
	expect(t, Request{Action: Publish, Stream: "s", Token: "t"}, d, err, 503, "")
}

// Redirects are not followed.
func TestHookNoRedirect(t *testing.T) {
	other := newHookServer(t, http.StatusOK)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	a := newAuth(t, hookConfig(redirect.URL), Options{HTTPClient: &http.Client{}})
	check(t, a, Request{Action: Publish, Stream: "s", Token: "t"}, 403, "")
	if n := other.requests.Load(); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
}

// Answers, allow and deny, are cached for the TTL by (action, stream,
// token, remote address).
func TestHookCache(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	clk := newClock()
	a := newAuth(t, hookConfig(srv.URL), Options{Now: clk.Now})
	req := Request{Action: Publish, Stream: "s", Token: "t1", RemoteIP: "192.0.2.1", Protocol: "whip"}
	check(t, a, req, 0, ViaHook)
	req2 := req
	req2.Protocol, req2.UserAgent = "ws", "other" // not part of the key
	check(t, a, req2, 0, ViaHook)
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("%d hook requests for two identical checks, want 1", n)
	}
	for _, r := range []Request{
		{Action: View, Stream: "s", Token: "t1", RemoteIP: "192.0.2.1"},
		{Action: Publish, Stream: "s2", Token: "t1", RemoteIP: "192.0.2.1"},
		{Action: Publish, Stream: "s", Token: "t2", RemoteIP: "192.0.2.1"},
		{Action: Publish, Stream: "s", Token: "t1", RemoteIP: "192.0.2.2"},
	} {
		check(t, a, r, 0, ViaHook)
	}
	if n := srv.requests.Load(); n != 5 {
		t.Fatalf("%d hook requests, want 5 (one per distinct key)", n)
	}
	clk.Advance(4 * time.Second)
	check(t, a, req, 0, ViaHook)
	if n := srv.requests.Load(); n != 5 {
		t.Fatalf("%d hook requests before the TTL, want 5", n)
	}
	// Past the TTL the hook is asked again; now it refuses, and that is
	// cached too.
	clk.Advance(1100 * time.Millisecond)
	srv.status.Store(http.StatusForbidden)
	check(t, a, req, 403, "")
	srv.status.Store(http.StatusOK)
	check(t, a, req, 403, "")
	if n := srv.requests.Load(); n != 6 {
		t.Fatalf("%d hook requests, want 6", n)
	}
}

// Without a TTL nothing is cached.
func TestHookNoCache(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	cfg := hookConfig(srv.URL)
	cfg.HTTPHook.CacheTTL = 0
	a := newAuth(t, cfg, Options{})
	req := Request{Action: Publish, Stream: "s", Token: "t1"}
	check(t, a, req, 0, ViaHook)
	check(t, a, req, 0, ViaHook)
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d hook requests, want 2", n)
	}
}

// Identical concurrent checks share one hook request.
func TestHookCoalesce(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	srv.delay.Store(int64(100 * time.Millisecond))
	clk := newClock()
	a := newAuth(t, hookConfig(srv.URL), Options{Now: clk.Now})
	req := Request{Action: View, Stream: "s", Token: "t", RemoteIP: "192.0.2.1"}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			d, err := a.Check(context.Background(), req)
			expect(t, req, d, err, 0, ViaHook)
		})
	}
	wg.Wait()
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d hook requests for 100 concurrent identical checks, want 1", n)
	}
}

// The cache stays bounded.
func TestHookCacheBound(t *testing.T) {
	clk := newClock()
	a := newAuth(t, hookConfig("http://127.0.0.1:1/"), Options{Now: clk.Now})
	h := a.hook
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range maxHookCache * 3 {
		h.store(hookKey{stream: fmt.Sprint(i)}, hookEntry{expires: clk.Now().Add(time.Minute)})
		if len(h.cache) > maxHookCache {
			t.Fatalf("%d cached answers", len(h.cache))
		}
	}
	// Expired entries go first.
	for i := 0; len(h.cache) < maxHookCache; i++ {
		h.store(hookKey{stream: fmt.Sprint("fill", i)}, hookEntry{expires: clk.Now().Add(time.Minute)})
	}
	clk.Advance(2 * time.Minute)
	h.store(hookKey{stream: "new"}, hookEntry{expires: clk.Now().Add(time.Minute)})
	if len(h.cache) != 1 {
		t.Errorf("%d cached answers after the others expired, want 1", len(h.cache))
	}
}

func TestRateLog(t *testing.T) {
	r := rateLog{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{30 * time.Second, true, 1},
	} {
		ok, n := r.take(t0.Add(c.at))
		if ok != c.ok || n != c.suppressed {
			t.Errorf("at %v: %v %d, want %v %d", c.at, ok, n, c.ok, c.suppressed)
		}
	}
}
