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

// newGatewayHandler builds a gateway for loopback with limits raised for
// load, plus /debug/pprof/.
func newGatewayHandler(level string, logw io.Writer) (http.Handler, func(), error) {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		if direct {
			ln = mseout.DirectWriteListener(ln)
		}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	stop := func() {
		if cleanup != nil {
			cleanup()
		}
		_ = srv.Close()
	}
	return scheme + "://" + ln.Addr().String(), stop, nil
}

// childServe is the child process side of a target: serve, print
// "LISTEN url", run until stdin closes or a signal.
func childServe(ctx context.Context, stdout, stderr io.Writer, tlsConfig *tls.Config, direct bool, build func() (http.Handler, func(), error)) int {
	h, cleanup, err := build()
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	base, stop, err := serveLoopback(h, cleanup, tlsConfig, direct)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "LISTEN %s\n", base)
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	stop()
	return 0
}

// startChild re-executes this program in a serve mode and waits for its URL.
func startChild(ctx context.Context, stderr io.Writer, args ...string) (target, error) {
	exe, err := os.Executable()
	if err != nil {
		return target{}, err
	}
	cmd := exec.Command(exe, args...)
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
		h, cleanup, err := newGatewayHandler(c.logLevel, stderr)
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
