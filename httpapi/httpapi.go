// Package httpapi holds the HTTP conventions every endpoint of the gateway
// shares (PROTOCOL.md): JSON bodies, errors as {"error": "..."} with their
// status, the stream-name check, and token extraction and comparison. It is
// a leaf: it imports nothing of ours but configs.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/mseway/mseway/configs"
)

// Error is an error with the HTTP status it answers with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error.
func Errorf(status int, msg string) error { return &Error{status, msg} }

// WriteJSON writes v as JSON with status code. A value that cannot be
// encoded (a +Inf somewhere) is a 500 with a JSON error, never a 200 with an
// empty body.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": "internal error: the answer could not be encoded"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError writes {"error": msg} with status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}

// Fail writes err as a JSON error: its status and message when it is an
// *Error, a 500 that says nothing more otherwise (internal details stay in
// the logs).
func Fail(w http.ResponseWriter, err error) {
	if he, ok := errors.AsType[*Error](err); ok {
		WriteError(w, he.Status, he.Msg)
		return
	}
	WriteError(w, http.StatusInternalServerError, "internal error")
}

// StreamName checks a stream name from a URL: nil, or a 400 *Error.
func StreamName(name string) error {
	if !configs.ValidStreamName(name) {
		return Errorf(http.StatusBadRequest, "invalid stream name: 1-64 characters of [A-Za-z0-9._-], not . or ..")
	}
	return nil
}

// Token returns the token a request presents: Authorization: Bearer, or
// the token query parameter (browsers cannot set headers on a WebSocket).
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, val, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			if t := strings.TrimSpace(val); t != "" {
				return t
			}
		}
	}
	return r.URL.Query().Get("token")
}

// CheckToken compares a presented token with the configured one in
// constant time: nil when want is empty or they match, a 401 *Error when
// none was presented, a 403 *Error when it is wrong. what names the token
// in the message ("publish", "view").
func CheckToken(got, want, what string) error {
	switch {
	case want == "":
		return nil
	case got == "":
		return Errorf(http.StatusUnauthorized, what+" token required (Authorization: Bearer <token>, or ?token= on a WebSocket)")
	case subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
		return Errorf(http.StatusForbidden, "wrong "+what+" token")
	}
	return nil
}

type clientIPKey struct{}

// WithClientIP returns r with ip recorded as the client's address (what a
// trusted proxy says it is, or the connection's peer).
func WithClientIP(r *http.Request, ip string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip))
}

// ClientIP is the client's address: the one recorded by WithClientIP, else
// the host of the connection's remote address.
func ClientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Origins is the browser-origin policy of auth.allowed_origins: with no
// list every origin is allowed (tokens decide); with one, only the listed
// origins and the gateway's own. A nil *Origins allows every origin.
type Origins struct {
	allowed atomic.Pointer[map[string]bool] // nil: every origin (NewLiveOrigins with no list)
	also    func(origin string) bool
}

// AlsoAllow adds origins decided by fn (e.g. the other nodes of a cluster,
// which change). Call it before serving. On a nil *Origins (every origin
// allowed) it does nothing.
func (o *Origins) AlsoAllow(fn func(origin string) bool) {
	if o != nil {
		o.also = fn
	}
}

// NewOrigins returns the policy for a list of serialized origins
// (scheme://host[:port], validated by configs).
func NewOrigins(list []string) *Origins {
	if len(list) == 0 {
		return nil
	}
	o := &Origins{}
	o.Set(list)
	return o
}

// NewLiveOrigins is NewOrigins for a policy that Set changes later (a
// config reload): never nil, it allows every origin while its list is
// empty.
func NewLiveOrigins(list []string) *Origins {
	o := &Origins{}
	o.Set(list)
	return o
}

// Set replaces the list; an empty one allows every origin. Safe while
// requests are being decided.
func (o *Origins) Set(list []string) {
	if len(list) == 0 {
		o.allowed.Store(nil)
		return
	}
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[strings.ToLower(s)] = true
	}
	o.allowed.Store(&m)
}

// open reports whether every origin is allowed.
func (o *Origins) open() bool { return o == nil || o.allowed.Load() == nil }

// Allowed reports whether r may be answered: no Origin header (not a
// browser, or a same-origin GET), the gateway's own origin, or a listed one.
func (o *Origins) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o == nil {
		return true
	}
	allowed := o.allowed.Load()
	if allowed == nil || (*allowed)[strings.ToLower(origin)] || (o.also != nil && o.also(origin)) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// AllowOrigin is the Access-Control-Allow-Origin value for r: "*" with no
// list, r's origin when it is allowed, "" (send none) otherwise.
func (o *Origins) AllowOrigin(r *http.Request) string {
	if o.open() {
		return "*"
	}
	origin := r.Header.Get("Origin")
	if origin != "" && o.Allowed(r) {
		return origin
	}
	return ""
}

// SetCORS sets Access-Control-Allow-Origin for r by the policy (and Vary:
// Origin when the answer depends on it).
func (o *Origins) SetCORS(w http.ResponseWriter, r *http.Request) {
	if v := o.AllowOrigin(r); v != "" {
		w.Header().Set("Access-Control-Allow-Origin", v)
	}
	if !o.open() {
		w.Header().Add("Vary", "Origin")
	}
}

// AddrGroup is what per-address limits count a client under: its IPv4
// address, or the /64 its IPv6 address is in (one subscriber's allocation,
// RFC 6177: whoever has one address of a /64 has 2^64 of them).
func AddrGroup(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// AddressGroup is AddrGroup for an address as text; text that is not an
// address is its own group.
func AddressGroup(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return AddrGroup(a).String()
}
