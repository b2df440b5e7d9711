package main

// Soak mode (-soak D): one publisher that republishes every -republish, N
// viewers with churn, and a sample of the gateway process every -sample
// (RSS, open fds, threads, goroutines, what the viewers got), to show whether
// the gateway holds steady over a long run. See README.md, "Load tool".

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// soakConfig holds the soak mode's flags.
type soakConfig struct {
	duration     time.Duration
	republish    time.Duration
	churn        float64
	churnEvery   time.Duration
	sample       time.Duration
	warm         time.Duration
	resumeWithin time.Duration
	drainWait    time.Duration
	csv          string
}

func (s *soakConfig) addFlags(fs *flag.FlagSet) {
	fs.DurationVar(&s.duration, "soak", 0, "soak mode: run this long (e.g. 30m) with viewer churn and republishes, sampling the gateway's RSS, fds, threads and goroutines (-viewers defaults to 200)")
	fs.DurationVar(&s.republish, "republish", time.Minute, "soak: end the publish (WHIP DELETE) and publish anew this often; 0 = never")
	fs.Float64Var(&s.churn, "churn", 0.1, "soak: fraction of the viewers replaced per 10 s (random viewers leave, as many join)")
	fs.DurationVar(&s.churnEvery, "churn-every", 5*time.Second, "soak: churn step")
	fs.DurationVar(&s.sample, "sample", 10*time.Second, "soak: sampling interval")
	fs.DurationVar(&s.warm, "soak-warm", 2*time.Minute, "soak: growth is measured from the first sample at or after this much time (warm) to the last sample")
	fs.DurationVar(&s.resumeWithin, "resume-within", 5*time.Second, "soak: every viewer must get media again this soon after a republish is live")
	fs.DurationVar(&s.drainWait, "drain-wait", 5*time.Second, "soak: after the viewers and the publisher left, wait this long before the last (drained) sample")
	fs.StringVar(&s.csv, "soak-csv", "", "soak: write the samples as CSV to this file")
}

// defaults applies the soak mode's defaults of shared flags the user did not set.
func (s *soakConfig) defaults(fs *flag.FlagSet, c *config) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["viewers"] {
		c.viewers = 200
	}
}

func (s *soakConfig) check(c config) error {
	switch {
	case c.streams != 1:
		return errors.New("-soak uses one stream: leave -streams at 1")
	case c.slow != 0:
		return errors.New("-soak has no slow viewers: leave -slow at 0")
	case s.churn < 0 || s.churn > 1:
		return fmt.Errorf("-churn %v: want a fraction 0..1", s.churn)
	case s.republish < 0, s.churnEvery <= 0, s.sample <= 0, s.resumeWithin <= 0, s.warm < 0, s.drainWait < 0:
		return errors.New("-republish, -soak-warm, -drain-wait must be >= 0; -churn-every, -sample, -resume-within > 0")
	case s.warm >= s.duration:
		return fmt.Errorf("-soak-warm %s must be shorter than -soak %s", s.warm, s.duration)
	}
	return nil
}

// soakSample is the gateway and the viewers at one moment; the counts of
// frames, joins and leaves are since the previous sample.
type soakSample struct {
	T          float64 `json:"t"` // seconds since the soak started (baseline: before it)
	Label      string  `json:"label,omitempty"`
	RSSKiB     int64   `json:"rssKiB"`     // -1: no pid
	FDs        int     `json:"fds"`        // entries of /proc/PID/fd; -1: unknown
	Threads    int     `json:"threads"`    // /proc/PID/status Threads; -1: unknown
	Goroutines int     `json:"goroutines"` // -1: the gateway does not tell
	GWViewers  int     `json:"gatewayViewers"`
	GWPubs     int     `json:"gatewayPublishers"`
	CPUPct     float64 `json:"cpuPct"` // gateway, % of one core since the previous sample
	Viewers    int     `json:"viewers"`
	Receiving  int     `json:"receiving"` // viewers that got a video frame since the previous sample
	Idle       int     `json:"idle"`      // viewers open since the previous sample that got no video frame
	Frames     int64   `json:"frames"`
	FPS        float64 `json:"framesPerS"`
	LatP50     float64 `json:"latP50ms"`
	LatP99     float64 `json:"latP99ms"`
	Load1      float64 `json:"loadAvg1m"` // the machine's
	Joins      int     `json:"joins"`
	Leaves     int     `json:"leaves"`
	Failures   int     `json:"failures"`    // unexpected viewer ends, total so far
	Republish  int     `json:"republishes"` // total so far
}

