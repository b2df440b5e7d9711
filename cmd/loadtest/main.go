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
// See README.md, "Load tool", for every flag and the output.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/testcert"
	"github.com/mseway/mseway/internal/testkit/whipclient"
	"github.com/mseway/mseway/mseout"
)

type config struct {
	viewers, streams     int
	slow                 int
	slowMode             string
	trickleRate          int
	slowRcvbuf           int
	duration, ramp       time.Duration
	warmup, recordLen    time.Duration
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
	serveGW := fs.Bool("serve-gateway", false, "(internal) run a gateway on loopback and print its URL")
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
		return childServe(ctx, stdout, stderr, childTLS, c.tlsDirect, func() (http.Handler, func(), error) { return newGatewayHandler(c.logLevel, stderr) })
	case *serveFloor != "":
		return childServe(ctx, stdout, stderr, childTLS, false, func() (http.Handler, func(), error) {
			rec, err := loadRecording(*serveFloor)
			if err != nil {
				return nil, nil, err
			}
			fctx, cancel := context.WithCancel(context.Background())
			return withPprof(newFloorServer(fctx, rec).Handler()), cancel, nil
		})
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
	rep, err := runLoad(ctx, c, stderr)
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
	if c.duration <= 0 || c.recordLen < time.Second {
		return errors.New("-duration must be > 0 and -record >= 1s")
	}
	return nil
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
}

type pubStats struct {
	Frames        int64 `json:"frames"`
	LateTicks     int64 `json:"lateTicks"`
	KeyframeAsked int64 `json:"keyframeRequests"`
}

func runLoad(ctx context.Context, c config, stderr io.Writer) (*report, error) {
	video, err := mediafile.ReadH264(c.videoPath)
	if err != nil {
		return nil, err
	}
	var audio [][]byte
	if !c.noAudio {
		if audio, err = mediafile.ReadOggOpus(c.audioPath); err != nil {
			return nil, err
		}
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
	for i := range c.streams {
		pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := whipclient.Publish(pctx, whipclient.Options{
			URL: gw.base + "/whip/" + streamName(i), Video: video, Audio: audio, FPS: c.fps,
			LoopbackOnly: true, Lightweight: true, StampVideo: stampFrame, TLS: clientTLS,
		})
		pcancel()
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", streamName(i), err)
		}
		pubs = append(pubs, p)
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

// phaseResult is one phase's figures.
type phaseResult struct {
	Target             string     `json:"target"`
	LoadAvg            [2]float64 `json:"loadAvg1m"`       // at start, at end
	CPUIdlePct         float64    `json:"cpuIdlePct"`      // server CPU before viewers (% of one core)
	CPUPct             float64    `json:"cpuPct"`          // server CPU in the window
	CPUPerViewerPct    float64    `json:"cpuPerViewerPct"` // (cpuPct - cpuIdlePct) / viewers
	ClientCPUPct       float64    `json:"clientCpuPct"`    // the load tool's own CPU in the window
	RSSBaseKiB         int64      `json:"rssBaseKiB"`      // server RSS before viewers
	RSSKiB             int64      `json:"rssKiB"`          // at the end of the window
	RSSPerViewerKiB    float64    `json:"rssPerViewerKiB"` // (rss - base) / (viewers + slow)
	Connected          int        `json:"connected"`       // viewers that got a media segment
	Errors             int        `json:"errors"`          // viewers with an error
	ErrorSamples       []string   `json:"errorSamples,omitempty"`
	LatencyMs          latStats   `json:"latencyMs"` // all stamped video frames of all viewers in the window
	ViewersP99Under20  int        `json:"viewersP99Under20ms"`
	ViewersP99Under50  int        `json:"viewersP99Under50msNoSkips"` // and zero skipped frames
	TTFFMs             latStats   `json:"ttffMs"`
	Frames             int        `json:"frames"`           // video frames received in the window, all viewers
	FramesPerViewer    [2]int     `json:"framesPerViewer"`  // min, max
	SkippedFrames      int        `json:"skippedFrames"`    // missed by a viewer, not by its whole stream
	ViewersWithSkips   int        `json:"viewersWithSkips"` // viewers that missed frames their stream had
	StreamGapFrames    int        `json:"streamGapFrames"`  // frames missing for every viewer of a stream (publisher or ingest)
	UnstampedFrames    int        `json:"unstampedFrames"`
	ThroughputKbps     [2]float64 `json:"throughputKbps"` // min, mean per viewer
	SlowClosed         int        `json:"slowClosedByServer,omitempty"`
	SlowErrorMessages  int        `json:"slowGotError,omitempty"`
	SlowClosedAfterSec []float64  `json:"slowClosedAfterS,omitempty"`
}

type latStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// pct returns the q quantile of sorted a (nearest rank).
func pct(a []uint32, q float64) uint32 {
	if len(a) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(a)))) - 1
	return a[min(max(i, 0), len(a)-1)]
}

