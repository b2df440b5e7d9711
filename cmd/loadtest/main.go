// Command loadtest measures the gateway's fan-out: it publishes real H.264 +
// Opus at real-time pace over WHIP, opens many viewers over the viewer
// WebSocket protocol and reports per-viewer throughput, publish -> viewer
// delivery latency per video frame, time to first frame, skipped frames,
// errors and the gateway process's CPU and RSS. In the same run it measures
// a "floor": a minimal server replaying the same recorded stream to the same
// number of viewers (one PreparedMessage per fragment, one write per viewer,
// no WebRTC, no muxing), and gives the gateway's figures as ratios to it.
//
//	go run ./cmd/loadtest -viewers 500 -duration 20s
//
// With -cluster N it measures a cluster over NATS instead (cluster.go): a
// publisher on node 0 (the origin), viewers on the other nodes (edges) and
// a few on the origin, each node and the NATS server in a process of its
// own, next to a single non-clustered gateway with as many viewers as an edge.
//
//	go run ./cmd/loadtest -cluster 3 -viewers 200 -cluster-scale 4
//
// With -soak D it runs a long soak instead (soak.go): viewers with churn,
// a publisher that republishes every minute, and the gateway's RSS, fds,
// threads and goroutines sampled every 10 s, with a verdict on growth.
//
//	go run ./cmd/loadtest -soak 30m -soak-csv /tmp/soak.csv
//
// See README.md, "Load tool", for every flag and the output.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/testcert"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

type config struct {
	viewers, streams     int
	slow                 int
	slowMode             string
	trickleRate          int
	slowRcvbuf           int
	duration, ramp       time.Duration
	warmup, recordLen    time.Duration
	idle                 time.Duration
	mode                 string
	url                  string
	pid                  int
	inprocess            bool
	videoPath, audioPath string
	noAudio              bool
	fps                  int
	gatewayProfile       string
	floorProfile         string
	logLevel             string
	quiet                bool
	tls                  bool   // serve the started gateway and floor over TLS
	tlsDirect            bool   // the gateway's TLS viewers get direct writes (DirectWriteListener)
	caFile               string // trust this CA (a gateway given by -url over https)
	soak                 soakConfig
	cl                   clusterConfig
	ingest               ingestConfig
}