// republishResult is one end-and-restart of the publish and how the viewers
// came through it.
type republishResult struct {
	N            int     `json:"n"`
	AtS          float64 `json:"atS"` // the DELETE, seconds since the start
	DeleteStatus int     `json:"deleteStatus"`
	GapMs        float64 `json:"gapMs"` // DELETE sent -> the new publish connected
	PublishTries int     `json:"publishTries"`
	Viewers      int     `json:"viewers"`       // had media before the DELETE and were still there at the check (-resume-within after the new publish)
	Left         int     `json:"left"`          // had media before, left by churn before the check
	Failed       int     `json:"failed"`        // had media before, ended unexpectedly before the check
	NoEOS        int     `json:"noEos"`         // never got eos after the DELETE
	Resumed      int     `json:"resumed"`       // eos, then init, then a video frame
	InTime       int     `json:"resumedInTime"` // ... within -resume-within of the new publish
	OutageP50Ms  float64 `json:"outageP50ms"`   // DELETE -> first video frame of the new publish
	OutageMaxMs  float64 `json:"outageMaxMs"`
	AfterLiveMax float64 `json:"afterLiveMaxMs"` // new publish connected -> first video frame, the slowest viewer
}

// growthResult compares one gauge at the end with the warm sample.
type growthResult struct {
	Name    string  `json:"name"`
	Warm    float64 `json:"warm"`
	End     float64 `json:"end"`
	Max     float64 `json:"max"` // over the samples from warm on
	Ratio   float64 `json:"ratio"`
	Delta   float64 `json:"delta"`
	PerHour float64 `json:"slopePerHour"` // least-squares slope over the samples from warm on
	// The medians of the first and of the last minute of samples from warm
	// on (a single sample may catch a transient, e.g. writer goroutines of
	// viewers whose sockets are momentarily full).
	WarmMedian float64 `json:"warmMedian"`
	EndMedian  float64 `json:"endMedian"`
	MedRatio   float64 `json:"medianRatio"`
	Baseline   float64 `json:"baseline"` // before any publisher or viewer
	Drained    float64 `json:"drained"`  // after all left
	Suspected  bool    `json:"possibleLeak"`
}

type soakReport struct {
	Time            string            `json:"time"`
	Target          string            `json:"target"`
	PID             int               `json:"pid"`
	Viewers         int               `json:"viewers"`
	DurationS       float64           `json:"durationS"`
	RepublishS      float64           `json:"republishS"`
	ResumeWithinS   float64           `json:"resumeWithinS"`
	WarmS           float64           `json:"warmS"`
	SampleS         float64           `json:"sampleS"`
	Churn           float64           `json:"churnPer10s"`
	GoroutineSource string            `json:"goroutineSource"`
	Baseline        soakSample        `json:"baseline"`
	Samples         []soakSample      `json:"samples"`
	Drained         soakSample        `json:"drained"`
	Republishes     []republishResult `json:"republishResults"`
	PublishFailures []string          `json:"publishFailures,omitempty"`
	Joins           int               `json:"joins"`
	Leaves          int               `json:"leaves"`
	Failures        int               `json:"failures"`
	FailureKinds    map[string]int    `json:"failureKinds,omitempty"`
	Inits           int64             `json:"inits"`
	EOS             int64             `json:"eos"`
	Growth          []growthResult    `json:"growth"`
	Findings        []string          `json:"findings"`
	Verdict         string            `json:"verdict"`
	Publisher       *pubStats         `json:"publisher,omitempty"`
}

// soakViewer is a load viewer (viewer.run) with live counters.
type soakViewer struct {
	s       *soak
	v       *viewer
	cancel  context.CancelFunc
	joined  time.Time
	churned atomic.Bool
	ended   atomic.Bool

	frames    atomic.Int64
	first     time.Time    // the viewer's goroutine only: its first video frame
	lastEOS   atomic.Int64 // unix ns
	lastInit  atomic.Int64
	resumedAt atomic.Int64 // the first video frame after the latest init
	armed     bool         // the viewer's goroutine only: the next video frame is the first after an init
}

func (sv *soakViewer) onInit(at time.Time) {
	sv.lastInit.Store(at.UnixNano())
	sv.armed = true
	sv.s.inits.Add(1)
}

func (sv *soakViewer) onEOS(at time.Time) {
	sv.lastEOS.Store(at.UnixNano())
	sv.s.eos.Add(1)
}

func (sv *soakViewer) onVideoFrame(at time.Time, lat time.Duration) {
	sv.frames.Add(1)
	sv.s.frames.Add(1)
	if sv.armed {
		sv.armed = false
		sv.resumedAt.Store(at.UnixNano())
	}
	if sv.first.IsZero() {
		sv.first = at
	}
	// A joining viewer starts with the GOP cache: frames up to a GOP old,
	// sent at once. Their age is not a delivery latency: skip its first
	// second of frames.
	if lat >= 0 && at.Sub(sv.first) >= latencySkip {
		sv.s.latMu.Lock()
		sv.s.lat = append(sv.s.lat, uint32(min(lat.Microseconds(), 1<<31)))
		sv.s.latMu.Unlock()
	}
}

