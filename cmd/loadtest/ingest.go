package main

// Ingest mode (-ingest N): what receiving N publishers costs the gateway,
// next to the ingest floor (ingestfloor.go) in the same run. Each round has
// a gateway phase (N WHIP publishers of the load tool's stream, no viewer)
// and a floor phase (N bare publishers of the same stream to the floor
// server), each measured over the same window; rounds alternate, so a
// change of the machine's load shows as rounds that disagree. See README.md,
// "Load tool", and docs/BENCHMARKS.md, "Ingest".

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mseway/mseway/internal/testkit/whipclient"
)

type ingestConfig struct {
	publishers int
	rounds     int
	parallel   int
	settle     time.Duration
	compare    string
	coalesce   time.Duration // the floor's read coalescing
}

func (ic *ingestConfig) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&ic.publishers, "ingest", 0, "ingest mode: N publishers and no viewer, the gateway against the ingest floor (a bare SRTP reader: batched reads, decrypt, remux), in alternated rounds")
	fs.IntVar(&ic.rounds, "ingest-rounds", 2, "ingest: rounds, each a gateway phase then a floor phase")
	fs.IntVar(&ic.parallel, "publish-parallel", 8, "WHIP publishes made at once (-ingest, -streams)")
	fs.StringVar(&ic.compare, "ingest-compare", "", "ingest: another build of this tool (e.g. /tmp/loadtest-before); each round then also measures the gateway of that build (its -serve-gateway), between this build's gateway and the floor")
	fs.DurationVar(&ic.coalesce, "floor-coalesce", 0, "ingest: the ingest floor's socket reads wait this long for more datagrams after a batch that was not full (peer.BatchConn.SetCoalesce; the gateway's default is 1ms); 0 = read at once, the floor's cheapest here")
	fs.DurationVar(&ic.settle, "ingest-settle", 5*time.Second, "ingest: wait after the last publisher is live before the window")
}

func (ic *ingestConfig) check(c *config) error {
	if ic.publishers < 0 || ic.rounds < 1 || ic.parallel < 1 {
		return errors.New("-ingest must be >= 0, -ingest-rounds and -publish-parallel >= 1")
	}
	if ic.compare != "" && (ic.publishers == 0 || c.inprocess) {
		return errors.New("-ingest-compare needs -ingest and child processes (not -inprocess)")
	}
	if ic.publishers > 0 && (c.url != "" || c.cl.nodes > 0 || c.soak.duration > 0 || c.tls) {
		return errors.New("-ingest starts its own gateway and floor: not with -url, -cluster, -soak or -tls")
	}
	return nil
}

// ingestPhase is one phase's figures.
type ingestPhase struct {
	Target             string     `json:"target"`
	LoadAvg            [2]float64 `json:"loadAvg1m"`  // at the start and end of the window
	CPUIdlePct         float64    `json:"cpuIdlePct"` // server CPU before the publishers (% of a core)
	CPUPct             float64    `json:"cpuPct"`     // in the window
	CPUPerPublisherPct float64    `json:"cpuPerPublisherPct"`
	PacketsPerSec      float64    `json:"packetsPerSec"`  // RTP packets received a second, all publishers
	CPUUsPerPacket     float64    `json:"cpuUsPerPacket"` // (cpu - idle) / packets
	ClientCPUPct       float64    `json:"clientCpuPct"`   // the load tool (publishers) in the window
	RSSBaseKiB         int64      `json:"rssBaseKiB"`
	RSSKiB             int64      `json:"rssKiB"`
	RSSPerPublisherKiB float64    `json:"rssPerPublisherKiB"`
	Lost               float64    `json:"videoPacketsLost"` // in the window
	KeyframeRequests   int64      `json:"keyframeRequests"` // received by the publishers, whole phase
	LateTicks          int64      `json:"lateTicks"`        // video frames the publishers sent late
	DatagramsPerRead   float64    `json:"datagramsPerRead,omitempty"`
	// AllocsPerPacket: heap allocations of the whole server process in the
	// window, per RTP packet received.
	AllocsPerPacket float64 `json:"allocsPerPacket"`
	// GoroutinesPerPublisher: the gateway's go_goroutines, added per publisher.
	GoroutinesPerPublisher float64 `json:"goroutinesPerPublisher,omitempty"`
	DecryptErrors          uint64  `json:"decryptErrors,omitempty"`
}

