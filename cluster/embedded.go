package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/ratelog"
)

// clusterName is the NATS cluster name of embedded servers: every gateway's
// embedded server must use the same one to route to the others.
const clusterName = "mseway"

// embedded is an in-process nats-server with JetStream.
type embedded struct {
	srv     *server.Server
	tmpDir  string // the store directory made by start, removed by stop
	clients string // the URL this node connects to
}

// startEmbedded starts the server of cfg.Embedded named name and waits until
// it accepts clients. Port 0 in a listen address means a random port. log is
// the server's logger. The client port requires cfg's user/password or
// token when set; the route port requires the embedded route user/password
// when set; both use TLS when the embedded certificate is set.
func startEmbedded(ctx context.Context, cfg configs.Cluster, name string, log *slog.Logger) (*embedded, error) {
	if err := cfg.ValidateEmbedded(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	ec := cfg.Embedded
	host, port, err := splitListen(ec.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.embedded.listen: %w", err)
	}
	e := &embedded{}
	o := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   ec.StoreDir,
		NoSigs:     true, // the gateway owns the process's signals
	}
	switch {
	case cfg.User != "":
		o.Username, o.Password = cfg.User, cfg.Password
	case cfg.Token != "":
		o.Authorization = cfg.Token
	}
	if ec.TLS() {
		if o.TLSConfig, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: ec.TLSCert, KeyFile: ec.TLSKey}); err != nil {
			return nil, fmt.Errorf("cluster.embedded.tls_cert, tls_key: %w", err)
		}
		o.TLS, o.TLSTimeout = true, tlsTimeout
	}
	if ec.ClusterListen != "" || len(ec.Routes) > 0 {
		// Routes but no cluster port: nats-server listens for routes on
		// a random port of the client port's host.
		ch, cp := host, -1
		if ec.ClusterListen != "" {
			if ch, cp, err = splitListen(ec.ClusterListen); err != nil {
				return nil, fmt.Errorf("cluster.embedded.cluster_listen: %w", err)
			}
		}
		o.Cluster = server.ClusterOpts{Name: clusterName, Host: ch, Port: cp, Username: ec.RouteUser, Password: ec.RoutePassword}
		if ec.TLS() {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: ec.TLSCert, KeyFile: ec.TLSKey, CaFile: ec.TLSCA, Verify: true})
			if err != nil {
				return nil, fmt.Errorf("cluster.embedded.tls_cert, tls_key, tls_ca: %w", err)
			}
			// A route is both client and server: peers are checked
			// against the CA either way, as nats-server's own config
			// does for cluster TLS.
			tc.ClientAuth, tc.RootCAs = tls.RequireAndVerifyClientCert, tc.ClientCAs
			o.Cluster.TLSConfig, o.Cluster.TLSTimeout = tc, tlsTimeout
		}
		if o.Routes, err = routeURLs(ec); err != nil {
			return nil, err
		}
	}
	if o.StoreDir == "" {
		if e.tmpDir, err = os.MkdirTemp("", "mseway-nats-"); err != nil {
			return nil, fmt.Errorf("cluster: embedded NATS store: %w", err)
		}
		o.StoreDir = e.tmpDir
	}
	lg := newNATSLogger(log, cfg.Password, cfg.Token, ec.RoutePassword)
	srv, err := server.NewServer(o)
	if err != nil {
		e.removeTmp()
		return nil, fmt.Errorf("cluster: embedded NATS: %w", redactedError{err, lg.secrets})
	}
	srv.SetLoggerV2(lg, false, false, false)
	srv.Start()
	wait := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		e.removeTmp()
		return nil, errors.New("cluster: embedded NATS did not start (is the listen or cluster port in use?)")
	}
	e.srv = srv
	e.clients = clientURL(srv, ec.TLS())
	return e, nil
}

// tlsTimeout is the embedded server's TLS handshake timeout, in seconds.
const tlsTimeout = 2

// routeURLs parses the embedded server's routes, each with the route user
// and password unless it has a user of its own.
func routeURLs(ec configs.EmbeddedNATS) ([]*url.URL, error) {
	var us []*url.URL
	for i, r := range ec.Routes {
		u, err := url.Parse(r)
		if err != nil {
			// url.Error quotes the URL, password and all.
			return nil, fmt.Errorf("cluster.embedded.routes[%d]: %q does not parse", i, configs.RedactURL(r))
		}
		if u.User == nil && ec.RouteUser != "" {
			u.User = url.UserPassword(ec.RouteUser, ec.RoutePassword)
		}
		us = append(us, u)
	}
	return us, nil
}

// clientURL is the server's client URL, on loopback when it listens on every
// address; tls:// when the client port uses TLS.
func clientURL(srv *server.Server, useTLS bool) string {
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		return srv.ClientURL()
	}
	ip := addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if addr.IP != nil && addr.IP.To4() == nil {
			ip = net.IPv6loopback
		}
	}
	scheme := "nats"
	if useTLS {
		scheme = "tls"
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))}).String()
}

func (e *embedded) stop() {
	if e == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.removeTmp()
}

func (e *embedded) removeTmp() {
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

// splitListen parses host:port; port 0 is nats-server's random port (-1).
func splitListen(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", hp)
	}
	if port == 0 {
		port = -1
	}
	return h, port, nil
}

// natsLogger passes the embedded server's log to slog: notices (start,
// routes) at debug, warnings and errors as they are but a line every few
// seconds at most (a dead peer's route fails every second). Every line is
// scrubbed of the configured secrets and of URLs' user information.
type natsLogger struct {
	l       *slog.Logger
	limiter *ratelog.Limiter
	secrets []string
}

func newNATSLogger(l *slog.Logger, secrets ...string) natsLogger {
	g := natsLogger{l: l, limiter: &ratelog.Limiter{Every: 5 * time.Second}}
	for _, s := range secrets {
		if s != "" {
			g.secrets = append(g.secrets, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	return g
}

func (g natsLogger) Noticef(f string, v ...any) { g.l.Debug(g.line(f, v)) }
func (g natsLogger) Warnf(f string, v ...any) {
	if strings.HasPrefix(f, "Plaintext passwords detected") {
		// The passwords come from the gateway's own config, where they
		// are in plain text anyway: nothing for the reader to do.
		g.l.Debug(g.line(f, v))
		return
	}
	g.limited(slog.LevelWarn, f, v)
}
func (g natsLogger) Fatalf(f string, v ...any) { g.l.Error(g.line(f, v)) }
func (g natsLogger) Errorf(f string, v ...any) { g.limited(slog.LevelError, f, v) }
func (g natsLogger) Debugf(f string, v ...any) {}
func (g natsLogger) Tracef(f string, v ...any) {}

func (g natsLogger) limited(level slog.Level, f string, v []any) {
	if ok, held := g.limiter.Allow(); ok {
		g.l.Log(context.Background(), level, g.line(f, v), "held_back", held)
	} else {
		g.l.Debug(g.line(f, v))
	}
}

// userinfoRE matches the user information of a URL: scheme://user[:pass]@.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@`)

func (g natsLogger) line(f string, v []any) string {
	return redact(fmt.Sprintf(f, v...), g.secrets)
}

// redact hides URLs' user information and the secrets in s.
func redact(s string, secrets []string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}redacted@")
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return s
}

// redactedError is err with its message redacted (it may quote a route URL).
type redactedError struct {
	err     error
	secrets []string
}

func (r redactedError) Error() string { return redact(r.err.Error(), r.secrets) }
func (r redactedError) Unwrap() error { return r.err }