// serverCert is the certificate of the servers the tool starts with -tls
// (made at start, ECDSA P-256, for loopback); clientTLS is what the
// publishers and viewers trust (nil: plain http/ws).
var (
	serverCert *testcert.Cert
	clientTLS  *tls.Config
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.IntVar(&c.viewers, "viewers", 100, "viewers (spread over the streams round-robin)")
	fs.IntVar(&c.streams, "streams", 1, "streams published, named lt0, lt1, ...")
	fs.IntVar(&c.slow, "slow", 0, "extra slow viewers on stream lt0 (not counted in the figures)")
	fs.StringVar(&c.slowMode, "slow-mode", "never", "slow viewers: never (never read) or trickle (read -trickle-rate bytes/s)")
	fs.IntVar(&c.trickleRate, "trickle-rate", 16000, "bytes/s a trickle viewer reads")
	fs.IntVar(&c.slowRcvbuf, "slow-rcvbuf", 65536, "SO_RCVBUF of slow viewers' sockets (small: they block soon, as a stalled client does)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measurement window per phase")
	fs.DurationVar(&c.ramp, "ramp", 5*time.Second, "ramp-up: viewers join evenly over this time")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "wait after the ramp before measuring")
	fs.DurationVar(&c.idle, "idle", 2*time.Second, "how long the servers' CPU is measured before the viewers join (the per-viewer CPU is counted from it)")
	fs.DurationVar(&c.recordLen, "record", 8*time.Second, "length of the stream recorded for the floor")
	fs.StringVar(&c.mode, "mode", "both", "both (gateway then floor), gateway, or floor")
	fs.StringVar(&c.url, "url", "", "an already running gateway, e.g. http://127.0.0.1:8080 (loopback only); default: start one")
	fs.IntVar(&c.pid, "pid", 0, "with -url: the gateway's process id, for CPU and RSS")
	fs.BoolVar(&c.inprocess, "inprocess", false, "run the gateway and the floor in this process (CPU and RSS are then the whole process's)")
	fs.StringVar(&c.videoPath, "video", "testdata/media/h264_1280x720_30fps_2500k.h264", "H.264 Annex B file to publish")
	fs.StringVar(&c.audioPath, "audio", "testdata/media/opus_48k_stereo.ogg", "Ogg Opus file to publish")
	fs.BoolVar(&c.noAudio, "no-audio", false, "publish video only")
	fs.IntVar(&c.fps, "fps", 30, "video frame rate of the file")
	fs.StringVar(&c.gatewayProfile, "gateway-profile", "", "write a CPU profile of the gateway over the measurement window to this file")
	fs.StringVar(&c.floorProfile, "floor-profile", "", "write a CPU profile of the floor server over the measurement window to this file")
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level of the gateway started by the tool")
	fs.BoolVar(&c.quiet, "quiet", false, "print only the JSON line")
	fs.BoolVar(&c.tls, "tls", false, "serve the gateway and the floor over TLS (a certificate made for the run): WHIP over https, viewers over wss")
	fs.BoolVar(&c.tlsDirect, "tls-direct", true, "with -tls: serve the gateway through mseout.DirectWriteListener as cmd/gateway does (false: a plain TLS listener, every TLS viewer written by a writer goroutine; for A/B runs)")
	fs.StringVar(&c.caFile, "ca", "", "with -url https://...: trust the CA certificates in this PEM file (e.g. a test certificate)")
	c.soak.addFlags(fs)
	c.cl.addFlags(fs)
	c.ingest.addFlags(fs)
	serveGW := fs.Bool("serve-gateway", false, "(internal) run a gateway on loopback and print its URL")
	serveIngestFloor := fs.Bool("serve-ingest-floor", false, "(internal) run the ingest floor server on loopback")
	serveFloor := fs.String("serve-floor", "", "(internal) run the floor server on loopback replaying this recording")
	certFile := fs.String("tls-cert", "", "(internal) the child server's certificate")
	keyFile := fs.String("tls-key", "", "(internal) the child server's key")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loadtest [flags]\n\nLoads the gateway's fan-out and compares it with a bare floor server.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var childTLS *tls.Config
	if *certFile != "" {
		var err error
		if childTLS, err = gateway.ServerTLS(*certFile, *keyFile); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 1
		}
	}
	switch {
	case *serveGW:
		return childServe(ctx, stdout, stderr, childTLS, c.tlsDirect, func(base string) (http.Handler, func(), error) {
			return newGatewayHandler(c.logLevel, stderr, c.cl.node(base))
		})
	case c.cl.serveNATS:
		return childNATS(ctx, stdout, stderr)
	case *serveIngestFloor:
		return childServe(ctx, stdout, stderr, nil, false, func(string) (http.Handler, func(), error) {
			return newIngestFloorHandler(c.logLevel, c.ingest.coalesce, stderr)
		})
	case *serveFloor != "":
		return childServe(ctx, stdout, stderr, childTLS, false, func(string) (http.Handler, func(), error) {
			rec, err := loadRecording(*serveFloor)
			if err != nil {
				return nil, nil, err
			}
			fctx, cancel := context.WithCancel(context.Background())
			return withPprof(newFloorServer(fctx, rec).Handler()), cancel, nil
		})
	}
	if c.soak.duration > 0 {
		c.soak.defaults(fs, &c)
	}
	if err := c.check(); err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	if err := c.setupTLS(); err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	if serverCert != nil {
		defer os.RemoveAll(filepath.Dir(serverCert.CertFile))
	}
	if c.soak.duration > 0 {
		return soakMain(ctx, c, stdout, stderr)
	}
	run := runLoad
	switch {
	case c.cl.nodes > 0:
		run = runCluster
	case c.ingest.publishers > 0:
		run = runIngest
	}
	rep, err := run(ctx, c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	if !c.quiet {
		rep.writeText(stdout)
	}
	line, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", line)
	return 0
}

func (c *config) check() error {
	if c.viewers < 1 || c.streams < 1 || c.slow < 0 {
		return errors.New("-viewers and -streams must be >= 1, -slow >= 0")
	}
	if c.mode != "both" && c.mode != "gateway" && c.mode != "floor" {
		return fmt.Errorf("-mode %q: want both, gateway or floor", c.mode)
	}
	if c.slowMode != "never" && c.slowMode != "trickle" {
		return fmt.Errorf("-slow-mode %q: want never or trickle", c.slowMode)
	}
	if c.url != "" {
		h, err := hostOf(c.url)
		if err != nil {
			return err
		}
		ip := net.ParseIP(h)
		if h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("-url %s: only loopback targets are allowed", c.url)
		}
	}
	if c.tls && c.url != "" {
		return errors.New("-tls serves the gateway the tool starts; for a gateway at -url https://..., trust its certificate with -ca")
	}
	if c.duration <= 0 || c.recordLen < time.Second || c.idle < 500*time.Millisecond {
		return errors.New("-duration must be > 0, -record >= 1s and -idle >= 500ms")
	}
	if err := c.ingest.check(c); err != nil {
		return err
	}
	return c.cl.check(c)
}

// setupTLS makes the run's certificate (-tls) or loads the CA to trust (-ca).
func (c *config) setupTLS() error {
	switch {
	case c.tls:
		dir, err := os.MkdirTemp("", "loadtest-tls")
		if err != nil {
			return err
		}
		if serverCert, err = testcert.Write(dir); err != nil {
			os.RemoveAll(dir)
			return err
		}
		clientTLS = serverCert.ClientConfig()
	case c.caFile != "":
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca %s: no PEM certificate in it", c.caFile)
		}
		clientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	dialer.TLSClientConfig = clientTLS
	return nil
}