type ingestRound struct {
	Gateway  *ingestPhase `json:"gateway"`
	Compare  *ingestPhase `json:"compare,omitempty"` // the -ingest-compare build's gateway
	Floor    *ingestPhase `json:"floor"`
	CPURatio float64      `json:"cpuPerPublisherRatio"` // gateway / floor
	// CompareRatio is this build's gateway / the other build's, and
	// CompareFloorRatio the other build's gateway / floor.
	CompareRatio      float64 `json:"cpuPerPublisherRatioToCompare,omitempty"`
	CompareFloorRatio float64 `json:"compareCpuPerPublisherRatio,omitempty"`
}

type ingestReport struct {
	Publishers int           `json:"publishers"`
	Rounds     []ingestRound `json:"rounds"`
	// Median over the rounds.
	GatewayPerPublisherPct float64 `json:"gatewayCpuPerPublisherPct"`
	FloorPerPublisherPct   float64 `json:"floorCpuPerPublisherPct"`
	CPURatio               float64 `json:"cpuPerPublisherRatio"`
	ComparePerPublisherPct float64 `json:"compareCpuPerPublisherPct,omitempty"`
	CompareRatio           float64 `json:"cpuPerPublisherRatioToCompare,omitempty"`
}

// ingestPublisher is a WHIP publisher or a bare one.
type ingestPublisher interface {
	close()
	stats() (keyframes, late int64)
}

type whipPub struct{ p *whipclient.Publisher }

func (w whipPub) close()                { w.p.Close() }
func (w whipPub) stats() (int64, int64) { return w.p.KeyframeRequests(), w.p.LateTicks() }

type barePub struct{ p *barePublisher }

func (b barePub) close()                { b.p.Close() }
func (b barePub) stats() (int64, int64) { return 0, b.p.late.Load() }

// publishMany makes n publishers, parallel at a time, and returns them in
// order; on an error the ones made are closed.
func publishMany[P any](ctx context.Context, n, parallel int, mk func(context.Context, int) (P, error), closeP func(P)) ([]P, error) {
	out := make([]P, n)
	ok := make([]bool, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			p, err := mk(pctx, i)
			if err != nil {
				errs[i] = err
				return
			}
			out[i], ok[i] = p, true
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for i, p := range out {
			if ok[i] {
				closeP(p)
			}
		}
		return nil, err
	}
	return out, nil
}

func closeAll[P ingestPublisher](ps []P) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.close()
		}()
	}
	wg.Wait()
}

