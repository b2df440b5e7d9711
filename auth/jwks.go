package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// maxJWKSBytes bounds a JWKS document.
	maxJWKSBytes = 1 << 20
	// jwksFetchTimeout bounds one JWKS fetch (the HTTP client's own timeout
	// may be shorter).
	jwksFetchTimeout = 10 * time.Second
	// unknownKIDEvery is how often a token naming an unknown kid may cause a
	// JWKS fetch (besides the periodic refresh).
	unknownKIDEvery = time.Minute
	// jwksRetryMin and jwksRetryMax bound the backoff of the retries after
	// a failed fetch (never more than the refresh interval).
	jwksRetryMin = time.Second
	jwksRetryMax = time.Minute
)

// jwksSource holds the keys of the JWKS URL: fetched in the background at
// start and every refresh interval (sooner after failures), and again,
// rate-limited, when a token names a kid it does not know. Concurrent
// fetches are coalesced into one.
type jwksSource struct {
	a       *Authorizer
	url     string
	logURL  string
	refresh time.Duration
	store   *jwkset.MemoryJWKSet
	kf      keyfunc.Keyfunc
	// unknownKID limits the fetches caused by unknown kids (AllowN with the
	// Authorizer's clock).
	unknownKID *rate.Limiter
	warn       rateLog

	mu       sync.Mutex
	inflight *fetchCall
	failing  bool
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newJWKSSource(a *Authorizer, rawURL string, refresh time.Duration) (*jwksSource, error) {
	store := jwkset.NewMemoryStorage()
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:     a.ctx,
		Storage: store,
		// Keys for signatures, or of no stated use.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: jwks: %w", err)
	}
	return &jwksSource{
		a:          a,
		url:        rawURL,
		logURL:     redactURL(rawURL),
		refresh:    refresh,
		store:      store,
		kf:         kf,
		unknownKID: rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		warn:       rateLog{every: logEvery},
	}, nil
}

// start begins the first fetch (before returning, so that a token checked
// right after New waits for it instead of causing a second one) and the
// refresh loop.
func (s *jwksSource) start() {
	s.mu.Lock()
	first := s.startLocked()
	s.mu.Unlock()
	s.a.spawn(func() { s.loop(first) })
}

func (s *jwksSource) loop(c *fetchCall) {
	ctx := s.a.ctx
	retry := jwksRetryMin
	maxRetry := min(jwksRetryMax, s.refresh)
	for {
		select {
		case <-c.done:
		case <-ctx.Done():
			return
		}
		wait := s.refresh
		if c.err != nil {
			wait = min(retry, maxRetry)
			retry = min(retry*2, maxRetry)
		} else {
			retry = jwksRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		c = s.startLocked()
		s.mu.Unlock()
	}
}

// startLocked returns the fetch in flight, starting one if there is none.
// s.mu is held.
func (s *jwksSource) startLocked() *fetchCall {
	if s.inflight != nil {
		return s.inflight
	}
	c := &fetchCall{done: make(chan struct{})}
	s.inflight = c
	ok := s.a.spawn(func() {
		err := s.fetch()
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		c.err = err
		close(c.done)
	})
	if !ok {
		s.inflight = nil
		c.err = errors.New("closed")
		close(c.done)
	}
	return c
}

// refreshUnknown fetches the JWKS again for a token naming a kid we do not
// have (or for a kid-less token while we have no keys): it joins a fetch in
// flight, else starts one if the rate limit allows. It reports whether a
// fetch succeeded.
func (s *jwksSource) refreshUnknown(ctx context.Context) bool {
	s.mu.Lock()
	c := s.inflight
	if c == nil {
		if !s.unknownKID.AllowN(s.a.now(), 1) {
			s.mu.Unlock()
			return false
		}
		c = s.startLocked()
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.err == nil
	case <-ctx.Done():
		return false
	}
}

// fetch gets the JWKS and replaces the keys. A failure keeps the keys
// there were.
func (s *jwksSource) fetch() error {
	keys, err := s.get()
	if err != nil {
		s.mu.Lock()
		s.failing = true
		s.mu.Unlock()
		if ok, suppressed := s.warn.take(s.a.now()); ok {
			s.a.log.Warn("auth: JWKS fetch failed; tokens signed with its keys are refused until it succeeds",
				"url", s.logURL, "error", err, "suppressed", suppressed)
		}
		return err
	}
	// Replace (not merge): a key gone from the JWKS is revoked.
	_ = s.store.KeyReplaceAll(s.a.ctx, keys)
	s.mu.Lock()
	recovered := s.failing
	s.failing = false
	s.mu.Unlock()
	if recovered {
		s.a.log.Info("auth: JWKS fetched", "url", s.logURL, "keys", len(keys))
	}
	return nil
}

func (s *jwksSource) get() ([]jwkset.JWK, error) {
	ctx, cancel := context.WithTimeout(s.a.ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, errors.New("bad URL")
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.a.client.Do(req)
	if err != nil {
		return nil, transportErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, transportErr(err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("JWKS is not a JSON JWK set")
	}
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	for _, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		// Public parts only: a JWKS has no business holding private keys,
		// and symmetric ("oct") keys are never taken from it.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: false}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue // unsupported or invalid: skip this key only
		}
		switch jwk.Key().(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, jwk)
		}
	}
	if len(set.Keys) > 0 && len(keys) == 0 {
		if ok, suppressed := s.warn.take(s.a.now()); ok {
			s.a.log.Warn("auth: the JWKS has no usable signing key (RSA, EC P-256/384/521 or Ed25519, for sig)",
				"url", s.logURL, "keys", len(set.Keys), "suppressed", suppressed)
		}
	}
	return keys, nil
}

// key returns the verification key(s) for a token with an asymmetric alg.
func (s *jwksSource) key(ctx context.Context, t *jwt.Token, alg, kid string, hasKID bool) (any, error) {
	if hasKID {
		if _, err := s.store.KeyRead(ctx, kid); err != nil {
			if !s.refreshUnknown(ctx) {
				return nil, errUnknownKey
			}
			if _, err := s.store.KeyRead(ctx, kid); err != nil {
				return nil, errUnknownKey
			}
		}
	} else if all, _ := s.store.KeyReadAll(ctx); len(all) == 0 {
		s.refreshUnknown(ctx)
	}
	got, err := s.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, errUnknownKey
	}
	if set, ok := got.(jwt.VerificationKeySet); ok {
		keys := make([]jwt.VerificationKey, 0, len(set.Keys))
		for _, k := range set.Keys {
			if keyFits(alg, k) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, errUnknownKey
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
	if !keyFits(alg, got) {
		return nil, errAlg
	}
	return got, nil
}

// keyFits reports whether key is a public key of the type (and curve) alg
// needs.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(k) == ed25519.PublicKeySize
	}
	return false
}

// redactURL is u without credentials, query or fragment, for logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad URL)"
	}
	return p.Scheme + "://" + p.Host + p.Path
}

// transportErr drops the URL from an HTTP client error (it may carry a
// query with credentials); what remains is the cause.
func transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timeout")
	}
	return err
}