func statsUS(a []uint32) latStats {
	slices.Sort(a)
	ms := func(v uint32) float64 { return math.Round(float64(v)/10) / 100 }
	return latStats{P50: ms(pct(a, .5)), P95: ms(pct(a, .95)), P99: ms(pct(a, .99)), Max: ms(pct(a, 1)), N: len(a)}
}

func runPhase(ctx context.Context, c config, tg target, profile string) (*phaseResult, error) {
	res := &phaseResult{Target: tg.base}
	res.LoadAvg[0] = loadAvg()
	rss0, _ := procRSS(tg.pid)
	idle := startCPU(tg.pid)
	sleep(ctx, 2*time.Second)
	res.CPUIdlePct = idle.percent()
	res.RSSBaseKiB = rss0

	now := time.Now()
	win := &window{start: now.Add(c.ramp + c.warmup)}
	win.end = win.start.Add(c.duration)
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	viewers := make([]*viewer, c.viewers)
	for i := range viewers {
		viewers[i] = &viewer{url: wsURL(tg.base, streamName(i%c.streams)), win: win}
	}
	slow := make([]*slowViewer, c.slow)
	for i := range slow {
		rate := 0
		if c.slowMode == "trickle" {
			rate = c.trickleRate
		}
		slow[i] = &slowViewer{url: wsURL(tg.base, streamName(0)), rate: rate, rcvbuf: c.slowRcvbuf}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slow[i].run(vctx)
		}()
	}
	wg.Add(1)
	go func() { // ramp
		defer wg.Done()
		for i, v := range viewers {
			at := now.Add(time.Duration(int64(c.ramp) * int64(i) / int64(len(viewers))))
			if !sleep(vctx, time.Until(at)) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				v.run(vctx)
			}()
		}
	}()
	if !sleep(ctx, time.Until(win.start)) {
		return nil, ctx.Err()
	}
	cpu := startCPU(tg.pid)
	self := startCPU(os.Getpid())
	var profErr error
	profDone := make(chan struct{})
	if profile != "" {
		go func() {
			defer close(profDone)
			profErr = fetchProfile(tg.base, profile, c.duration)
		}()
	} else {
		close(profDone)
	}
	if !sleep(ctx, time.Until(win.end)) {
		return nil, ctx.Err()
	}
	res.CPUPct = cpu.percent()
	res.ClientCPUPct = self.percent()
	res.RSSKiB, _ = procRSS(tg.pid)
	res.LoadAvg[1] = loadAvg()
	<-profDone
	if profErr != nil {
		return nil, fmt.Errorf("profile: %w", profErr)
	}
	cancel()
	for _, v := range viewers {
		v.closeConn()
	}
	wg.Wait()
	var dwg sync.WaitGroup
	for _, s := range slow {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			s.drain(5 * time.Second)
		}()
	}
	dwg.Wait()

	n := c.viewers
	res.CPUPerViewerPct = round4((res.CPUPct - res.CPUIdlePct) / float64(n))
	res.CPUPct, res.CPUIdlePct, res.ClientCPUPct = round2(res.CPUPct), round2(res.CPUIdlePct), round2(res.ClientCPUPct)
	res.RSSPerViewerKiB = math.Round(float64(res.RSSKiB-res.RSSBaseKiB)/float64(n+c.slow)*10) / 10
	var all, ttff []uint32
	minFrames, maxFrames := math.MaxInt, 0
	minKbps, sumKbps := math.MaxFloat64, 0.0
	seen := map[string]bool{}
	// A gap every viewer of a stream saw is the stream's (the publisher fell
	// behind, packets were lost before the gateway): it is not the fan-out's.
	streamGap := make([]int, c.streams)
	for i := range streamGap {
		streamGap[i] = math.MaxInt
	}
	for i, v := range viewers {
		if v.res.ttff > 0 {
			streamGap[i%c.streams] = min(streamGap[i%c.streams], v.res.skipped)
		}
	}
	for i := range streamGap {
		if streamGap[i] == math.MaxInt {
			streamGap[i] = 0
		}
		res.StreamGapFrames += streamGap[i]
	}
	for i, v := range viewers {
		r := &v.res
		r.skipped -= streamGap[i%c.streams]
		if r.err != "" || r.serverErr != "" {
			res.Errors++
			msg := r.err
			if r.serverErr != "" {
				msg = "server error: " + r.serverErr
			}
			if !seen[msg] && len(seen) < 5 {
				seen[msg] = true
				res.ErrorSamples = append(res.ErrorSamples, msg)
			}
		}
		if r.ttff > 0 {
			res.Connected++
			ttff = append(ttff, uint32(r.ttff/time.Microsecond))
		}
		all = append(all, r.lat...)
		slices.Sort(r.lat)
		p99 := pct(r.lat, .99)
		if len(r.lat) > 0 && p99 < 20000 {
			res.ViewersP99Under20++
		}
		if len(r.lat) > 0 && p99 < 50000 && r.skipped == 0 && r.err == "" && r.serverErr == "" {
			res.ViewersP99Under50++
		}
		res.Frames += r.frames
		res.SkippedFrames += r.skipped
		res.UnstampedFrames += r.badStamp
		if r.skipped > 0 {
			res.ViewersWithSkips++
		}
		minFrames, maxFrames = min(minFrames, r.frames), max(maxFrames, r.frames)
		kbps := float64(r.bytes) * 8 / 1000 / c.duration.Seconds()
		minKbps, sumKbps = min(minKbps, kbps), sumKbps+kbps
	}
	res.FramesPerViewer = [2]int{minFrames, maxFrames}
	res.ThroughputKbps = [2]float64{math.Round(minKbps), math.Round(sumKbps / float64(n))}
	res.LatencyMs = statsUS(all)
	res.TTFFMs = statsUS(ttff)
	for _, s := range slow {
		if s.res.closed {
			res.SlowClosed++
			if s.res.closedAt > 0 {
				res.SlowClosedAfterSec = append(res.SlowClosedAfterSec, math.Round(s.res.closedAt.Seconds()*10)/10)
			}
		}
		if s.res.serverErr != "" {
			res.SlowErrorMessages++
		}
	}
	return res, nil
}

