package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mseway/mseway/auth"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/guard"
)

// What a reload applies to a running gateway (Reload). Every other key
// needs a restart: a reload that changes one logs it and keeps the value
// the gateway runs with.
//
//   - auth (every key): new requests are decided by the new tokens, keys,
//     hook and origins; sessions already admitted (a playing viewer, a live
//     publish) are not asked again.
//   - limits, except max_body_bytes and max_pending_publishes(_per_ip):
//     viewer and stream caps, connection caps, the request rate. What is
//     already admitted stays when it is over a new cap.
//   - stream_defaults and streams: used by streams that start after the
//     reload (a stream keeps the settings it started with until it ends
//     and no viewer waits on it).
//   - drain_delay.
//   - tls_cert and tls_key: the pair is re-read (also when the names did
//     not change) and served to new handshakes.
var (
	liveKeys = []string{"auth", "limits", "stream_defaults", "streams", "drain_delay", "tls_cert", "tls_key"}
	// limits that are fixed at start (the signaling's).
	restartLimits = []string{"max_body_bytes", "max_pending_publishes", "max_pending_publishes_per_ip"}
)

// Reload applies cfg (loaded and validated by configs, checked by Check)
// to the running gateway without touching live sessions; see liveKeys for
// what it applies. Everything it needs is built first: when something fails
// (a key pair that does not load, auth keys that cannot be used) nothing is
// changed and the error says why. changed lists the keys applied (names
// only, never values); keys that need a restart are logged, not applied.
func (g *Gateway) Reload(cfg *configs.Config) (changed []string, err error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.draining.Load() {
		return nil, errors.New("reload: the gateway is shutting down")
	}
	old := g.live.Load()
	next := *cfg
	restart := keepRestartKeys(old, &next)

	// Build.
	var authz *auth.Authorizer
	if !reflect.DeepEqual(old.Auth, next.Auth) {
		if authz, err = auth.New(context.Background(), next.Auth, auth.Options{Logger: g.log}); err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
	}
	var (
		cert *tls.Certificate
		st   pairStamp
	)
	if g.certs != nil {
		if cert, st, err = loadPair(next.TLSCert, next.TLSKey, time.Now()); err != nil {
			authz.Close()
			return nil, fmt.Errorf("reload: %w", err)
		}
	}

	// Diff.
	changed = append(changed, diffFields("auth", old.Auth, next.Auth)...)
	limits := diffFields("limits", old.Limits, next.Limits)
	changed = append(changed, limits...)
	if !reflect.DeepEqual(old.StreamDefaults, next.StreamDefaults) {
		changed = append(changed, "stream_defaults")
	}
	for _, name := range unionKeys(old.Streams, next.Streams) {
		o, ok1 := old.Streams[name]
		n, ok2 := next.Streams[name]
		if ok1 != ok2 || o != n {
			changed = append(changed, "streams."+name)
		}
	}
	if old.DrainDelay != next.DrainDelay {
		changed = append(changed, "drain_delay")
	}
	if cert != nil {
		of, ok := g.certs.files()
		served := g.certs.cert.Load()
		if of != next.TLSCert || ok != next.TLSKey || !bytes.Equal(served.Certificate[0], cert.Certificate[0]) {
			changed = append(changed, "tls_cert", "tls_key")
		}
	}

	// Apply.
	g.live.Store(&next)
	if authz != nil {
		g.access.swap(authz).Close()
		g.origins.Set(next.Auth.AllowedOrigins)
	}
	if len(limits) > 0 {
		g.registry.SetLimits(next.Limits)
		l := next.Limits
		g.guard.SetLimits(guard.Options{
			MaxConns: l.MaxConns, MaxConnsPerIP: l.MaxConnsPerIP,
			RequestsPerSecondPerIP: l.RequestsPerSecondPerIP, RequestBurstPerIP: l.RequestBurstPerIP,
		})
	}
	if cert != nil {
		g.certs.set(next.TLSCert, next.TLSKey, cert, st)
	}
	if len(restart) > 0 {
		g.log.Warn("config reload: these keys changed but need a restart; the gateway keeps running with their old values", "keys", strings.Join(restart, ","))
	}
	g.log.Info("config reloaded", "changed", strings.Join(changed, ","))
	return changed, nil
}

// keepRestartKeys sets next's keys that a reload cannot apply to old's
// values and returns the names of those that differed.
func keepRestartKeys(old, next *configs.Config) (differed []string) {
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem()
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := yamlKey(f)
		switch {
		case f.Name == "RawStreams" || f.Name == "RawSources":
			continue // parsed into Streams and Sources
		case f.Name == "Sources":
			key = "sources"
		case slices.Contains(liveKeys, key), f.Name == "Streams":
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			differed = append(differed, key)
			nv.Field(i).Set(ov.Field(i))
		}
	}
	lo, ln := reflect.ValueOf(&old.Limits).Elem(), reflect.ValueOf(&next.Limits).Elem()
	for i := range lo.NumField() {
		key := yamlKey(lo.Type().Field(i))
		if slices.Contains(restartLimits, key) && !lo.Field(i).Equal(ln.Field(i)) {
			differed = append(differed, "limits."+key)
			ln.Field(i).Set(lo.Field(i))
		}
	}
	// TLS on or off needs a restart (another listener); new files do not.
	if (old.TLSCert == "") != (next.TLSCert == "") {
		differed = append(differed, "tls_cert", "tls_key")
		next.TLSCert, next.TLSKey = old.TLSCert, old.TLSKey
	}
	return differed
}

// diffFields names the fields of two structs of one type that differ, as
// prefix.yaml_key.
func diffFields(prefix string, a, b any) []string {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range av.NumField() {
		if !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			out = append(out, prefix+"."+yamlKey(av.Type().Field(i)))
		}
	}
	return out
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "" {
		return strings.ToLower(f.Name)
	}
	return k
}

func unionKeys[V any](a, b map[string]V) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
