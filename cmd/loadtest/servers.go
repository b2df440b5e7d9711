package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/mseout"
)

// target is a server the viewers load: the gateway or the floor.
type target struct {
	base string // http://127.0.0.1:port
	pid  int
	stop func()
}

func wsURL(base, stream string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws/watch/" + stream
}

func streamName(i int) string { return fmt.Sprintf("lt%d", i) }

// clusterNode makes a gateway a node of a cluster (-cluster): the NATS
// server to join, the node's id and its public URL (its own base URL).
type clusterNode struct {
	natsURL, nodeID, publicURL string
}

// newGatewayHandler builds a gateway for loopback with limits raised for
// load, plus /debug/pprof/; with node, a node of a cluster.
func newGatewayHandler(level string, logw io.Writer, node *clusterNode) (http.Handler, func(), error) {
	cfg := configs.Default()
	cfg.LogLevel = level
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.IncludeLoopback = true
	cfg.Limits.MaxStreams = 1000
	cfg.Limits.MaxViewers = 100000
	cfg.Limits.MaxViewersPerStream = 100000
	// Every client comes from 127.0.0.1: no per-address caps.
	cfg.Limits.MaxViewersPerIP = 100000
	cfg.Limits.MaxConnsPerIP = 0
	cfg.Limits.RequestsPerSecondPerIP = 0
	cfg.Limits.MaxPendingPublishes, cfg.Limits.MaxPendingPublishesPerIP = 1000, 1000
	if node != nil {
		cfg.Cluster.NATSURLs = []string{node.natsURL}
		cfg.Cluster.NodeID = node.nodeID
		cfg.Cluster.PublicURL = node.publicURL
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lv}))
	g, err := gateway.New(cfg, log, gateway.Options{LoopbackOnly: true})
	if err != nil {
		return nil, nil, err
	}
	mux := withPprof(g.Handler())
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	}
	return mux, stop, nil
}

// withPprof adds /debug/pprof/ to a server the tool loads (for -gateway-profile, -floor-profile).
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/", h)
	return mux
}

// serveLoopback serves h on 127.0.0.1 and returns its base URL and a stop.
// With tlsConfig it serves https; with direct, through
// mseout.DirectWriteListener as the gateway's own listener does (the floor,
// and A/B runs, get a plain TLS listener).
func serveLoopback(h http.Handler, cleanup func(), tlsConfig *tls.Config, direct bool) (string, func(), error) {
	ln, base, err := listenLoopback(tlsConfig)
	if err != nil {
		return "", nil, err
	}
	return base, serveOn(ln, h, cleanup, tlsConfig, direct), nil
}

// listenLoopback opens a listener on 127.0.0.1 and names its base URL.
func listenLoopback(tlsConfig *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	return ln, scheme + "://" + ln.Addr().String(), nil
}

// serveOn serves h on ln (see serveLoopback) until the returned stop.
func serveOn(ln net.Listener, h http.Handler, cleanup func(), tlsConfig *tls.Config, direct bool) func() {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tlsConfig != nil {
			if direct {
				ln = mseout.DirectWriteListener(ln)
			}
			_ = srv.ServeTLS(ln, "", "")
			return
		}
		_ = srv.Serve(ln)
	}()
	return func() {
		if cleanup != nil {
			cleanup()
		}
		_ = srv.Close()
		<-done
	}
}

// childServe is the child process side of a target: listen, build the
// server for its base URL, serve, print "LISTEN url", run until stdin
// closes or a signal.
func childServe(ctx context.Context, stdout, stderr io.Writer, tlsConfig *tls.Config, direct bool, build func(base string) (http.Handler, func(), error)) int {
	ln, base, err := listenLoopback(tlsConfig)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	h, cleanup, err := build(base)
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	stop := serveOn(ln, h, cleanup, tlsConfig, direct)
	fmt.Fprintf(stdout, "LISTEN %s\n", base)
	waitParent(ctx)
	stop()
	return 0
}

// waitParent returns when the parent closes the child's stdin, or at a signal.
func waitParent(ctx context.Context) {
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
}

// childEnv is set in a child's environment.
const childEnv = "MSEWAY_LOADTEST_CHILD"

// startChild re-executes this program in a serve mode and waits for its URL.
func startChild(ctx context.Context, stderr io.Writer, args ...string) (target, error) {
	exe, err := os.Executable()
	if err != nil {
		return target{}, err
	}
	return startChildExe(ctx, stderr, exe, args...)
}

// startChildExe is startChild with another build of the tool (-ingest-compare).
func startChildExe(ctx context.Context, stderr io.Writer, exe string, args ...string) (target, error) {
	cmd := exec.Command(exe, args...)
	// A test binary re-executed as a child runs run() instead of its tests (TestMain).
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return target{}, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return target{}, err
	}
	if err := cmd.Start(); err != nil {
		return target{}, err
	}
	exited := make(chan struct{})
	stop := func() {
		in.Close()
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				line <- u
			}
		}
	}()
	select {
	case u := <-line:
		return target{base: u, pid: cmd.Process.Pid, stop: stop}, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	stop()
	return target{}, errors.New("child server did not start")
}

func startGateway(ctx context.Context, c config, stderr io.Writer) (target, error) {
	switch {
	case c.url != "":
		return target{base: strings.TrimSuffix(c.url, "/"), pid: c.pid, stop: func() {}}, nil
	case c.inprocess:
		tc, err := serverTLS()
		if err != nil {
			return target{}, err
		}
		h, cleanup, err := newGatewayHandler(c.logLevel, stderr, nil)
		if err != nil {
			return target{}, err
		}
		base, stop, err := serveLoopback(h, cleanup, tc, c.tlsDirect)
		return target{base: base, pid: os.Getpid(), stop: stop}, err
	}
	return startChild(ctx, stderr, append([]string{"-serve-gateway", "-log-level", c.logLevel, fmt.Sprintf("-tls-direct=%v", c.tlsDirect)}, childTLSArgs()...)...)
}

func startFloor(ctx context.Context, c config, rec *recording, stderr io.Writer) (target, error) {
	if c.inprocess {
		tc, err := serverTLS()
		if err != nil {
			return target{}, err
		}
		fctx, cancel := context.WithCancel(ctx)
		base, stop, err := serveLoopback(withPprof(newFloorServer(fctx, rec).Handler()), cancel, tc, false)
		return target{base: base, pid: os.Getpid(), stop: stop}, err
	}
	dir, err := os.MkdirTemp("", "loadtest")
	if err != nil {
		return target{}, err
	}
	path := filepath.Join(dir, "recording.gob")
	if err := rec.save(path); err != nil {
		os.RemoveAll(dir)
		return target{}, err
	}
	t, err := startChild(ctx, stderr, append([]string{"-serve-floor", path}, childTLSArgs()...)...)
	if err != nil {
		os.RemoveAll(dir)
		return t, err
	}
	stop := t.stop
	t.stop = func() { stop(); os.RemoveAll(dir) }
	return t, nil
}
