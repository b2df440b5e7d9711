package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
)

// Close must stop every goroutine of an Authorizer (JWKS refresh, hook
// calls).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is an Options.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newAuth(t *testing.T, cfg configs.Auth, opts Options) *Authorizer {
	t.Helper()
	a, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

func testLogger(buf *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// check runs one request and compares the outcome: status 0 = allowed with
// the given via (and credential unless via is "open").
func check(t *testing.T, a *Authorizer, req Request, status int, via string) Decision {
	t.Helper()
	d, err := a.Check(context.Background(), req)
	expect(t, req, d, err, status, via)
	return d
}

func expect(t *testing.T, req Request, d Decision, err error, status int, via string) {
	t.Helper()
	name := string(req.Action) + " " + req.Stream
	if status == 0 {
		if err != nil {
			t.Errorf("%s with %s: refused (%v), want allowed via %s", name, short(req.Token), err, via)
			return
		}
		if d.Via != via || d.Credential != (via != ViaOpen) {
			t.Errorf("%s with %s: %+v, want via %s", name, short(req.Token), d, via)
		}
		return
	}
	var he *httpapi.Error
	if !errors.As(err, &he) {
		t.Errorf("%s with %s: %+v, %v; want a %d *httpapi.Error", name, short(req.Token), d, err, status)
		return
	}
	if he.Status != status {
		t.Errorf("%s with %s: %d %q, want %d", name, short(req.Token), he.Status, he.Msg, status)
	}
	if len(req.Token) >= 8 && strings.Contains(he.Msg, req.Token) {
		t.Errorf("the message gives the token away: %q", he.Msg)
	}
	if d != (Decision{}) {
		t.Errorf("a refusal with a decision: %+v", d)
	}
}

// expectMsg is check with the refusal message containing want.
func expectMsg(t *testing.T, a *Authorizer, req Request, status int, want string) {
	t.Helper()
	_, err := a.Check(context.Background(), req)
	var he *httpapi.Error
	if !errors.As(err, &he) || he.Status != status || !strings.Contains(he.Msg, want) {
		t.Errorf("%s %s with %s: %v, want %d containing %q", req.Action, req.Stream, short(req.Token), err, status, want)
	}
	if he != nil && len(req.Token) >= 8 && strings.Contains(he.Msg, req.Token) {
		t.Errorf("the message gives the token away: %q", he.Msg)
	}
}

func short(tok string) string {
	if len(tok) > 24 {
		return tok[:24] + "..."
	}
	if tok == "" {
		return "no token"
	}
	return tok
}

// sign makes a JWT with claims, the method, key and kid (none when "").
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// claimsAt are valid claims at now: sub alice, exp in an hour.
func claimsAt(now time.Time, g *Grants) *Claims {
	return &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice",
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		Mseway: g,
	}
}
