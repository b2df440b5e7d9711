// Command gateway is the WebRTC to MSE gateway: it takes publishes over WHIP
// or WebSocket signaling and serves them to MSE players over WebSocket.
//
//	gateway [serve] [-config FILE] [-listen ADDR]
//	gateway -check-config FILE   (validate a config and exit)
//	gateway -version             (print the build and exit)
//	gateway capture -url http://HOST:8080/whip/STREAM [flags]   (headless capture agent)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand: serve (the default) or capture. Both end
// on SIGINT or SIGTERM.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runServe(ctx, stop, args[1:], stdout, stderr)
		case "capture":
			return runCapture(ctx, args[1:], stdout, stderr)
		}
	}
	return runServe(ctx, stop, args, stdout, stderr)
}

// newLogger is the process's logger: format "text" (slog's key=value
// lines) or "json" (one object per line), at level ("debug", "info",
// "warn" or "error").
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func lookupEnv(name string) string { return os.Getenv(name) }

// parseFlags parses a subcommand's flags: it returns the exit code to stop
// with (0 for -h, 2 for a bad flag or a stray argument), or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, name string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return 2
	}
	return -1
}

// runServe is `gateway [serve]`: it serves until ctx is done, then drains
// and closes. stopSignals is called when the drain begins, so that a
// second signal ends the process at once.
func runServe(ctx context.Context, stopSignals func(), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (default: the embedded config; see -print-config)")
	listen := fs.String("listen", "", "HTTP listen address, overrides the config (e.g. :8080)")
	printConfig := fs.Bool("print-config", false, "print the embedded default config and exit")
	checkConfig := fs.String("check-config", "", "load and validate this config file as a start would (without binding ports or starting anything), print ok and exit 0, or the reason and exit 1")
	healthcheck := fs.String("healthcheck", "", "GET this URL (e.g. http://127.0.0.1:8080/healthz) and exit 0 on a 2xx answer within 5 s, 1 otherwise: a container health check in an image without curl")
	version := fs.Bool("version", false, "print the build (module version, VCS revision, Go version, cgo and capture encoders) and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gateway [serve] [flags]\n       gateway capture -url URL [flags]  (capture agent; gateway capture -h)\n\nServes WHIP/WebSocket publishers to MSE viewers over WebSocket.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr, "gateway"); code >= 0 {
		return code
	}
	// SIGHUP reloads the config once the gateway serves (below); until
	// then it must not end the process, Go's default.
	signal.Ignore(syscall.SIGHUP)
	switch {
	case *version:
		fmt.Fprint(stdout, buildInfo())
		return 0
	case *printConfig:
		_, _ = stdout.Write(configs.DefaultYAML())
		return 0
	case *checkConfig != "":
		return runCheckConfig(*checkConfig, *listen, stdout, stderr)
	case *healthcheck != "":
		return runHealthcheck(*healthcheck, stdout, stderr)
	}
	cfg, code := loadConfig(*configPath, *listen, stderr)
	if cfg == nil {
		return code
	}
	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil { // validated by configs
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}
	// The checks of -check-config; its warnings are logged by New.
	if _, err := gateway.Check(cfg); err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: listen %s: %v\n", cfg.Listen, err)
		return 1
	}
	var adminLn net.Listener // the operator listener: /metrics, /debug/pprof/, /readyz
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "gateway: admin.listen %s: %v\n", cfg.Admin.Listen, err)
			return 1
		}
	}
	var redirectLn net.Listener // tls.redirect_http: HTTP -> HTTPS, ACME HTTP-01
	if cfg.TLS.RedirectHTTP != "" {
		if redirectLn, err = net.Listen("tcp", cfg.TLS.RedirectHTTP); err != nil {
			ln.Close()
			if adminLn != nil {
				adminLn.Close()
			}
			fmt.Fprintf(stderr, "gateway: tls.redirect_http %s: %v\n", cfg.TLS.RedirectHTTP, err)
			return 1
		}
	}
	g, err := gateway.New(cfg, log, gateway.Options{})
	if err != nil {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
		if redirectLn != nil {
			redirectLn.Close()
		}
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}
	scheme := "http"
	if cfg.TLSEnabled() {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "gateway listening on %s\n  open %s://%s/  (publish: /publish.html?stream=demo, watch: /watch.html?stream=demo)\n  ICE UDP: %v\n",
		ln.Addr(), scheme, browseAddr(ln.Addr()), g.ICEAddrs())
	for _, name := range sortedKeys(cfg.Sources) {
		fmt.Fprintf(stdout, "  local source %q: %s://%s/watch.html?stream=%s\n", name, scheme, browseAddr(ln.Addr()), name)
	}
	if adminLn != nil {
		fmt.Fprintf(stdout, "  admin (metrics, pprof, readyz): http://%s/metrics\n", browseAddr(adminLn.Addr()))
	}

	// SIGHUP: the config file is read again, checked as a start would, and
	// what can change live is applied (gateway.Reload).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	errc := make(chan error, 3) // the main listener's, the admin listener's, the redirect listener's
	go func() { errc <- g.Serve(ln) }()
	serving := 1
	if adminLn != nil {
		serving++
		go func() {
			if err := g.ServeAdmin(adminLn); err != nil {
				errc <- fmt.Errorf("admin listener: %w", err)
				return
			}
			errc <- nil
		}()
	}
	if redirectLn != nil {
		fmt.Fprintf(stdout, "  redirect to https: http://%s/\n", browseAddr(redirectLn.Addr()))
		serving++
		go func() {
			if err := g.ServeRedirect(redirectLn); err != nil {
				errc <- fmt.Errorf("redirect listener: %w", err)
				return
			}
			errc <- nil
		}()
	}
	for waiting := true; waiting; {
		select {
		case <-hup:
			if next := reloadConfig(g, *configPath, *listen, log); next != nil {
				cfg = next
			}
			continue
		case <-ctx.Done():
			waiting = false
			continue
		case err := <-errc:
			return stopServing(g, err, serving-1, errc, log)
		}
	}
	stopSignals() // a second signal ends the process at once
	log.Info("shutting down: viewers get goaway and reconnect; a second signal exits at once")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainDelay+10*time.Second)
	defer cancel()
	if err := g.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	for ; serving > 0; serving-- {
		<-errc
	}
	return 0
}