func runIngest(ctx context.Context, c config, stderr io.Writer) (*report, error) {
	video, audio, err := loadMedia(c)
	if err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if !c.quiet {
			fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...)
		}
	}
	n := c.ingest.publishers
	rep := &report{Time: time.Now().UTC().Format(time.RFC3339), Streams: n, Audio: !c.noAudio, Duration: c.duration.Seconds()}
	ir := &ingestReport{Publishers: n}
	rep.Ingest = ir
	gw, err := startGateway(ctx, c, stderr)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	defer gw.stop()
	var cmp target
	if c.ingest.compare != "" {
		if cmp, err = startChildExe(ctx, stderr, c.ingest.compare, "-serve-gateway", "-log-level", c.logLevel); err != nil {
			return nil, fmt.Errorf("-ingest-compare gateway: %w", err)
		}
		defer cmp.stop()
		logf("compared gateway (%s) at %s (pid %d)", c.ingest.compare, cmp.base, cmp.pid)
	}
	fl, err := startIngestFloor(ctx, c, stderr)
	if err != nil {
		return nil, fmt.Errorf("ingest floor: %w", err)
	}
	defer fl.stop()
	logf("gateway at %s (pid %d), ingest floor at %s (pid %d)", gw.base, gw.pid, fl.base, fl.pid)
	client := &http.Client{Timeout: 10 * time.Second}
	rssBase := map[int]int64{} // by server pid: its RSS before its first phase
	for r := range c.ingest.rounds {
		gprof, fprof := "", ""
		if r == 0 {
			gprof, fprof = c.gatewayProfile, c.floorProfile
		}
		gwPhase := func(tg target, profile string) (*ingestPhase, error) {
			return ingestPhaseRun(ctx, c, tg, rssBase, profile, func(ctx context.Context) ([]ingestPublisher, error) {
				return publishMany(ctx, n, c.ingest.parallel, func(ctx context.Context, i int) (ingestPublisher, error) {
					p, err := whipclient.Publish(ctx, whipclient.Options{
						URL: tg.base + "/whip/" + streamName(i), Video: video, Audio: audio, FPS: c.fps,
						LoopbackOnly: true, Lightweight: true, StampVideo: stampFrame,
					})
					if err != nil {
						return nil, fmt.Errorf("publish %s: %w", streamName(i), err)
					}
					return whipPub{p}, nil
				}, func(p ingestPublisher) { p.close() })
			}, func() (ingestCounters, error) {
				m, err := scrapeSums(client, tg.base+"/metrics", "gateway_ingest_packets_total", "gateway_ingest_packets_lost_total", "go_goroutines", "go_memstats_mallocs_total")
				return ingestCounters{Packets: m["gateway_ingest_packets_total"], Lost: m["gateway_ingest_packets_lost_total"], Goroutines: m["go_goroutines"], Mallocs: m["go_memstats_mallocs_total"]}, err
			})
		}
		logf("round %d: gateway, %d publishers", r+1, n)
		g, err := gwPhase(gw, gprof)
		if err != nil {
			return nil, err
		}
		var cg *ingestPhase
		if c.ingest.compare != "" {
			logf("round %d: compared gateway, %d publishers", r+1, n)
			if cg, err = gwPhase(cmp, ""); err != nil {
				return nil, err
			}
		}
		logf("round %d: floor, %d publishers", r+1, n)
		var lastStats floorStats
		f, err := ingestPhaseRun(ctx, c, fl, rssBase, fprof, func(ctx context.Context) ([]ingestPublisher, error) {
			return publishMany(ctx, n, c.ingest.parallel, func(ctx context.Context, _ int) (ingestPublisher, error) {
				p, err := publishBare(ctx, client, fl.base, video, audio, c.fps)
				if err != nil {
					return nil, err
				}
				return barePub{p}, nil
			}, func(p ingestPublisher) { p.close() })
		}, func() (ingestCounters, error) {
			st, err := getFloorStats(client, fl.base)
			lastStats = st
			return ingestCounters{Packets: float64(st.RTP), Lost: float64(st.VideoLost), Mallocs: float64(st.Mallocs)}, err
		})
		if err != nil {
			return nil, err
		}
		st0 := lastStats // the end of the window
		if st0.Reads > 0 {
			f.DatagramsPerRead = round2(float64(st0.Datagrams) / float64(st0.Reads))
		}
		f.DecryptErrors = st0.DecryptErrors
		if req, err := http.NewRequestWithContext(ctx, http.MethodPost, fl.base+"/reset", nil); err == nil {
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		round := ingestRound{Gateway: g, Compare: cg, Floor: f, CPURatio: ratio(g.CPUPerPublisherPct, f.CPUPerPublisherPct)}
		if cg != nil {
			round.CompareRatio = ratio(g.CPUPerPublisherPct, cg.CPUPerPublisherPct)
			round.CompareFloorRatio = ratio(cg.CPUPerPublisherPct, f.CPUPerPublisherPct)
		}
		ir.Rounds = append(ir.Rounds, round)
		logf("round %d: gateway %.4f%% / floor %.4f%% per publisher = %.2fx (load %.2f, %.2f)", r+1, g.CPUPerPublisherPct, f.CPUPerPublisherPct, round.CPURatio, g.LoadAvg[1], f.LoadAvg[1])
	}
	var gs, fs, rs, cs, crs []float64
	for _, r := range ir.Rounds {
		gs, fs, rs = append(gs, r.Gateway.CPUPerPublisherPct), append(fs, r.Floor.CPUPerPublisherPct), append(rs, r.CPURatio)
		if r.Compare != nil {
			cs, crs = append(cs, r.Compare.CPUPerPublisherPct), append(crs, r.CompareRatio)
		}
	}
	ir.GatewayPerPublisherPct, ir.FloorPerPublisherPct, ir.CPURatio = round4(median(gs)), round4(median(fs)), round2(median(rs))
	ir.ComparePerPublisherPct, ir.CompareRatio = round4(median(cs)), round2(median(crs))
	return rep, ctx.Err()
}