// latencySkip is how long after its first frame a viewer's frames start
// counting for latency.
const latencySkip = time.Second

// soak is one soak run.
type soak struct {
	c      config
	gw     target
	logf   func(string, ...any)
	vctx   context.Context // the viewers'
	wg     sync.WaitGroup
	client *http.Client

	mu           sync.Mutex
	live         map[*soakViewer]bool
	joins        int
	leaves       int
	failures     int
	failureKinds map[string]int
	stopping     bool
	// joins and leaves at the previous sample
	sampledJoins, sampledLeaves int

	frames, inits, eos atomic.Int64
	latMu              sync.Mutex
	lat                []uint32

	goroutineSource string
	republishes     atomic.Int64
}

func soakMain(ctx context.Context, c config, stdout, stderr io.Writer) int {
	if err := c.soak.check(c); err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	rep, err := runSoak(ctx, c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	if !c.quiet {
		rep.writeText(stdout)
	}
	if c.soak.csv != "" {
		if err := rep.writeCSV(c.soak.csv); err != nil {
			fmt.Fprintf(stderr, "loadtest: -soak-csv: %v\n", err)
			return 1
		}
	}
	line, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", line)
	if len(rep.Findings) > 0 {
		return 3
	}
	return 0
}

// loadMedia reads the files to publish.
func loadMedia(c config) ([]mediafile.AccessUnit, [][]byte, error) {
	video, err := mediafile.ReadH264(c.videoPath)
	if err != nil {
		return nil, nil, err
	}
	var audio [][]byte
	if !c.noAudio {
		if audio, err = mediafile.ReadOggOpus(c.audioPath); err != nil {
			return nil, nil, err
		}
	}
	return video, audio, nil
}

func runSoak(ctx context.Context, c config, stderr io.Writer) (*soakReport, error) {
	video, audio, err := loadMedia(c)
	if err != nil {
		return nil, err
	}
	s := &soak{c: c, live: map[*soakViewer]bool{}, failureKinds: map[string]int{}}
	s.logf = func(format string, a ...any) {
		if !c.quiet {
			fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...)
		}
	}
	s.client = &http.Client{Timeout: 5 * time.Second, Transport: whipTransport()}
	gw, err := startGateway(ctx, c, stderr)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	defer gw.stop()
	s.gw = gw
	s.goroutineSource = s.findGoroutineSource()
	s.logf("soak: gateway at %s (pid %d), goroutines from %s", gw.base, gw.pid, s.goroutineSource)
	rep := &soakReport{
		Time: time.Now().UTC().Format(time.RFC3339), Target: gw.base, PID: gw.pid, Viewers: c.viewers,
		DurationS: c.soak.duration.Seconds(), RepublishS: c.soak.republish.Seconds(), Churn: c.soak.churn,
		ResumeWithinS: c.soak.resumeWithin.Seconds(), WarmS: c.soak.warm.Seconds(), SampleS: c.soak.sample.Seconds(),
		GoroutineSource: s.goroutineSource,
	}
	cpu := startCPU(gw.pid)
	rep.Baseline = s.takeSample(0, &cpu, nil, 0)
	rep.Baseline.Label = "baseline"

	publish := func() (*whipclient.Publisher, int, error) {
		var lastErr error
		for try := 1; try <= 5; try++ {
			pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			p, err := whipclient.Publish(pctx, whipclient.Options{
				URL: gw.base + "/whip/" + streamName(0), Video: video, Audio: audio, FPS: c.fps,
				LoopbackOnly: true, Lightweight: true, StampVideo: stampFrame, TLS: clientTLS,
			})
			cancel()
			if err == nil {
				return p, try, nil
			}
			lastErr = err
			rep.PublishFailures = append(rep.PublishFailures, fmt.Sprintf("%s: %v", time.Now().UTC().Format(time.TimeOnly), err))
			if !sleep(ctx, time.Second) {
				break
			}
		}
		return nil, 5, lastErr
	}
	pub, _, err := publish()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	var ps pubStats
	closePub := func(p *whipclient.Publisher) int {
		ps.Frames += p.FramesSent()
		ps.LateTicks += p.LateTicks()
		ps.KeyframeAsked += p.KeyframeRequests()
		return p.Close()
	}
	defer func() {
		if pub != nil {
			closePub(pub)
		}
	}()

	start := time.Now()
	end := start.Add(c.soak.duration)
	vctx, vcancel := context.WithCancel(ctx)
	s.vctx = vctx
	stopViewers := sync.OnceFunc(func() {
		s.mu.Lock()
		s.stopping = true
		all := make([]*soakViewer, 0, len(s.live))
		for sv := range s.live {
			all = append(all, sv)
		}
		clear(s.live)
		s.mu.Unlock()
		vcancel()
		for _, sv := range all {
			sv.v.closeConn()
		}
		s.wg.Wait()
	})
	defer stopViewers()
	s.logf("soak: %s, %d viewers, republish every %s, churn %.0f%% per 10 s", c.soak.duration, c.viewers, c.soak.republish, 100*c.soak.churn)

	// The publisher: republish every -republish; -resume-within after each,
	// check how the viewers came through it.
	pubDone := make(chan struct{})
	var pubErr error
	go func() {
		defer close(pubDone)
		if c.soak.republish <= 0 {
			return
		}
		last := start
		for k := 1; ; k++ {
			// Half a sample interval off the samples' times, so that
			// no sample falls into the moment without a publisher.
			at := maxTime(start.Add(time.Duration(k)*c.soak.republish+c.soak.sample/2), last)
			if at.Add(c.soak.resumeWithin + 2*time.Second).After(end) {
				return
			}
			if !sleep(ctx, time.Until(at)) {
				return
			}
			pr := &pendingRepublish{n: k, snapshot: s.hadMedia()}
			pr.deleteAt = time.Now()
			pr.res.AtS = round2(pr.deleteAt.Sub(start).Seconds())
			pr.res.DeleteStatus = closePub(pub)
			pub = nil
			p, tries, err := publish()
			pr.res.PublishTries = tries
			if err != nil {
				pubErr = fmt.Errorf("republish %d: %w", k, err)
				return
			}
			pub = p
			pr.live = time.Now()
			pr.res.GapMs = round2(float64(pr.live.Sub(pr.deleteAt).Microseconds()) / 1000)
			s.republishes.Add(1)
			// The viewers leave only after this goroutine ends, so the
			// check sees them even past the end.
			last = pr.live.Add(c.soak.resumeWithin)
			if !sleep(ctx, time.Until(last)) {
				return
			}
			rep.Republishes = append(rep.Republishes, s.checkRepublish(pr))
		}
	}()

	sampleT := time.NewTicker(c.soak.sample)
	defer sampleT.Stop()
	// Churn steps fall half-way between samples, so that a sample does not
	// catch joins in flight.
	churnT := time.NewTimer(c.soak.churnEvery + c.soak.sample/2)
	defer churnT.Stop()
	endT := time.NewTimer(time.Until(end))
	defer endT.Stop()
	prevFrames := map[*soakViewer]int64{}
	lastSample := start
	// The viewers join over the ramp; churn starts once they all did.
	var rampDone atomic.Bool
	go func() {
		for i := range c.viewers {
			if !sleep(vctx, time.Until(start.Add(time.Duration(int64(c.ramp)*int64(i)/int64(c.viewers))))) {
				return
			}
			s.join()
		}
		rampDone.Store(true)
	}()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-endT.C:
			if time.Since(lastSample) > c.soak.sample/10 {
				rep.Samples = append(rep.Samples, s.takeSample(time.Since(start).Seconds(), &cpu, prevFrames, time.Since(lastSample).Seconds()))
			}
			break loop
		case <-sampleT.C:
			now := time.Now()
			sm := s.takeSample(now.Sub(start).Seconds(), &cpu, prevFrames, now.Sub(lastSample).Seconds())
			lastSample = now
			rep.Samples = append(rep.Samples, sm)
			s.logf("soak %s: RSS %.1f MB, fds %d, threads %d, goroutines %d, viewers %d (gateway %d), %.0f frames/s, p99 %.1f ms, failures %d",
				fmtT(sm.T), float64(sm.RSSKiB)/1024, sm.FDs, sm.Threads, sm.Goroutines, sm.Viewers, sm.GWViewers, sm.FPS, sm.LatP99, sm.Failures)
		case <-churnT.C:
			churnT.Reset(c.soak.churnEvery)
			if rampDone.Load() {
				s.churn()
			}
		}
	}
	<-pubDone
	if pubErr != nil {
		return nil, pubErr
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Everyone leaves; then the drained sample.
	stopViewers()
	if pub != nil {
		closePub(pub)
		pub = nil
	}
	rep.Publisher = &ps
	sleep(ctx, c.soak.drainWait)
	rep.Drained = s.takeSample(time.Since(start).Seconds(), &cpu, nil, 0)
	rep.Drained.Label = "drained"

	s.mu.Lock()
	rep.Joins, rep.Leaves, rep.Failures = s.joins, s.leaves, s.failures
	if len(s.failureKinds) > 0 {
		rep.FailureKinds = s.failureKinds
	}
	s.mu.Unlock()
	rep.Inits, rep.EOS = s.inits.Load(), s.eos.Load()
	rep.judge(c.soak.warm)
	return rep, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// whipTransport is what the tool's HTTP requests (metrics) go over.
func whipTransport() http.RoundTripper {
	if clientTLS == nil {
		return http.DefaultTransport
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = clientTLS.Clone()
	return tr
}

// join starts one more viewer of stream lt0.
func (s *soak) join() {
	vctx, cancel := context.WithCancel(s.vctx)
	sv := &soakViewer{s: s, cancel: cancel, joined: time.Now()}
	sv.v = &viewer{url: wsURL(s.gw.base, streamName(0)), win: &window{}, events: sv}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		cancel()
		return
	}
	s.live[sv] = true
	s.joins++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer cancel()
		sv.v.run(vctx)
		sv.ended.Store(true)
		s.mu.Lock()
		defer s.mu.Unlock()
		if sv.churned.Load() || s.stopping || !s.live[sv] {
			return
		}
		// Not asked to leave: the gateway or the connection ended it.
		delete(s.live, sv)
		s.failures++
		r := &sv.v.res
		kind := r.err
		switch {
		case r.serverErr != "":
			kind = "server error: " + r.serverErr
		case kind == "":
			kind = "ended without an error"
		}
		if len(s.failureKinds) < 20 || s.failureKinds[kind] > 0 {
			s.failureKinds[kind]++
		}
		s.logf("soak: viewer failed after %s: %s", time.Since(sv.joined).Round(time.Millisecond), kind)
	}()
}

