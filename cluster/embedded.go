package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
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

// startEmbedded starts the server of cfg named name and waits until it
// accepts clients. Port 0 in a listen address means a random port. log is
// the server's logger.
func startEmbedded(ctx context.Context, cfg configs.EmbeddedNATS, name string, log *slog.Logger) (*embedded, error) {
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.embedded.listen: %w", err)
	}
	e := &embedded{}
	o := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // the gateway owns the process's signals
	}
	if cfg.ClusterListen != "" || len(cfg.Routes) > 0 {
		ch, cp := host, -1 // routes but no cluster port: outbound routes only
		if cfg.ClusterListen != "" {
			if ch, cp, err = splitListen(cfg.ClusterListen); err != nil {
				return nil, fmt.Errorf("cluster.embedded.cluster_listen: %w", err)
			}
		}
		o.Cluster = server.ClusterOpts{Name: clusterName, Host: ch, Port: cp}
		for i, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("cluster.embedded.routes[%d]: %w", i, err)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	if o.StoreDir == "" {
		if e.tmpDir, err = os.MkdirTemp("", "mseway-nats-"); err != nil {
			return nil, fmt.Errorf("cluster: embedded NATS store: %w", err)
		}
		o.StoreDir = e.tmpDir
	}
	srv, err := server.NewServer(o)
	if err != nil {
		e.removeTmp()
		return nil, fmt.Errorf("cluster: embedded NATS: %w", err)
	}
	srv.SetLoggerV2(newNATSLogger(log), false, false, false)
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
	e.clients = clientURL(srv)
	return e, nil
}

// clientURL is the server's client URL, on loopback when it listens on every
// address.
func clientURL(srv *server.Server) string {
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
	return (&url.URL{Scheme: "nats", Host: net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))}).String()
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
// seconds at most (a dead peer's route fails every second).
type natsLogger struct {
	l       *slog.Logger
	limiter *ratelog.Limiter
}

func newNATSLogger(l *slog.Logger) natsLogger {
	return natsLogger{l: l, limiter: &ratelog.Limiter{Every: 5 * time.Second}}
}

func (g natsLogger) Noticef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g natsLogger) Warnf(f string, v ...any)   { g.limited(slog.LevelWarn, f, v) }
func (g natsLogger) Fatalf(f string, v ...any)  { g.l.Error(fmt.Sprintf(f, v...)) }
func (g natsLogger) Errorf(f string, v ...any)  { g.limited(slog.LevelError, f, v) }
func (g natsLogger) Debugf(f string, v ...any)  {}
func (g natsLogger) Tracef(f string, v ...any)  {}

func (g natsLogger) limited(level slog.Level, f string, v []any) {
	if ok, held := g.limiter.Allow(); ok {
		g.l.Log(context.Background(), level, fmt.Sprintf(f, v...), "held_back", held)
	} else {
		g.l.Debug(fmt.Sprintf(f, v...))
	}
}
