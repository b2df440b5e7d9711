// Package gateway wires the gateway's parts into one HTTP server: the peer
// engine, the stream registry, publisher signaling, the viewer socket, the
// API, metrics and the web UI. cmd/gateway and the integration tests start it.
package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mseway/mseway/auth"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/guard"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/record"
	"github.com/mseway/mseway/signaling"
	"github.com/mseway/mseway/sources"
	"github.com/mseway/mseway/web"
	"github.com/mseway/mseway/webhooks"
)

// Options adjusts a Gateway beyond its config (tests).
type Options struct {
	// LoopbackOnly restricts ICE to loopback addresses on both sides.
	LoopbackOnly bool
	// InterfaceRescan is how often interfaces are scanned for addresses to
	// bind for ICE; 0 = 10 s.
	InterfaceRescan time.Duration
	// RequestTimeout bounds reading one request, headers and body; 0 = 30 s.
	RequestTimeout time.Duration
}

// HTTP limits: a request must arrive whole within RequestTimeout (headers
// within headerTimeout), headers are at most maxHeaderBytes, and an idle
// keep-alive connection is closed after idleTimeout. WebSockets set their
// own read deadlines once upgraded.
const (
	headerTimeout  = 10 * time.Second
	requestTimeout = 30 * time.Second
	idleTimeout    = 2 * time.Minute
	maxHeaderBytes = 32 << 10
)

// Gateway is a running gateway.
type Gateway struct {
	cfg      *configs.Config                 // as started; see live
	live     *atomic.Pointer[configs.Config] // in effect: cfg, then what Reload applied
	reloadMu sync.Mutex                      // one Reload at a time
	log      *slog.Logger
	engine   *peer.Engine
	registry *mseout.Registry
	sig      *signaling.Server
	access   *access
	guard    *guard.Guard
	cluster  *clusterGlue // nil on a single node
	origins  *httpapi.Origins
	srv      *http.Server
	admin    *http.Server           // the operator listener's (admin.listen); ServeAdmin serves it
	certs    *certReloader          // tls_cert/tls_key, re-read when they change; nil without them
	acme     *acmeCerts             // automatic certificates (tls.acme_domains); nil without them
	redirect *http.Server           // the HTTP -> HTTPS redirect listener's (tls.redirect_http); ServeRedirect serves it
	mainAddr atomic.Pointer[string] // the main listener's address, once Serve has it
	metrics  *prometheus.Registry   // this gateway's collectors (metrics.go)
	started  time.Time
	draining atomic.Bool // Close has begun: /readyz answers 503
	sources  []*sources.Source
	recorder *record.Recorder
}