// stopServing closes the gateway after a listener failed (err) or stopped,
// waits for the other listeners (serving of them) and returns the exit code.
func stopServing(g *gateway.Gateway, err error, serving int, errc <-chan error, log *slog.Logger) int {
	if err != nil {
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.Close(sctx) // stops the other listener too
	for ; serving > 0; serving-- {
		<-errc
	}
	if err != nil {
		return 1
	}
	return 0
}

// reloadConfig is SIGHUP: it reads the config file again (the embedded
// default when there is none; -listen applies as at start), checks it as a
// start would and applies it (gateway.Reload). A config that fails is
// logged with the file and the reason, and nothing changes. It returns the
// config read, or nil.
func reloadConfig(g *gateway.Gateway, path, listen string, log *slog.Logger) *configs.Config {
	file := path
	if file == "" {
		file = "(embedded default)"
	}
	var why strings.Builder
	cfg, _ := loadConfig(path, listen, &why)
	var err error
	if cfg == nil {
		err = errors.New(strings.TrimSpace(strings.TrimPrefix(why.String(), "gateway: ")))
	} else if _, err = gateway.Check(cfg); err == nil {
		_, err = g.Reload(cfg)
	}
	if err != nil {
		log.Error("SIGHUP: config reload refused, nothing changed", "file", file, "reason", err.Error())
		return nil
	}
	log.Info("SIGHUP: config reloaded", "file", file)
	return cfg
}

// loadConfig loads the config file (the embedded default when path is
// empty) and applies -listen. On failure it prints the reason and returns
// a nil config and the exit code.
func loadConfig(path, listen string, stderr io.Writer) (*configs.Config, int) {
	cfg := configs.Default()
	if path != "" {
		var err error
		if cfg, err = configs.Load(path); err != nil {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
			return nil, 1
		}
	}
	if listen != "" {
		if _, _, err := net.SplitHostPort(listen); err != nil {
			fmt.Fprintf(stderr, "gateway: -listen %q: %v\n", listen, err)
			return nil, 2
		}
		cfg.Listen = listen
	}
	return cfg, 0
}

// runCheckConfig is `gateway -check-config FILE`: the checks of a start
// (the config's keys and values, then the files it names and the local
// sources, see gateway.Check) without binding a port or starting anything.
// It prints ok (and warnings, on stderr) and returns 0, or the reason and 1.
func runCheckConfig(path, listen string, stdout, stderr io.Writer) int {
	cfg, _ := loadConfig(path, listen, stderr)
	if cfg == nil {
		return 1
	}
	warnings, err := gateway.Check(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: config %s: %v\n", path, err)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "gateway: config %s: warning: %s\n", path, w)
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// browseAddr turns a listen address into one a browser on this machine can open.
func browseAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
