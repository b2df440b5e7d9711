package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
)

const (
	// maxHookBody is how much of a hook's answer is read (and discarded).
	maxHookBody = 4 << 10
	// maxHookCache bounds the cached hook answers.
	maxHookCache = 10_000
	// logEvery is the least time between two logs of the same failure.
	logEvery = 10 * time.Second
)

// hookBody is what the hook gets, as JSON.
type hookBody struct {
	Action    Action `json:"action"`
	Stream    string `json:"stream"`
	Token     string `json:"token"`
	RemoteIP  string `json:"remote_ip"`
	Protocol  string `json:"protocol"`
	UserAgent string `json:"user_agent"`
}

// hookKey identifies a cached answer; the token is kept as its digest.
type hookKey struct {
	action   Action
	stream   string
	token    [sha256.Size]byte
	remoteIP string
}

// hookAnswer is a decided request: status 0 = allowed, else the refusal.
type hookAnswer struct {
	status int
	msg    string
}

func refuse(err error) hookAnswer {
	if he, ok := asHTTPError(err); ok {
		return hookAnswer{status: he.Status, msg: he.Msg}
	}
	return unavailable
}

var unavailable = hookAnswer{status: http.StatusServiceUnavailable, msg: "authorization service unavailable"}

type hookEntry struct {
	answer  hookAnswer
	expires time.Time
}

type hookCall struct {
	done   chan struct{}
	answer hookAnswer
}

// hook asks an HTTP service about requests that no token of ours decides.
// Answers (allow and deny) are cached for the TTL; identical concurrent
// requests share one call.
type hook struct {
	a       *Authorizer
	url     string
	logURL  string
	timeout time.Duration
	ttl     time.Duration
	warn    rateLog

	mu    sync.Mutex
	cache map[hookKey]hookEntry
	calls map[hookKey]*hookCall
}

func newHook(a *Authorizer, cfg configs.HTTPHook) *hook {
	return &hook{
		a:       a,
		url:     cfg.URL,
		logURL:  redactURL(cfg.URL),
		timeout: cfg.Timeout,
		ttl:     cfg.CacheTTL,
		warn:    rateLog{every: logEvery},
		cache:   map[hookKey]hookEntry{},
		calls:   map[hookKey]*hookCall{},
	}
}

func (h *hook) check(ctx context.Context, req Request) (Decision, error) {
	key := hookKey{action: req.Action, stream: req.Stream, token: sha256.Sum256([]byte(req.Token)), remoteIP: req.RemoteIP}
	h.mu.Lock()
	if e, ok := h.cache[key]; ok {
		if h.a.now().Before(e.expires) {
			h.mu.Unlock()
			return e.answer.decision()
		}
		delete(h.cache, key)
	}
	c, ok := h.calls[key]
	if !ok {
		c = &hookCall{done: make(chan struct{})}
		h.calls[key] = c
		if !h.a.spawn(func() { h.call(key, req, c) }) {
			delete(h.calls, key)
			h.mu.Unlock()
			return unavailable.decision()
		}
	}
	h.mu.Unlock()
	select {
	case <-c.done:
		return c.answer.decision()
	case <-ctx.Done():
		return unavailable.decision()
	}
}

func (a hookAnswer) decision() (Decision, error) {
	if a.status != 0 {
		// A fresh error each time: callers get no shared value.
		return Decision{}, httpapi.Errorf(a.status, a.msg)
	}
	return Decision{Credential: true, Via: ViaHook}, nil
}

// call asks the hook, records the answer (cached unless the hook could not
// be asked) and wakes the waiters.
func (h *hook) call(key hookKey, req Request, c *hookCall) {
	answer, cacheable := h.ask(req)
	h.mu.Lock()
	delete(h.calls, key)
	if cacheable && h.ttl > 0 {
		h.store(key, hookEntry{answer: answer, expires: h.a.now().Add(h.ttl)})
	}
	c.answer = answer
	h.mu.Unlock()
	close(c.done)
}

// store caches an answer, making room when the cache is full: expired
// entries first, then arbitrary ones (a tenth of the cache, so that a full
// cache is not swept on every call). h.mu is held.
func (h *hook) store(key hookKey, e hookEntry) {
	if len(h.cache) >= maxHookCache {
		now := h.a.now()
		for k, old := range h.cache {
			if !now.Before(old.expires) {
				delete(h.cache, k)
			}
		}
		for k := range h.cache {
			if len(h.cache) < maxHookCache-maxHookCache/10 {
				break
			}
			delete(h.cache, k)
		}
	}
	h.cache[key] = e
}

// ask POSTs the request to the hook: 2xx allows, 401 is a 401, 5xx, 429 and
// no answer within the timeout are a 503 (not cached), anything else a 403.
func (h *hook) ask(req Request) (hookAnswer, bool) {
	body, err := json.Marshal(hookBody{
		Action: req.Action, Stream: req.Stream, Token: req.Token,
		RemoteIP: req.RemoteIP, Protocol: req.Protocol, UserAgent: req.UserAgent,
	})
	if err != nil {
		return unavailable, false
	}
	ctx, cancel := context.WithTimeout(h.a.ctx, h.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		h.fail("bad request", err)
		return unavailable, false
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	resp, err := h.a.client.Do(hr)
	if err != nil {
		h.fail("no answer", transportErr(err))
		return unavailable, false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHookBody))
	_ = resp.Body.Close()
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		return hookAnswer{}, true
	case st == http.StatusUnauthorized:
		if req.Token == "" {
			return refuse(tokenRequired(req.Action)), true
		}
		return hookAnswer{status: http.StatusUnauthorized, msg: "token refused"}, true
	case st >= 500 || st == http.StatusTooManyRequests:
		h.fail("status "+http.StatusText(st), nil, "status", st)
		return unavailable, false
	default:
		msg := "not allowed to " + string(req.Action)
		if req.Action != Admin {
			msg += " stream " + quote(req.Stream)
		}
		return hookAnswer{status: http.StatusForbidden, msg: msg}, true
	}
}

// fail logs a hook failure, rate-limited. Never the token: it is only in
// the request body.
func (h *hook) fail(what string, err error, args ...any) {
	ok, suppressed := h.warn.take(h.a.now())
	if !ok {
		return
	}
	args = append(args, "url", h.logURL, "suppressed", suppressed)
	if err != nil {
		args = append(args, "error", err)
	}
	h.a.log.Warn("auth: hook failed ("+what+"); refusing with 503", args...)
}

// rateLog lets one log through per period and counts the others.
type rateLog struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	logged     bool
	suppressed int
}

// take reports whether to log now, and how many were suppressed since the
// last log.
func (r *rateLog) take(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged && now.Sub(r.last) < r.every && now.Sub(r.last) >= 0 {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.logged, r.suppressed = now, true, 0
	return true, n
}