// New builds a gateway from cfg. Call Serve, then Close.
func New(cfg *configs.Config, log *slog.Logger, opts Options) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	var ice []webrtc.ICEServer // the gateway's own: servers with a secret are for publishers only
	for _, s := range cfg.WebRTC.ICEServers {
		if s.Secret == "" {
			ice = append(ice, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
		}
	}
	deny, _ := cfg.WebRTC.DenyRemote() // validated by configs
	engine, err := peer.NewEngine(peer.Config{
		DenyRemote:          deny,
		UDPPort:             cfg.WebRTC.UDPPort,
		UDPAddress:          cfg.WebRTC.UDPAddress,
		NAT1To1IPs:          cfg.WebRTC.NAT1To1IPs,
		IncludeLoopback:     cfg.WebRTC.IncludeLoopback,
		LoopbackOnly:        opts.LoopbackOnly,
		ICEServers:          ice,
		DisconnectedTimeout: cfg.WebRTC.DisconnectedTimeout,
		FailedTimeout:       cfg.WebRTC.FailedTimeout,
		InterfaceRescan:     opts.InterfaceRescan,
		Logger:              log,
	})
	if err != nil {
		return nil, err
	}
	authz, err := auth.New(context.Background(), cfg.Auth, auth.Options{Logger: log})
	if err != nil {
		_ = engine.Close()
		return nil, err
	}
	var registry *mseout.Registry
	hooks, err := webhooks.New(cfg.Webhooks, webhooks.Options{Logger: log, ViewerCount: func(stream string) int {
		_, n := registry.State(stream)
		return n
	}})
	if err != nil {
		authz.Close()
		_ = engine.Close()
		return nil, err
	}
	rc := cfg.Record
	recorder, err := record.New(record.Config{
		Path: rc.Path, SegmentDuration: rc.SegmentDuration, MaxAge: rc.MaxAge, MaxBytes: rc.MaxBytes,
		SyncInterval: rc.SyncInterval, QueueBytes: rc.QueueBytes, Logger: log,
	})
	if err != nil {
		hooks.Close(context.Background())
		authz.Close()
		_ = engine.Close()
		return nil, err
	}
	if recordsAny(cfg) && rc.MaxAge == 0 && rc.MaxBytes == 0 {
		log.Warn("recording with no retention: files are kept until the disk is full; set record.max_age or record.max_bytes", "path", rc.Path)
	}
	acc := newAccess(authz, hooks, log)
	origins := httpapi.NewLiveOrigins(cfg.Auth.AllowedOrigins)
	live := new(atomic.Pointer[configs.Config])
	live.Store(cfg)
	// Stream settings are looked up when a stream's hub is made: after a
	// reload, new streams get the new ones.
	settings := func(name string) configs.Stream { return live.Load().StreamSettings(name) }
	// set below; the registry asks it where viewers go on shutdown, and
	// emit tells it of viewers arriving.
	var glue *clusterGlue
	emit := func(typ, stream string, data map[string]any) {
		switch typ {
		case "viewer.joined":
			hooks.ViewerJoined(stream)
			glue.viewerJoined(stream)
		case "viewer.left":
			hooks.ViewerLeft(stream)
		default:
			hooks.Emit(webhooks.Event{Type: typ, Stream: stream, Data: data})
		}
	}
	registry = mseout.NewRegistry(mseout.Options{
		GoawayURL:  func(stream string) string { return glue.goawayURL(stream) },
		RemoteLive: func(stream string) bool { return glue.remoteLive(stream) },
		Settings:   settings,
		Limits:     cfg.Limits,
		Authorize:  acc.view,
		Origins:    origins,
		Events:     emit,
		// The node a publisher feeds records its stream (a node relaying
		// it from another does not): never two nodes the same stream.
		OnPublish: func(name string, info mseout.PublisherInfo) {
			if !live.Load().StreamSettings(name).Record || !glue.records(info.Protocol == "relay") {
				return
			}
			recorder.Start(name, func(out record.Output) (func(), error) { return registry.Attach(name, out) })
		},
		Logger: log,
	})
	glue, err = startCluster(cfg.Cluster, cfg.Record.Node, settings, registry, log)
	if err != nil {
		registry.Close()
		recorder.Close()
		hooks.Close(context.Background())
		authz.Close()
		_ = engine.Close()
		return nil, err
	}
	if glue != nil {
		origins.AlsoAllow(glue.nodeOrigin) // a player moving here from another node
	}
	sig := signaling.New(signaling.Options{
		Engine:    signaling.PeerEngine(engine),
		Streams:   glue.streams(signaling.MSEStreams(registry)),
		Authorize: acc.publish,
		Origins:   origins,
		Events:    emit,
		ICEServers: func(stream string) []webrtc.ICEServer {
			return advertisedICEServers(cfg.WebRTC.ICEServers, stream, time.Now())
		},
		MaxBodyBytes:    int64(cfg.Limits.MaxBodyBytes),
		MaxPending:      cfg.Limits.MaxPendingPublishes,
		MaxPendingPerIP: cfg.Limits.MaxPendingPublishesPerIP,
		Logger:          log,
	})
	var trusted []netip.Prefix
	for _, p := range cfg.TrustedProxies {
		pfx, _ := configs.ParsePrefix(p) // validated by configs
		trusted = append(trusted, pfx)
	}
	soft, hard := guard.FileLimit()
	maxConns := cfg.Limits.MaxConns
	if maxConns == 0 {
		maxConns = guard.DefaultMaxConns(soft)
	}
	if !cfg.Auth.Configured() {
		log.Warn("access control is off: anyone who reaches this port may publish and watch any stream and read /metrics; set auth.publish_token (or auth.jwt) before exposing it (README: Access control)")
	}
	log.Info("connection limits", "max_conns", maxConns, "max_conns_per_ip", cfg.Limits.MaxConnsPerIP,
		"open_files_soft", soft, "open_files_hard", hard)
	g := &Gateway{cfg: cfg, live: live, log: log, engine: engine, registry: registry, sig: sig, access: acc, origins: origins, cluster: glue, started: time.Now(), recorder: recorder,
		guard: guard.New(guard.Options{
			MaxConns: maxConns, MaxConnsPerIP: cfg.Limits.MaxConnsPerIP,
			RequestsPerSecondPerIP: cfg.Limits.RequestsPerSecondPerIP, RequestBurstPerIP: cfg.Limits.RequestBurstPerIP,
			TrustedProxies: trusted, Logger: log,
		})}
	if err := g.startSources(); err != nil {
		g.closeParts(context.Background())
		return nil, err
	}
	if g.metrics, err = g.newMetrics(); err != nil {
		g.closeParts(context.Background())
		return nil, fmt.Errorf("metrics: %w", err)
	}
	g.admin = &http.Server{
		Handler:           securityHeaders(g.AdminHandler()),
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	rt := opts.RequestTimeout
	if rt <= 0 {
		rt = requestTimeout
	}
	g.srv = &http.Server{
		Handler:           g.guard.Middleware(g.Handler()),
		ReadHeaderTimeout: min(headerTimeout, rt),
		ReadTimeout:       rt,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCert != "" {
		// Read here, at start, so a bad pair stops the gateway with its
		// name; afterwards a bad new pair is refused and the old one stays.
		if g.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			g.closeParts(context.Background())
			return nil, err
		}
		tc := baseTLS()
		tc.GetCertificate = g.certs.GetCertificate
		g.srv.TLSConfig = tc
		g.certs.start(cfg.TLS.ReloadInterval)
	}
	if len(cfg.TLS.ACMEDomains) > 0 {
		if g.acme, err = newACME(cfg, log); err != nil {
			g.closeParts(context.Background())
			return nil, err
		}
		tc := baseTLS()
		g.acme.tlsConfig(tc)
		g.srv.TLSConfig = tc
	}
	g.redirect = g.newRedirectServer()
	return g, nil
}

// recordsAny reports whether cfg records some stream.
func recordsAny(cfg *configs.Config) bool {
	if cfg.StreamDefaults.Record {
		return true
	}
	for _, s := range cfg.Streams {
		if s.Record {
			return true
		}
	}
	return false
}

// ServerTLS is the gateway's TLS config for a certificate and key file,
// read once (the gateway itself re-reads its files when they change). The
// files are read here, so a bad one fails with its name instead of failing
// every handshake later.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls_cert %s / tls_key %s: %w", certFile, keyFile, err)
	}
	tc := baseTLS()
	tc.Certificates = []tls.Certificate{cert}
	return tc, nil
}

