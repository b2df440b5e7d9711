package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
)

// Action is what a request wants to do.
type Action string

// The actions of the protocol.
const (
	Publish Action = "publish"
	View    Action = "view"
	Admin   Action = "admin"
)

func (a Action) valid() bool { return a == Publish || a == View || a == Admin }

// Request is one thing to decide. Stream is empty for Admin.
type Request struct {
	Action    Action
	Stream    string
	Token     string // as presented (httpapi.Token(r)); may be empty
	RemoteIP  string
	Protocol  string // "whip", "ws", "mse", "http"
	UserAgent string
}

// Decision says how a request was allowed.
type Decision struct {
	// Credential is true when a token (static, JWT) or the hook granted the
	// request; false when the action is open to anyone. Taking over a live
	// stream needs a credential.
	Credential bool
	// Via names what granted it for logs: "open", "static", "jwt", "hook".
	Via string
	// Subject is the JWT "sub" (empty otherwise), for logs.
	Subject string
}

// The values of Decision.Via.
const (
	ViaOpen   = "open"
	ViaStatic = "static"
	ViaJWT    = "jwt"
	ViaHook   = "hook"
)

var openDecision = Decision{Credential: false, Via: ViaOpen}

// Options are the parts of an Authorizer that are not configuration.
type Options struct {
	// Logger gets JWKS and hook failures (rate-limited); nil = slog.Default().
	Logger *slog.Logger
	// HTTPClient is used for the hook and the JWKS; nil = a client with the
	// hook timeout. Redirects are never followed, whatever the client says.
	HTTPClient *http.Client
	// Now is the clock of JWT validation, the hook cache and the rate limits
	// (tests); nil = time.Now.
	Now func() time.Time
}

const (
	// MaxTokenLen bounds a presented token: a longer one is refused (401)
	// before any parsing.
	MaxTokenLen = 8 << 10
	// MaxPatterns bounds the patterns of one right in a JWT's grants; a
	// token with more is refused as malformed (401).
	MaxPatterns = 256

	defaultHookTimeout = 2 * time.Second
	defaultJWKSRefresh = time.Hour
)

// Authorizer decides requests. It is safe for concurrent use. A nil
// *Authorizer allows everything (every action is open).
type Authorizer struct {
	cfg configs.Auth
	log *slog.Logger
	now func() time.Time

	// Static token digests (SHA-256, so comparisons do not depend on the
	// tokens' lengths); hasX says whether the token is configured.
	publishSum, viewSum, adminSum [sha256.Size]byte
	hasPublish, hasView, hasAdmin bool

	protectPublish, protectView, protectAdmin bool

	jwtOn  bool
	parser *jwt.Parser
	hmac   []configs.HMACKey
	jwks   *jwksSource // nil without a JWKS URL
	hook   *hook       // nil without a hook URL

	client     *http.Client
	ownsClient bool

	ctx    context.Context
	cancel context.CancelFunc

	goMu   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns an Authorizer for cfg. ctx bounds the background work (the
// periodic JWKS refresh); Close also stops it. The JWKS is fetched in the
// background: an unreachable JWKS does not fail New (it is logged, retried,
// and tokens that need it are refused meanwhile). New fails only on a config
// that cannot be used safely (an empty or short HMAC secret, a bad URL).
func New(ctx context.Context, cfg configs.Auth, opts Options) (*Authorizer, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if cfg.HTTPHook.Timeout <= 0 {
		cfg.HTTPHook.Timeout = defaultHookTimeout
	}
	if cfg.HTTPHook.CacheTTL < 0 {
		cfg.HTTPHook.CacheTTL = 0
	}
	if cfg.JWT.JWKSRefresh <= 0 {
		cfg.JWT.JWKSRefresh = defaultJWKSRefresh
	}
	if cfg.JWT.Leeway < 0 {
		cfg.JWT.Leeway = 0
	}
	a := &Authorizer{cfg: cfg, log: opts.Logger, now: opts.Now}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.publishSum, a.hasPublish = digest(cfg.PublishToken)
	a.viewSum, a.hasView = digest(cfg.ViewToken)
	a.adminSum, a.hasAdmin = digest(cfg.AdminToken)

	a.jwtOn = cfg.JWT.Configured()
	hookOn := cfg.HTTPHook.URL != ""
	a.protectPublish = a.hasPublish || a.jwtOn || hookOn
	a.protectView = a.hasView || ((a.jwtOn || hookOn) && !cfg.PublicView)
	a.protectAdmin = cfg.Configured()

	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		a.client = &c
	} else {
		var rt http.RoundTripper = http.DefaultTransport
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			rt = t.Clone()
		}
		a.client = &http.Client{Transport: rt, Timeout: cfg.HTTPHook.Timeout}
		a.ownsClient = true
	}
	a.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	if ctx == nil {
		ctx = context.Background()
	}
	a.ctx, a.cancel = context.WithCancel(ctx)

	if a.jwtOn {
		a.hmac = cfg.JWT.HS256
		a.parser = a.newParser()
	}
	if cfg.JWT.JWKSURL != "" {
		s, err := newJWKSSource(a, cfg.JWT.JWKSURL, cfg.JWT.JWKSRefresh)
		if err != nil {
			a.cancel()
			return nil, err
		}
		a.jwks = s
		s.start()
	}
	if hookOn {
		a.hook = newHook(a, cfg.HTTPHook)
	}
	return a, nil
}