// leave closes a viewer on purpose: with a WebSocket close (graceful) or by
// dropping the TCP connection.
func (s *soak) leave(sv *soakViewer, graceful bool) {
	sv.churned.Store(true)
	sv.cancel()
	sv.v.mu.Lock()
	if sv.v.conn != nil {
		if graceful {
			_ = sv.v.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		sv.v.conn.Close()
	}
	sv.v.mu.Unlock()
}

// churn makes each viewer leave with the probability that replaces the
// -churn fraction per 10 s, then tops the viewers up to -viewers (which also
// replaces viewers that failed).
func (s *soak) churn() {
	p := s.c.soak.churn * s.c.soak.churnEvery.Seconds() / 10
	var out []*soakViewer
	s.mu.Lock()
	for sv := range s.live {
		if rand.Float64() < p {
			out = append(out, sv)
			delete(s.live, sv)
			s.leaves++
		}
	}
	need := s.c.viewers - len(s.live)
	s.mu.Unlock()
	for _, sv := range out {
		s.leave(sv, rand.IntN(2) == 0)
	}
	for range need {
		s.join()
	}
}

// pendingRepublish is a republish whose viewers are checked later.
type pendingRepublish struct {
	n        int
	snapshot []*soakViewer // viewers that had media before the DELETE
	deleteAt time.Time
	live     time.Time
	res      republishResult
}

// hadMedia returns the open viewers that got a video frame after their latest init.
func (s *soak) hadMedia() []*soakViewer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*soakViewer
	for sv := range s.live {
		if sv.lastInit.Load() > 0 && sv.resumedAt.Load() >= sv.lastInit.Load() {
			out = append(out, sv)
		}
	}
	return out
}