// baseTLS is the gateway's TLS config without its certificate.
func baseTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Full 16 KiB records from the first byte: a viewer's join burst is
		// sealed and sent in as few records (and syscalls) as it can be.
		DynamicRecordSizingDisabled: true,
	}
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	g.sig.Register(mux)
	mux.HandleFunc("GET /ws/watch/{stream}", func(w http.ResponseWriter, r *http.Request) {
		g.registry.ServeViewer(w, r, r.PathValue("stream"))
	})
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, r *http.Request) {
		g.origins.SetCORS(w, r)
		list, err := g.access.streamsFor(r, g.cluster.listStreams(g.registry.Streams()))
		if err != nil {
			httpapi.Fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, list)
	})
	// A page on another (allowed) origin sends its token in Authorization:
	// its browser asks first.
	mux.HandleFunc("OPTIONS /api/streams", preflight(g.origins))
	mux.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, r *http.Request) {
		g.origins.SetCORS(w, r)
		stream := r.URL.Query().Get("stream")
		var err error
		if stream == "" {
			err = g.access.admin(r)
		} else if !configs.ValidStreamName(stream) {
			err = httpapi.Errorf(http.StatusBadRequest, fmt.Sprintf("stream: %q is not a stream name", stream))
		} else {
			err = g.access.view(r, stream)
		}
		if err != nil {
			httpapi.Fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, g.cluster.nodes(stream))
	})
	// A page on another (allowed) origin sends its token in Authorization:
	// its browser asks first.
	mux.HandleFunc("OPTIONS /api/nodes", preflight(g.origins))
	g.registerOperator(mux)
	g.registerRecordings(mux)
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok", "uptime": time.Since(g.started).Round(time.Second).String()})
	})
	if g.cfg.Admin.Listen == "" {
		// Without an operator listener, /metrics is here, for admin.
		metrics := metricsHandler(g.metrics, g.log)
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if err := g.access.admin(r); err != nil {
				httpapi.Fail(w, err)
				return
			}
			metrics.ServeHTTP(w, r)
		})
	}
	static := web.Handler(web.Options{FrameAncestors: g.cfg.Web.FrameAncestors, TestPages: g.cfg.Web.TestPages})
	mux.Handle("GET /", static)
	return securityHeaders(jsonErrors(mux))
}

// preflight answers a CORS preflight of a GET with Authorization.
func preflight(origins *httpapi.Origins) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origins.SetCORS(w, r)
		w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	}
}