// ingestCounters are a server's counters, since it started.
type ingestCounters struct {
	Packets, Lost float64 // RTP packets received, video packets lost
	Goroutines    float64 // now; 0 when not known
	Mallocs       float64 // heap allocations
}

// ingestPhaseRun measures one phase on tg: its CPU before the publishers,
// then publishers made by start, a settle time, and the window; counters
// gives the packets received and lost so far.
func ingestPhaseRun(ctx context.Context, c config, tg target, rssBase map[int]int64, profile string, start func(context.Context) ([]ingestPublisher, error), counters func() (ingestCounters, error)) (*ingestPhase, error) {
	res := &ingestPhase{Target: tg.base}
	// RSS per publisher is against the process's RSS before its first
	// phase: a Go process keeps freed memory a while, so in later rounds
	// the RSS before the phase is no base.
	if rssBase[tg.pid] == 0 {
		rssBase[tg.pid], _ = procRSS(tg.pid)
	}
	res.RSSBaseKiB = rssBase[tg.pid]
	idle := startCPU(tg.pid)
	if !sleep(ctx, c.idle) {
		return nil, ctx.Err()
	}
	res.CPUIdlePct = idle.percent()
	c0, err := counters()
	if err != nil {
		return nil, err
	}
	pubs, err := start(ctx)
	if err != nil {
		return nil, err
	}
	defer closeAll(pubs)
	if !sleep(ctx, c.ingest.settle) {
		return nil, ctx.Err()
	}
	c1, err := counters()
	if err != nil {
		return nil, err
	}
	res.LoadAvg[0] = loadAvg()
	cpu, self := startCPU(tg.pid), startCPU(os.Getpid())
	var profErr error
	profDone := make(chan struct{})
	if profile != "" {
		go func() {
			defer close(profDone)
			profErr = fetchProfile(ctx, tg.base, profile, c.duration)
		}()
	} else {
		close(profDone)
	}
	if !sleep(ctx, c.duration) {
		<-profDone
		return nil, ctx.Err()
	}
	res.CPUPct, res.ClientCPUPct = cpu.percent(), self.percent()
	el := time.Since(cpu.at)
	c2, err := counters()
	if err != nil {
		return nil, err
	}
	res.LoadAvg[1] = loadAvg()
	res.RSSKiB, _ = procRSS(tg.pid)
	<-profDone
	if profErr != nil {
		return nil, fmt.Errorf("profile: %w", profErr)
	}
	n := float64(len(pubs))
	for _, p := range pubs {
		k, l := p.stats()
		res.KeyframeRequests += k
		res.LateTicks += l
	}
	res.PacketsPerSec = math.Round((c2.Packets - c1.Packets) / el.Seconds())
	res.Lost = c2.Lost - c1.Lost
	if c2.Packets > c1.Packets && c2.Mallocs > 0 {
		res.AllocsPerPacket = round2((c2.Mallocs - c1.Mallocs) / (c2.Packets - c1.Packets))
	}
	work := res.CPUPct - res.CPUIdlePct
	res.CPUPerPublisherPct = round4(work / n)
	if res.PacketsPerSec > 0 {
		// % of a core = 10 ms of CPU a second.
		res.CPUUsPerPacket = round2(work * 1e4 / res.PacketsPerSec)
	}
	if c2.Goroutines > 0 {
		res.GoroutinesPerPublisher = round2((c2.Goroutines - c0.Goroutines) / n)
	}
	res.RSSPerPublisherKiB = math.Round(float64(res.RSSKiB-res.RSSBaseKiB)/n*10) / 10
	res.CPUPct, res.CPUIdlePct, res.ClientCPUPct = round2(res.CPUPct), round2(res.CPUIdlePct), round2(res.ClientCPUPct)
	return res, nil
}

// scrapeSums reads a Prometheus text page and sums every sample of each name.
func scrapeSums(client *http.Client, url string, names ...string) (map[string]float64, error) {
	m := map[string]float64{}
	err := scrapeSamples(client, url, func(series string, v float64) {
		name, _, _ := strings.Cut(series, "{")
		if slices.Contains(names, name) {
			m[name] += v
		}
	})
	return m, err
}