// childTLSArgs passes the run's certificate to a child server.
func childTLSArgs() []string {
	if serverCert == nil {
		return nil
	}
	return []string{"-tls-cert", serverCert.CertFile, "-tls-key", serverCert.KeyFile}
}

// serverTLS is the TLS config of servers started in this process (nil: plain).
func serverTLS() (*tls.Config, error) {
	if serverCert == nil {
		return nil, nil
	}
	return gateway.ServerTLS(serverCert.CertFile, serverCert.KeyFile)
}

func hostOf(u string) (string, error) {
	rest, ok := strings.CutPrefix(u, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(u, "https://")
	}
	if !ok {
		return "", fmt.Errorf("-url %s: want http://host:port or https://host:port", u)
	}
	rest, _, _ = strings.Cut(rest, "/")
	h, _, err := net.SplitHostPort(rest)
	if err != nil {
		return "", fmt.Errorf("-url %s: %w", u, err)
	}
	return h, nil
}

// report is the tool's output (also the JSON line).
type report struct {
	Time      string         `json:"time"`
	Viewers   int            `json:"viewers"`
	Streams   int            `json:"streams"`
	Slow      int            `json:"slow"`
	SlowMode  string         `json:"slowMode,omitempty"`
	Audio     bool           `json:"audio"`
	Duration  float64        `json:"durationS"`
	Gateway   *phaseResult   `json:"gateway,omitempty"`
	Floor     *phaseResult   `json:"floor,omitempty"`
	Ratio     map[string]any `json:"ratioGatewayToFloor,omitempty"`
	Publisher *pubStats      `json:"publisher,omitempty"`
	Cluster   *clusterReport `json:"cluster,omitempty"`
	Ingest    *ingestReport  `json:"ingest,omitempty"`
}

type pubStats struct {
	Frames        int64 `json:"frames"`
	LateTicks     int64 `json:"lateTicks"`
	KeyframeAsked int64 `json:"keyframeRequests"`
}

func runLoad(ctx context.Context, c config, stderr io.Writer) (*report, error) {
	video, audio, err := loadMedia(c)
	if err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if !c.quiet {
			fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...)
		}
	}
	rep := &report{Time: time.Now().UTC().Format(time.RFC3339), Viewers: c.viewers, Streams: c.streams, Slow: c.slow, Audio: !c.noAudio, Duration: c.duration.Seconds()}
	if c.slow > 0 {
		rep.SlowMode = c.slowMode
	}
	gw, err := startGateway(ctx, c, stderr)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	defer gw.stop()
	logf("gateway at %s (pid %d)", gw.base, gw.pid)

	var pubs []*whipclient.Publisher
	stopPubs := func() {
		var ps pubStats
		for _, p := range pubs {
			ps.Frames += p.FramesSent()
			ps.LateTicks += p.LateTicks()
			ps.KeyframeAsked += p.KeyframeRequests()
			p.Close()
		}
		if pubs != nil {
			rep.Publisher = &ps
		}
		pubs = nil
	}
	defer stopPubs()
	pubs, err = publishMany(ctx, c.streams, c.ingest.parallel, func(ctx context.Context, i int) (*whipclient.Publisher, error) {
		p, err := whipclient.Publish(ctx, whipclient.Options{
			URL: gw.base + "/whip/" + streamName(i), Video: video, Audio: audio, FPS: c.fps,
			LoopbackOnly: true, Lightweight: true, StampVideo: stampFrame, TLS: clientTLS,
			// Hundreds of publishers connecting on a busy box take a while.
			ConnectTimeout: 60 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", streamName(i), err)
		}
		return p, nil
	}, func(p *whipclient.Publisher) { p.Close() })
	if err != nil {
		return nil, err
	}
	logf("%d publisher(s) live; recording %s of %s", len(pubs), c.recordLen, streamName(0))
	rctx, rcancel := context.WithTimeout(ctx, c.recordLen+15*time.Second)
	rec, err := record(rctx, wsURL(gw.base, streamName(0)), c.recordLen, c.fps)
	rcancel()
	if err != nil {
		return nil, err
	}
	logf("recorded %d segments", len(rec.Segs))

	if c.mode != "floor" {
		logf("gateway phase: %d viewers", c.viewers)
		res, err := runPhase(ctx, c, gw, c.gatewayProfile)
		if err != nil {
			return nil, err
		}
		rep.Gateway = res
	}
	stopPubs()
	if c.mode != "gateway" {
		fl, err := startFloor(ctx, c, rec, stderr)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		logf("floor phase at %s (pid %d): %d viewers", fl.base, fl.pid, c.viewers)
		res, err := runPhase(ctx, c, fl, c.floorProfile)
		fl.stop()
		if err != nil {
			return nil, err
		}
		rep.Floor = res
	}
	if rep.Gateway != nil && rep.Floor != nil {
		rep.Ratio = ratios(rep.Gateway, rep.Floor)
	}
	return rep, ctx.Err()
}