// jsonErrors makes the mux's own 404 and 405 replies on API paths JSON, like
// every other error of the HTTP API.
func jsonErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/whip/") || strings.HasPrefix(p, "/ws/") || p == "/healthz" || p == "/readyz" || p == "/metrics" {
			w = &errorRewriter{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

type errorRewriter struct {
	http.ResponseWriter
	rewritten bool
}

func (e *errorRewriter) WriteHeader(code int) {
	h := e.Header()
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		e.rewritten = true
		h.Del("X-Content-Type-Options")
		msg := "no such endpoint"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed"
		}
		httpapi.WriteJSON(e.ResponseWriter, code, map[string]string{"error": msg})
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorRewriter) Write(b []byte) (int, error) {
	if e.rewritten {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the connection.
func (e *errorRewriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// Hijack is needed by gorilla/websocket, which asserts http.Hijacker directly.
func (e *errorRewriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := e.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	return hj.Hijack()
}

// Serve serves HTTP on ln until Close. It returns nil after Close.
func (g *Gateway) Serve(ln net.Listener) error {
	var err error
	addr := ln.Addr().String()
	g.mainAddr.Store(&addr)
	ln = g.guard.Listener(ln)
	if g.srv.TLSConfig != nil {
		g.acme.start() // nil-safe: with automatic certificates, now that the listener is there
		// Viewers over these TLS connections get the fan-out's
		// non-blocking direct writes, like viewers over plain TCP.
		err = g.srv.ServeTLS(mseout.DirectWriteListener(ln), "", "")
	} else {
		err = g.srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// startSources starts the configured local sources (sorted by name).
func (g *Gateway) startSources() error {
	names := make([]string, 0, len(g.cfg.Sources))
	for name := range g.cfg.Sources {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := g.cfg.Sources[name]
		src, err := sources.Start(sources.Config{
			Stream: name,
			Capture: devices.Config{
				Video: s.Video, Audio: s.Audio, VideoCodec: s.VideoCodec, Width: s.Width, Height: s.Height, FPS: s.FPS,
				VideoBitrate: s.VideoBitrate, AudioBitrate: s.AudioBitrate, KeyframeInterval: s.KeyframeInterval,
			},
			Registry: g.registry,
			Publish:  g.cluster.publisher(),
			OnDemand: s.OnDemand,
			Linger:   s.Linger,
			Logger:   g.log,
		})
		if errors.Is(err, devices.ErrNoEncoder) {
			g.log.Warn("local source skipped: this build has no encoder (built without cgo)", "source", name)
			continue
		}
		if err != nil {
			g.closeSources()
			return fmt.Errorf("sources.%s: %w", name, err)
		}
		g.sources = append(g.sources, src)
		g.log.Info("local source ready", "stream", name, "video", s.Video, "audio", s.Audio, "on_demand", s.OnDemand)
	}
	return nil
}

func (g *Gateway) closeSources() {
	for _, s := range g.sources {
		s.Close()
	}
	g.sources = nil
}

// Close drains and stops the gateway: /readyz answers 503 at once, and after
// the config's drain_delay viewers get goaway and are disconnected, every
// publish ends, the local sources stop, the server stops accepting requests
// and the ICE port is released.
func (g *Gateway) Close(ctx context.Context) error {
	g.draining.Store(true)
	if d := g.live.Load().DrainDelay; d > 0 {
		g.log.Info("draining: /readyz answers 503", "for", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	g.registry.Close()
	g.closeSources()
	g.sig.Close()
	err := g.srv.Shutdown(ctx)
	if aerr := g.admin.Shutdown(ctx); err == nil {
		err = aerr
	}
	if rerr := g.redirect.Shutdown(ctx); err == nil {
		err = rerr
	}
	if cerr := g.closeParts(ctx); err == nil {
		err = cerr
	}
	return err
}

// closeParts closes what New made, after the sources, the registry and
// the signaling: webhooks get until ctx is done to deliver what is queued
// (publish.ended of every stream just closed).
func (g *Gateway) closeParts(ctx context.Context) error {
	g.closeSources()
	g.registry.Close()
	g.sig.Close()
	g.recorder.Close() // after the registry: the recordings got their end
	if err := g.cluster.close(ctx); err != nil {
		g.log.Warn("cluster: leaving", "err", err)
	}
	g.access.hooks.Close(ctx)
	g.access.authz().Close()
	g.guard.Close()
	g.certs.Close()
	g.acme.Close()
	return g.engine.Close()
}

// Live reports whether stream has a publisher that is connected and
// feeding it (a negotiated publish is live only once ICE and DTLS are up).
func (g *Gateway) Live(stream string) bool {
	live, _ := g.registry.State(stream)
	return live
}

// ICEAddrs returns the ICE UDP listen addresses.
func (g *Gateway) ICEAddrs() []string { return g.engine.UDPAddrs() }