func fetchProfile(base, path string, d time.Duration) error {
	secs := max(int(d.Seconds())-1, 1)
	client := &http.Client{Timeout: d + 30*time.Second}
	if clientTLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = clientTLS.Clone()
		client.Transport = tr
	}
	resp, err := client.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", base, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
func round4(v float64) float64 { return math.Round(v*10000) / 10000 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round2(a / b)
}

func ratios(g, f *phaseResult) map[string]any {
	return map[string]any{
		"cpuPerViewer":      ratio(g.CPUPerViewerPct, f.CPUPerViewerPct),
		"cpu":               ratio(g.CPUPct, f.CPUPct),
		"rssPerViewer":      ratio(g.RSSPerViewerKiB, f.RSSPerViewerKiB),
		"latencyP50":        ratio(g.LatencyMs.P50, f.LatencyMs.P50),
		"latencyP99":        ratio(g.LatencyMs.P99, f.LatencyMs.P99),
		"viewersP99Under50": ratio(float64(g.ViewersP99Under50), float64(f.ViewersP99Under50)),
	}
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "loadtest %s: %d viewers on %d stream(s), %d slow (%s), audio %v, window %.0fs\n",
		r.Time, r.Viewers, r.Streams, r.Slow, r.SlowMode, r.Audio, r.Duration)
	for _, p := range []struct {
		name string
		r    *phaseResult
	}{{"gateway", r.Gateway}, {"floor", r.Floor}} {
		if p.r == nil {
			continue
		}
		x := p.r
		fmt.Fprintf(w, "%s (%s), load %.2f -> %.2f\n", p.name, x.Target, x.LoadAvg[0], x.LoadAvg[1])
		fmt.Fprintf(w, "  server CPU %.2f%% of a core (idle %.2f%%): %.4f%% per viewer; load tool CPU %.2f%%\n", x.CPUPct, x.CPUIdlePct, x.CPUPerViewerPct, x.ClientCPUPct)
		fmt.Fprintf(w, "  server RSS %d KiB (base %d KiB): %.1f KiB per viewer\n", x.RSSKiB, x.RSSBaseKiB, x.RSSPerViewerKiB)
		fmt.Fprintf(w, "  viewers connected %d/%d, errors %d %q\n", x.Connected, r.Viewers, x.Errors, x.ErrorSamples)
		fmt.Fprintf(w, "  latency ms p50 %.2f p95 %.2f p99 %.2f max %.2f (%d frames, %d unstamped)\n", x.LatencyMs.P50, x.LatencyMs.P95, x.LatencyMs.P99, x.LatencyMs.Max, x.LatencyMs.N, x.UnstampedFrames)
		fmt.Fprintf(w, "  viewers with p99 < 20 ms: %d; with p99 < 50 ms and no skipped frame: %d\n", x.ViewersP99Under20, x.ViewersP99Under50)
		fmt.Fprintf(w, "  time to first frame ms p50 %.1f p95 %.1f max %.1f\n", x.TTFFMs.P50, x.TTFFMs.P95, x.TTFFMs.Max)
		fmt.Fprintf(w, "  frames per viewer %d..%d, skipped %d (%d viewers; %d more missing from the streams themselves), throughput kbit/s min %.0f mean %.0f\n", x.FramesPerViewer[0], x.FramesPerViewer[1], x.SkippedFrames, x.ViewersWithSkips, x.StreamGapFrames, x.ThroughputKbps[0], x.ThroughputKbps[1])
		if r.Slow > 0 {
			fmt.Fprintf(w, "  slow viewers closed by the server %d/%d (error message seen by %d), after %v s\n", x.SlowClosed, r.Slow, x.SlowErrorMessages, x.SlowClosedAfterSec)
		}
	}
	if r.Ratio != nil {
		fmt.Fprintf(w, "gateway / floor: %v\n", r.Ratio)
	}
}