// checkRepublish tells how the viewers that had media before the DELETE came
// through: eos after the DELETE, then init, then a video frame.
func (s *soak) checkRepublish(pr *pendingRepublish) republishResult {
	r := pr.res
	r.N = pr.n
	del, live := pr.deleteAt.UnixNano(), pr.live.UnixNano()
	var outage []uint32
	for _, sv := range pr.snapshot {
		switch {
		case sv.churned.Load():
			r.Left++
			continue
		case sv.ended.Load():
			r.Failed++
			continue
		}
		r.Viewers++
		eos, init, res := sv.lastEOS.Load(), sv.lastInit.Load(), sv.resumedAt.Load()
		if eos < del {
			r.NoEOS++
			continue
		}
		if init < eos || res < init {
			continue
		}
		r.Resumed++
		outage = append(outage, uint32(min((res-del)/1000, 1<<31)))
		after := time.Duration(res - live)
		if after <= s.c.soak.resumeWithin {
			r.InTime++
		}
		r.AfterLiveMax = max(r.AfterLiveMax, round2(float64(after.Microseconds())/1000))
	}
	st := statsUS(outage)
	r.OutageP50Ms, r.OutageMaxMs = st.P50, st.Max
	return r
}

// findGoroutineSource tells where the gateway's goroutine count comes from:
// its /metrics (go_goroutines), else /debug/pprof/goroutine, else nowhere.
func (s *soak) findGoroutineSource() string {
	if m, err := s.metrics(); err == nil {
		if _, ok := m["go_goroutines"]; ok {
			return "/metrics go_goroutines"
		}
	}
	if _, err := s.pprofGoroutines(); err == nil {
		return "/debug/pprof/goroutine"
	}
	return "none"
}

