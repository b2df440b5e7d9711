// Command gateway is the WebRTC to MSE gateway: it takes publishes over WHIP
// or WebSocket signaling and serves them to MSE players over WebSocket.
//
//	gateway [serve] [-config FILE] [-listen ADDR]
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
	"syscall"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand: serve (the default) or capture.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runServe(args[1:], stdout, stderr)
		case "capture":
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCapture(ctx, args[1:], stdout, stderr)
		}
	}
	return runServe(args, stdout, stderr)
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

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (default: the embedded config; see -print-config)")
	listen := fs.String("listen", "", "HTTP listen address, overrides the config (e.g. :8080)")
	printConfig := fs.Bool("print-config", false, "print the embedded default config and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gateway [serve] [flags]\n       gateway capture -url URL [flags]  (capture agent; gateway capture -h)\n\nServes WHIP/WebSocket publishers to MSE viewers over WebSocket.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr, "gateway"); code >= 0 {
		return code
	}
	if *printConfig {
		_, _ = stdout.Write(configs.DefaultYAML())
		return 0
	}
	cfg := configs.Default()
	if *configPath != "" {
		var err error
		if cfg, err = configs.Load(*configPath); err != nil {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
			return 1
		}
	}
	if *listen != "" {
		if _, _, err := net.SplitHostPort(*listen); err != nil {
			fmt.Fprintf(stderr, "gateway: -listen %q: %v\n", *listen, err)
			return 2
		}
		cfg.Listen = *listen
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: listen %s: %v\n", cfg.Listen, err)
		return 1
	}
	g, err := gateway.New(cfg, log, gateway.Options{})
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "gateway listening on %s\n  open %s://%s/  (publish: /publish.html?stream=demo, watch: /watch.html?stream=demo)\n  ICE UDP: %v\n",
		ln.Addr(), scheme, browseAddr(ln.Addr()), g.ICEAddrs())
	for _, name := range sortedKeys(cfg.Sources) {
		fmt.Fprintf(stdout, "  local source %q: %s://%s/watch.html?stream=%s\n", name, scheme, browseAddr(ln.Addr()), name)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		if err != nil {
			log.Error("server failed", "err", err)
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	log.Info("shutting down: viewers get goaway and reconnect; a second signal exits at once")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainDelay+10*time.Second)
	defer cancel()
	if err := g.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	<-errc
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
