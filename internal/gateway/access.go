package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mseway/mseway/auth"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/ratelog"
	"github.com/mseway/mseway/webhooks"
)

// access applies the auth package's decisions at every door of the
// gateway, logs and counts refusals, and reports them to the webhooks.
type access struct {
	az    atomic.Pointer[auth.Authorizer] // swapped by a config reload
	hooks *webhooks.Sender
	log   *slog.Logger

	refused  sync.Map // "action/status" -> *atomic.Int64
	logLimit ratelog.Limiter
}

func newAccess(authz *auth.Authorizer, hooks *webhooks.Sender, log *slog.Logger) *access {
	a := &access{hooks: hooks, log: log}
	a.az.Store(authz)
	return a
}

// authz is the Authorizer in effect.
func (a *access) authz() *auth.Authorizer { return a.az.Load() }

// swap puts authz in effect and returns the one it replaces.
func (a *access) swap(authz *auth.Authorizer) *auth.Authorizer { return a.az.Swap(authz) }

// protocolOf names the door a request came through, for the auth hook.
func protocolOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/whip/"):
		return "whip"
	case strings.HasPrefix(p, "/ws/publish/"):
		return "ws"
	case strings.HasPrefix(p, "/ws/watch/"):
		return "mse"
	}
	return "http"
}

// check decides r for action on stream; a refusal is logged (at most one
// line a second), counted and sent to the webhooks.
func (a *access) check(r *http.Request, action auth.Action, stream string) (auth.Decision, error) {
	ip := httpapi.ClientIP(r)
	d, err := a.authz().Check(r.Context(), auth.Request{
		Action: action, Stream: stream, Token: httpapi.Token(r), RemoteIP: ip,
		Protocol: protocolOf(r), UserAgent: r.UserAgent(),
	})
	if err == nil {
		return d, nil
	}
	status := http.StatusInternalServerError
	if he, ok := errors.AsType[*httpapi.Error](err); ok {
		status = he.Status
	}
	key := fmt.Sprintf("%s/%d", action, status)
	c, _ := a.refused.LoadOrStore(key, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	a.logRefusal(action, stream, ip, status, err)
	a.hooks.Emit(webhooks.Event{Type: "auth.refused", Stream: stream, Data: map[string]any{
		"action": string(action), "status": status, "remote_ip": ip, "protocol": protocolOf(r), "reason": err.Error(),
	}})
	return d, err
}

func (a *access) logRefusal(action auth.Action, stream, ip string, status int, err error) {
	if ok, held := a.logLimit.Allow(); ok {
		a.log.Warn("request refused", "action", action, "stream", stream, "client", ip, "status", status, "reason", err.Error(), "refusals_not_logged", held)
	}
}

// publish is signaling's Authorize: credential reports that a token or the
// hook granted it (a takeover needs one).
func (a *access) publish(r *http.Request, stream string) (bool, error) {
	d, err := a.check(r, auth.Publish, stream)
	return d.Credential, err
}

// view is the viewer socket's Authorize.
func (a *access) view(r *http.Request, stream string) error {
	_, err := a.check(r, auth.View, stream)
	return err
}

// admin guards the operator endpoints (/metrics, full /api/streams).
func (a *access) admin(r *http.Request) error {
	_, err := a.check(r, auth.Admin, "")
	return err
}

// streamsFor is /api/streams as r may see it: everything for admin (and
// for anyone when nothing is configured); for others the streams they may
// view, without publisher addresses and viewer reports. A request that may
// view none and has no valid credential gets its 401 (or the hook's 503).
func (a *access) streamsFor(r *http.Request, all []mseout.StreamInfo) ([]mseout.StreamInfo, error) {
	ctx := r.Context()
	if _, err := a.authz().Check(ctx, a.request(r, auth.Admin, "")); err == nil {
		return all, nil
	} else if he, ok := errors.AsType[*httpapi.Error](err); ok && he.Status == http.StatusServiceUnavailable {
		return nil, err // the hook is down
	}
	out := make([]mseout.StreamInfo, 0, len(all))
	for _, s := range all {
		if !a.authz().Open(auth.View) {
			if _, err := a.authz().Check(ctx, a.request(r, auth.View, s.Name)); err != nil {
				if he, ok := errors.AsType[*httpapi.Error](err); ok && he.Status == http.StatusServiceUnavailable {
					return nil, err // the hook is down: one timeout, not one per stream
				}
				continue
			}
		}
		if s.Publisher != nil {
			p := *s.Publisher
			p.RemoteAddr = ""
			s.Publisher = &p
		}
		s.ViewerStats = nil
		out = append(out, s)
	}
	if len(out) == 0 && !a.authz().Open(auth.View) {
		// "" names no stream: a valid credential without a view grant
		// gets 403 here (an empty list is its answer); none gets 401.
		if _, err := a.authz().Check(ctx, a.request(r, auth.View, "")); err != nil {
			if he, ok := errors.AsType[*httpapi.Error](err); !ok || he.Status != http.StatusForbidden {
				return nil, err
			}
		}
	}
	return out, nil
}

func (a *access) request(r *http.Request, action auth.Action, stream string) auth.Request {
	return auth.Request{Action: action, Stream: stream, Token: httpapi.Token(r), RemoteIP: httpapi.ClientIP(r), Protocol: "http", UserAgent: r.UserAgent()}
}

// securityHeaders sets what every answer carries: no Referer leaves a page
// (tokens travel in page URLs), and no type sniffing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