// metrics reads the gateway's /metrics: the value of each unlabelled sample.
func (s *soak) metrics() (map[string]float64, error) {
	resp, err := s.client.Get(s.gw.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

func (s *soak) pprofGoroutines() (int, error) {
	resp, err := s.client.Get(s.gw.base + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/debug/pprof/goroutine: %s", resp.Status)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, errors.New("/debug/pprof/goroutine: unexpected answer")
	}
	return strconv.Atoi(n)
}

// takeSample samples the gateway and the viewers. prevFrames (nil: no
// viewer figures) holds each viewer's frame count at the previous sample and
// is updated; el is the time since then, in seconds.
func (s *soak) takeSample(t float64, cpu *cpuMeter, prevFrames map[*soakViewer]int64, el float64) soakSample {
	sm := soakSample{T: round2(t), RSSKiB: -1, FDs: -1, Threads: -1, Goroutines: -1, GWViewers: -1, GWPubs: -1, CPUPct: -1}
	if pid := s.gw.pid; pid > 0 {
		if v, err := procRSS(pid); err == nil {
			sm.RSSKiB = v
		}
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			sm.FDs = len(ents)
		}
		if v, err := procStatusInt(pid, "Threads:"); err == nil {
			sm.Threads = int(v)
		}
		sm.CPUPct = round2(cpu.percent())
		sm.Load1 = loadAvg()
		*cpu = startCPU(pid)
	}
	if m, err := s.metrics(); err == nil {
		if v, ok := m["go_goroutines"]; ok {
			sm.Goroutines = int(v)
		}
		if v, ok := m["gateway_viewers"]; ok {
			sm.GWViewers = int(v)
		}
		if v, ok := m["gateway_publishers"]; ok {
			sm.GWPubs = int(v)
		}
	}
	if sm.Goroutines < 0 && s.goroutineSource == "/debug/pprof/goroutine" {
		if n, err := s.pprofGoroutines(); err == nil {
			sm.Goroutines = n
		}
	}
	sm.Republish = int(s.republishes.Load())
	s.mu.Lock()
	sm.Viewers = len(s.live)
	sm.Failures = s.failures
	if prevFrames != nil {
		sm.Joins, sm.Leaves = s.joins-s.sampledJoins, s.leaves-s.sampledLeaves
		s.sampledJoins, s.sampledLeaves = s.joins, s.leaves
		for sv := range prevFrames {
			if !s.live[sv] {
				delete(prevFrames, sv)
			}
		}
		for sv := range s.live {
			n := sv.frames.Load()
			prev, seen := prevFrames[sv]
			if n > prev {
				sm.Receiving++
			} else if seen {
				sm.Idle++
			}
			prevFrames[sv] = n
		}
	}
	s.mu.Unlock()
	if prevFrames != nil {
		sm.Frames = s.frames.Swap(0)
		if el > 0 {
			sm.FPS = math.Round(float64(sm.Frames)/el*10) / 10
		}
		s.latMu.Lock()
		lat := s.lat
		s.lat = nil
		s.latMu.Unlock()
		st := statsUS(lat)
		sm.LatP50, sm.LatP99 = st.P50, st.P99
	} else {
		s.frames.Store(0)
	}
	return sm
}

// procStatusInt reads a numeric field of /proc/PID/status (key with its colon).
func procStatusInt(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
}

// judge compares the gauges at the end with the warm sample, and the drained
// gateway with its baseline, and lists what looks wrong.
func (r *soakReport) judge(warm time.Duration) {
	r.Findings = []string{}
	if len(r.Samples) == 0 {
		r.Findings = append(r.Findings, "no samples")
		r.Verdict = "no samples"
		return
	}
	wi := slices.IndexFunc(r.Samples, func(s soakSample) bool { return s.T >= warm.Seconds() })
	if wi < 0 {
		wi = len(r.Samples) - 1
	}
	after := r.Samples[wi:]
	gauges := []struct {
		name string
		get  func(soakSample) float64
	}{
		{"RSS MB", func(s soakSample) float64 { return float64(s.RSSKiB) / 1024 }},
		{"fds", func(s soakSample) float64 { return float64(s.FDs) }},
		{"threads", func(s soakSample) float64 { return float64(s.Threads) }},
		{"goroutines", func(s soakSample) float64 { return float64(s.Goroutines) }},
	}
	for _, g := range gauges {
		w, e := g.get(after[0]), g.get(after[len(after)-1])
		if w < 0 || e < 0 {
			continue // not measured
		}
		gr := growthResult{Name: g.name, Warm: round2(w), End: round2(e), Delta: round2(e - w), Baseline: round2(g.get(r.Baseline)), Drained: round2(g.get(r.Drained))}
		var xs, ys []float64
		for _, s := range after {
			gr.Max = max(gr.Max, round2(g.get(s)))
			xs, ys = append(xs, s.T), append(ys, g.get(s))
		}
		if w > 0 {
			gr.Ratio = round4(e / w)
		}
		gr.PerHour = round2(slope(xs, ys) * 3600)
		n := 1
		if r.SampleS > 0 {
			n = int(math.Round(60 / r.SampleS))
		}
		n = max(1, min(n, len(ys)/3))
		gr.WarmMedian, gr.EndMedian = round2(median(ys[:n])), round2(median(ys[len(ys)-n:]))
		if gr.WarmMedian > 0 {
			gr.MedRatio = round4(gr.EndMedian / gr.WarmMedian)
		}
		gr.Suspected = w > 0 && e > 1.2*w
		if gr.Suspected {
			r.Findings = append(r.Findings, fmt.Sprintf("%s grew %.0f%% from warm (%s: %g) to the end (%g), medians of a minute %g -> %g: possible leak", g.name, 100*(gr.Ratio-1), fmtT(after[0].T), gr.Warm, gr.End, gr.WarmMedian, gr.EndMedian))
		}
		// Go keeps its threads and heap: only fds and goroutines must come back.
		if (g.name == "fds" || g.name == "goroutines") && gr.Baseline > 0 && gr.Drained > 1.2*gr.Baseline {
			r.Findings = append(r.Findings, fmt.Sprintf("%s after everyone left (%g) is %.0f%% above the idle baseline (%g)", g.name, gr.Drained, 100*(gr.Drained/gr.Baseline-1), gr.Baseline))
		}
		r.Growth = append(r.Growth, gr)
	}
	if r.Failures > 0 {
		r.Findings = append(r.Findings, fmt.Sprintf("%d viewers ended unexpectedly (%v)", r.Failures, r.FailureKinds))
	}
	idle := 0
	for _, s := range r.Samples {
		idle += s.Idle
	}
	if idle > 0 {
		r.Findings = append(r.Findings, fmt.Sprintf("%d viewer-intervals without a video frame (viewers open, not receiving)", idle))
	}
	for _, rp := range r.Republishes {
		if rp.InTime < rp.Viewers || rp.Failed > 0 {
			r.Findings = append(r.Findings, fmt.Sprintf("republish %d: %d of %d viewers resumed within the limit (%d resumed at all, %d without eos, %d failed)", rp.N, rp.InTime, rp.Viewers, rp.Resumed, rp.NoEOS, rp.Failed))
		}
	}
	if len(r.PublishFailures) > 0 {
		r.Findings = append(r.Findings, fmt.Sprintf("%d publish attempts failed", len(r.PublishFailures)))
	}
	if r.Drained.GWViewers > 0 || r.Drained.GWPubs > 0 {
		r.Findings = append(r.Findings, fmt.Sprintf("after everyone left the gateway still counts %d viewers, %d publishers", r.Drained.GWViewers, r.Drained.GWPubs))
	}
	if len(r.Findings) == 0 {
		r.Verdict = "steady: no gauge grew more than 20% after warm-up, every viewer resumed after every republish, no unexpected viewer failure"
	} else {
		r.Verdict = "FINDINGS: " + strings.Join(r.Findings, "; ")
	}
}

func median(a []float64) float64 {
	if len(a) == 0 {
		return 0
	}
	b := slices.Clone(a)
	slices.Sort(b)
	if len(b)%2 == 1 {
		return b[len(b)/2]
	}
	return (b[len(b)/2-1] + b[len(b)/2]) / 2
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func fmtT(t float64) string {
	s := int(math.Round(t))
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

func intOrNA(v int) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.Itoa(v)
}

func (r *soakReport) writeText(w io.Writer) {
	warm := time.Duration(r.WarmS * float64(time.Second))
	fmt.Fprintf(w, "soak: %d viewers on %s, republish every %gs, churn %.0f%% per 10 s, %s; gateway %s (pid %d); goroutines from %s\n\n",
		r.Viewers, streamName(0), r.RepublishS, 100*r.Churn, time.Duration(r.DurationS*float64(time.Second)), r.Target, r.PID, r.GoroutineSource)
	fmt.Fprintf(w, "%8s %8s %6s %7s %10s %7s %7s %9s %9s %7s %6s %6s %5s %6s %5s\n",
		"time", "RSS MB", "fds", "threads", "goroutines", "viewers", "gw view", "frames/s", "fps/view", "p99 ms", "joins", "leaves", "fails", "cpu%", "load")
	row := func(label string, s soakSample) {
		fpv := 0.0
		if s.Viewers > 0 {
			fpv = s.FPS / float64(s.Viewers)
		}
		fmt.Fprintf(w, "%8s %8.1f %6s %7s %10s %7d %7s %9.0f %9.1f %7.1f %6d %6d %5d %6.1f %5.2f\n",
			label, float64(s.RSSKiB)/1024, intOrNA(s.FDs), intOrNA(s.Threads), intOrNA(s.Goroutines), s.Viewers, intOrNA(s.GWViewers),
			s.FPS, fpv, s.LatP99, s.Joins, s.Leaves, s.Failures, s.CPUPct, s.Load1)
	}
	row("baseline", r.Baseline)
	for _, s := range r.Samples {
		row(fmtT(s.T), s)
	}
	row("drained", r.Drained)

	fmt.Fprintf(w, "\nrepublishes: %d", len(r.Republishes))
	if len(r.Republishes) > 0 {
		var gaps, outs, afters []float64
		checked, inTime, resumed := 0, 0, 0
		for _, rp := range r.Republishes {
			gaps, outs, afters = append(gaps, rp.GapMs), append(outs, rp.OutageMaxMs), append(afters, rp.AfterLiveMax)
			checked, inTime, resumed = checked+rp.Viewers, inTime+rp.InTime, resumed+rp.Resumed
		}
		fmt.Fprintf(w, "; DELETE -> new publish connected %.0f-%.0f ms; viewers checked %d, resumed %d, within %s of the new publish %d (slowest %.0f ms after it); worst outage per viewer (DELETE -> first frame) %.0f ms",
			slices.Min(gaps), slices.Max(gaps), checked, resumed, time.Duration(r.ResumeWithinS*float64(time.Second)), inTime, slices.Max(afters), slices.Max(outs))
	}
	fmt.Fprintf(w, "\nviewers: %d joins, %d leaves, %d unexpected failures", r.Joins, r.Leaves, r.Failures)
	for k, n := range r.FailureKinds {
		fmt.Fprintf(w, "\n  %dx %s", n, k)
	}
	fmt.Fprintf(w, "\ninit messages %d, eos messages %d\n", r.Inits, r.EOS)
	if r.Publisher != nil {
		fmt.Fprintf(w, "publisher: %d frames, %d late ticks, %d keyframe requests\n", r.Publisher.Frames, r.Publisher.LateTicks, r.Publisher.KeyframeAsked)
	}
	fmt.Fprintf(w, "\ngrowth, warm (the first sample at or after %s) -> end (the last sample); medians of the first and last minute from warm on;\nbaseline (idle, before the publisher) and drained (after everyone left):\n", warm)
	fmt.Fprintf(w, "%12s %9s %9s %8s %9s %9s %8s %9s %11s %9s %9s  %s\n", "", "warm", "end", "ratio", "delta", "med warm", "med end", "max", "slope/hour", "baseline", "drained", "")
	for _, g := range r.Growth {
		flag := ""
		if g.Suspected {
			flag = "POSSIBLE LEAK (> 20%)"
		}
		fmt.Fprintf(w, "%12s %9g %9g %8.3f %+9g %9g %8g %9g %+11g %9g %9g  %s\n", g.Name, g.Warm, g.End, g.Ratio, g.Delta, g.WarmMedian, g.EndMedian, g.Max, g.PerHour, g.Baseline, g.Drained, flag)
	}
	fmt.Fprintf(w, "(p99 ms: delivery latency of the interval's video frames, without each viewer's first second: the GOP cache it starts with)\n")
	fmt.Fprintf(w, "\nverdict: %s\n", r.Verdict)
}

func (r *soakReport) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"t_s", "label", "rss_kib", "fds", "threads", "goroutines", "gateway_viewers", "gateway_publishers", "cpu_pct",
		"viewers", "receiving", "idle", "frames", "frames_per_s", "lat_p50_ms", "lat_p99_ms", "joins", "leaves", "failures_total", "republishes_total", "load_avg_1m"})
	rows := append(append([]soakSample{r.Baseline}, r.Samples...), r.Drained)
	for _, s := range rows {
		_ = cw.Write([]string{
			strconv.FormatFloat(s.T, 'f', 2, 64), s.Label, strconv.FormatInt(s.RSSKiB, 10), strconv.Itoa(s.FDs), strconv.Itoa(s.Threads),
			strconv.Itoa(s.Goroutines), strconv.Itoa(s.GWViewers), strconv.Itoa(s.GWPubs), strconv.FormatFloat(s.CPUPct, 'f', 2, 64),
			strconv.Itoa(s.Viewers), strconv.Itoa(s.Receiving), strconv.Itoa(s.Idle), strconv.FormatInt(s.Frames, 10),
			strconv.FormatFloat(s.FPS, 'f', 1, 64), strconv.FormatFloat(s.LatP50, 'f', 2, 64), strconv.FormatFloat(s.LatP99, 'f', 2, 64),
			strconv.Itoa(s.Joins), strconv.Itoa(s.Leaves), strconv.Itoa(s.Failures), strconv.Itoa(s.Republish),
			strconv.FormatFloat(s.Load1, 'f', 2, 64),
		})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