func checkConfig(cfg configs.Auth) error {
	if err := cfg.ValidateKeys(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

func digest(tok string) ([sha256.Size]byte, bool) {
	if tok == "" {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256([]byte(tok)), true
}

// Open reports whether action needs no token at all. An unknown action is
// never open; on a nil Authorizer every action is open.
func (a *Authorizer) Open(action Action) bool {
	if a == nil {
		return true
	}
	return action.valid() && !a.protected(action)
}

func (a *Authorizer) protected(action Action) bool {
	switch action {
	case Publish:
		return a.protectPublish
	case View:
		return a.protectView
	default:
		return a.protectAdmin
	}
}

// Close stops the background work (JWKS refresh, hook requests in flight)
// and waits for it. It is safe to call more than once, and on nil.
func (a *Authorizer) Close() {
	if a == nil {
		return
	}
	a.once.Do(func() {
		a.goMu.Lock()
		a.closed = true
		a.goMu.Unlock()
		a.cancel()
		a.wg.Wait()
		if a.ownsClient {
			a.client.CloseIdleConnections()
		}
	})
}

// spawn runs f in a goroutine that Close waits for; false once closed.
func (a *Authorizer) spawn(f func()) bool {
	a.goMu.Lock()
	defer a.goMu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

// Check decides req: a Decision when it is allowed, else an *httpapi.Error
// with 401 (no token, or one that is not a valid credential), 403 (a valid
// credential without the right, a wrong static token) or 503 (the hook could
// not be asked). The token never appears in the error. A nil Authorizer
// allows everything.
func (a *Authorizer) Check(ctx context.Context, req Request) (Decision, error) {
	if a == nil {
		return openDecision, nil
	}
	if !req.Action.valid() {
		return Decision{}, httpapi.Errorf(http.StatusForbidden, "unknown action")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if !a.protected(req.Action) {
		// Open to anyone; a token that is a valid credential for it still
		// makes the request credentialed. Anything else is ignored.
		if req.Token != "" && len(req.Token) <= MaxTokenLen {
			if d, ok := a.credential(ctx, req); ok {
				return d, nil
			}
		}
		return openDecision, nil
	}
	return a.checkProtected(ctx, req)
}

// credential reports whether req.Token is a static token or a valid JWT
// granting req (used on open actions; the hook is not asked).
func (a *Authorizer) credential(ctx context.Context, req Request) (Decision, bool) {
	if m := a.matchStatic(req.Token); m.any() {
		return Decision{Credential: true, Via: ViaStatic}, m.grants(req.Action, a.hasAdmin)
	}
	if a.jwtOn && jwtShaped(req.Token) {
		claims, err := a.parseJWT(ctx, req.Token)
		if err != nil || grantErr(claims, req) != nil {
			return Decision{}, false
		}
		return Decision{Credential: true, Via: ViaJWT, Subject: claims.Subject}, true
	}
	return Decision{}, false
}

func (a *Authorizer) checkProtected(ctx context.Context, req Request) (Decision, error) {
	tok := req.Token
	if len(tok) > MaxTokenLen {
		return Decision{}, invalidToken(reasonTooLong)
	}
	if tok != "" {
		if m := a.matchStatic(tok); m.any() {
			if m.grants(req.Action, a.hasAdmin) {
				return Decision{Credential: true, Via: ViaStatic}, nil
			}
			return Decision{}, httpapi.Errorf(http.StatusForbidden, "this token may not "+string(req.Action))
		}
		if a.jwtOn && jwtShaped(tok) {
			claims, err := a.parseJWT(ctx, tok)
			if err == nil {
				if err := grantErr(claims, req); err != nil {
					return Decision{}, err
				}
				return Decision{Credential: true, Via: ViaJWT, Subject: claims.Subject}, nil
			}
			if a.hook == nil {
				return Decision{}, err
			}
			// Not a JWT of ours: perhaps the hook knows it.
		}
	}
	if a.hook != nil {
		return a.hook.check(ctx, req)
	}
	switch {
	case tok == "":
		return Decision{}, tokenRequired(req.Action)
	case a.jwtOn:
		// Neither a static token nor a JWT.
		return Decision{}, invalidToken(reasonUnknownToken)
	default:
		// Static tokens only: the v1 answer.
		return Decision{}, httpapi.Errorf(http.StatusForbidden, "wrong "+string(req.Action)+" token")
	}
}

func tokenRequired(action Action) error {
	return httpapi.Errorf(http.StatusUnauthorized, string(action)+" token required (Authorization: Bearer <token>, or ?token= on a WebSocket)")
}

// staticMatch says which static tokens a presented token is.
type staticMatch struct{ publish, view, admin bool }

func (m staticMatch) any() bool { return m.publish || m.view || m.admin }

// grants reports whether the matched tokens grant action on any stream.
// The publish token is the admin token when none is configured.
func (m staticMatch) grants(action Action, hasAdmin bool) bool {
	switch action {
	case Publish:
		return m.publish
	case View:
		return m.view
	case Admin:
		return m.admin || (m.publish && !hasAdmin)
	}
	return false
}

// matchStatic compares tok with every configured static token, each in
// constant time and all of them whatever matched.
func (a *Authorizer) matchStatic(tok string) staticMatch {
	sum := sha256.Sum256([]byte(tok))
	p := subtle.ConstantTimeCompare(sum[:], a.publishSum[:])
	v := subtle.ConstantTimeCompare(sum[:], a.viewSum[:])
	ad := subtle.ConstantTimeCompare(sum[:], a.adminSum[:])
	return staticMatch{
		publish: a.hasPublish && p == 1,
		view:    a.hasView && v == 1,
		admin:   a.hasAdmin && ad == 1,
	}
}

// jwtShaped reports whether tok has the shape of a compact JWS: exactly two
// dots.
func jwtShaped(tok string) bool { return strings.Count(tok, ".") == 2 }

// asHTTPError is errors.As for *httpapi.Error.
func asHTTPError(err error) (*httpapi.Error, bool) {
	var he *httpapi.Error
	ok := errors.As(err, &he)
	return he, ok
}