// scrapeSamples reads a Prometheus text page and calls fn with each sample's
// series (name and labels) and value.
func scrapeSamples(client *http.Client, url string, fn func(series string, v float64)) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			fn(line[:i], v)
		}
	}
	return sc.Err()
}

func getFloorStats(client *http.Client, base string) (floorStats, error) {
	var st floorStats
	resp, err := client.Get(base + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("ingest floor stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// startIngestFloor starts the ingest floor server: a child process, or in
// this process with -inprocess.
func startIngestFloor(ctx context.Context, c config, stderr io.Writer) (target, error) {
	if c.inprocess {
		h, cleanup, err := newIngestFloorHandler(c.logLevel, c.ingest.coalesce, stderr)
		if err != nil {
			return target{}, err
		}
		base, stop, err := serveLoopback(h, cleanup, nil, false)
		return target{base: base, pid: os.Getpid(), stop: stop}, err
	}
	return startChild(ctx, stderr, "-serve-ingest-floor", "-log-level", c.logLevel, "-floor-coalesce", c.ingest.coalesce.String())
}

func newIngestFloorHandler(level string, coalesce time.Duration, logw io.Writer) (http.Handler, func(), error) {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	f, err := newIngestFloor(slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lv})), coalesce)
	if err != nil {
		return nil, nil, err
	}
	return withPprof(f.Handler()), f.Close, nil
}

func (ir *ingestReport) writeText(w io.Writer, r *report) {
	fmt.Fprintf(w, "loadtest %s: ingest of %d publishers (720p30 H.264 + Opus, audio %v), %d rounds, window %.0fs\n", r.Time, ir.Publishers, r.Audio, len(ir.Rounds), r.Duration)
	for i, rd := range ir.Rounds {
		for _, p := range []struct {
			name string
			x    *ingestPhase
		}{{"gateway", rd.Gateway}, {"compared gateway", rd.Compare}, {"floor", rd.Floor}} {
			x := p.x
			if x == nil {
				continue
			}
			fmt.Fprintf(w, "round %d %s (%s), load %.2f -> %.2f\n", i+1, p.name, x.Target, x.LoadAvg[0], x.LoadAvg[1])
			fmt.Fprintf(w, "  server CPU %.2f%% of a core (idle %.2f%%): %.4f%% per publisher, %.2f us per packet (%.0f packets/s); load tool CPU %.2f%%\n", x.CPUPct, x.CPUIdlePct, x.CPUPerPublisherPct, x.CPUUsPerPacket, x.PacketsPerSec, x.ClientCPUPct)
			fmt.Fprintf(w, "  server RSS %d KiB (before its first phase %d KiB): %.1f KiB per publisher; %.2f allocations per packet; video packets lost %.0f, keyframe requests %d, late frames %d", x.RSSKiB, x.RSSBaseKiB, x.RSSPerPublisherKiB, x.AllocsPerPacket, x.Lost, x.KeyframeRequests, x.LateTicks)
			if x.GoroutinesPerPublisher > 0 {
				fmt.Fprintf(w, ", %.1f goroutines per publisher", x.GoroutinesPerPublisher)
			}
			if x.DatagramsPerRead > 0 {
				fmt.Fprintf(w, ", %.2f datagrams per read", x.DatagramsPerRead)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "round %d gateway / floor CPU per publisher: %.2f", i+1, rd.CPURatio)
		if rd.Compare != nil {
			fmt.Fprintf(w, "; compared gateway / floor %.2f; gateway / compared gateway %.2f", rd.CompareFloorRatio, rd.CompareRatio)
		}
		fmt.Fprintln(w)
	}
	if ir.CompareRatio > 0 {
		fmt.Fprintf(w, "median: compared gateway %.4f%% per publisher; gateway / compared gateway %.2f\n", ir.ComparePerPublisherPct, ir.CompareRatio)
	}
	fmt.Fprintf(w, "median: gateway %.4f%%, floor %.4f%% of a core per publisher; gateway / floor %.2f\n", ir.GatewayPerPublisherPct, ir.FloorPerPublisherPct, ir.CPURatio)
}
