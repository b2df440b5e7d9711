package main

import (
	"context"
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
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// The cluster mode (-cluster N) measures issue 11's cluster over NATS: a
// NATS server and N gateways, each in a process of its own on loopback;
// node 0 gets the publisher (the origin), the others only viewers (edges),
// and a few viewers (-origin-viewers) watch on the origin as the reference
// for what a hop adds. Before the cluster, a single non-clustered gateway
// is loaded with as many viewers as one edge gets, for the CPU per viewer
// an edge should match.

// clusterConfig holds the -cluster flags.
type clusterConfig struct {
	nodes         int // 0: off
	originViewers int
	singleViewers int // 0: as many as one edge; -1: no single-node phase
	scale         int // a second cluster phase with scale x the edge viewers (0: none)
	edgeProfile   string
	originProfile string
	// child side
	serveNATS bool
	natsURL   string
	nodeID    string
}

func (cc *clusterConfig) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&cc.nodes, "cluster", 0, "measure a cluster of N >= 2 gateways over NATS instead: node 0 gets the publisher (origin), -viewers are spread over the others (edges); 0 = off")
	fs.IntVar(&cc.originViewers, "origin-viewers", 10, "with -cluster: viewers on the origin too, the reference for the latency a hop adds")
	fs.IntVar(&cc.singleViewers, "single-viewers", 0, "with -cluster: viewers of the single non-clustered gateway measured first (0: as many as one edge gets; -1: skip it)")
	fs.IntVar(&cc.scale, "cluster-scale", 0, "with -cluster: a second cluster phase with K times the edge viewers (0: none)")
	fs.StringVar(&cc.edgeProfile, "edge-profile", "", "with -cluster: CPU profile of node 1 (an edge) over each cluster phase's window (the second phase's file gets .scaled appended)")
	fs.StringVar(&cc.originProfile, "origin-profile", "", "with -cluster: the same for node 0 (the origin)")
	fs.BoolVar(&cc.serveNATS, "serve-nats", false, "(internal) run a NATS server with JetStream on loopback and print its URL")
	fs.StringVar(&cc.natsURL, "nats-url", "", "(internal) with -serve-gateway: join the cluster of this NATS server")
	fs.StringVar(&cc.nodeID, "node-id", "", "(internal) with -nats-url: this node's id")
}

// node is the cluster side of a child gateway serving at base (nil: none).
func (cc *clusterConfig) node(base string) *clusterNode {
	if cc.natsURL == "" {
		return nil
	}
	return &clusterNode{natsURL: cc.natsURL, nodeID: cc.nodeID, publicURL: base}
}

func (cc *clusterConfig) check(c *config) error {
	if cc.nodes == 0 {
		return nil
	}
	switch {
	case cc.nodes < 2:
		return fmt.Errorf("-cluster %d: want 0 (off) or at least 2 nodes", cc.nodes)
	case c.url != "" || c.inprocess:
		return errors.New("-cluster starts its own nodes, each in a process of its own: not with -url or -inprocess")
	case c.soak.duration > 0:
		return errors.New("-cluster and -soak are different runs")
	case c.slow > 0:
		return errors.New("-slow is not measured with -cluster")
	case c.mode != "both":
		return errors.New("-mode is not used with -cluster (it runs a single-node phase, then the cluster phases)")
	case c.viewers < cc.nodes-1:
		return fmt.Errorf("-viewers %d: at least one per edge (%d)", c.viewers, cc.nodes-1)
	case cc.originViewers < 0 || cc.scale < 0 || cc.singleViewers < -1:
		return errors.New("-origin-viewers and -cluster-scale must be >= 0, -single-viewers >= -1")
	}
	return nil
}

func nodeName(i int) string { return fmt.Sprintf("node%d", i) }

// childNATS is the -serve-nats child: a NATS server with JetStream on
// loopback (store in a temporary directory), until the parent lets go.
func childNATS(ctx context.Context, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "loadtest-nats")
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: nats-server: %v\n", err)
		return 1
	}
	s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	if !s.ReadyForConnections(10 * time.Second) {
		fmt.Fprintf(stderr, "loadtest: nats-server did not start\n")
		return 1
	}
	fmt.Fprintf(stdout, "LISTEN %s\n", s.ClientURL())
	waitParent(ctx)
	return 0
}

// clusterReport is the cluster mode's part of the report.
type clusterReport struct {
	Nodes         int             `json:"nodes"`
	OriginViewers int             `json:"originViewers"`
	SingleViewers int             `json:"singleViewers,omitempty"`
	Single        *phaseResult    `json:"single,omitempty"` // a non-clustered gateway
	Phases        []*clusterPhase `json:"phases"`
	Targets       []targetResult  `json:"targets"`
}

// clusterPhase is one cluster phase's figures.
type clusterPhase struct {
	EdgeViewers  int           `json:"edgeViewers"`
	LoadAvg      [2]float64    `json:"loadAvg1m"`
	ClientCPUPct float64       `json:"clientCpuPct"`
	Nodes        []*nodeResult `json:"nodes"`
	NATS         procFigures   `json:"nats"`
}

// nodeResult is one node's figures in a cluster phase. The embedded
// phaseResult counts the node's viewers; its cpuIdlePct is the CPU while
// every edge already follows the stream (one first viewer on each edge, not
// counted), so cpuPerViewerPct is what the counted viewers add.
type nodeResult struct {
	Node string `json:"node"`
	Role string `json:"role"` // origin or edge
	phaseResult
	Viewers int `json:"viewers"`
	// CPUBeforeRelayPct is the CPU before any edge followed the stream.
	CPUBeforeRelayPct float64 `json:"cpuBeforeRelayPct"`
	// ColdTTFFMs (edges) is the first viewer's time to first frame: the
	// node starts following the stream for it.
	ColdTTFFMs float64 `json:"coldTtffMs,omitempty"`
	// HopMs (edges) is, per video frame, its first delivery here (the
	// lowest latency among this node's viewers) minus its first delivery
	// on the origin: the relay hop, without this node's own fan-out.
	HopMs *signedStats `json:"hopMs,omitempty"`
	// OverOriginMs (edges) is, per video frame and viewer here, its
	// latency minus the median latency of the frame on the origin's
	// viewers: the hop plus this node's fan-out to its viewers, beyond
	// the origin's to its (fewer) viewers.
	OverOriginMs *signedStats `json:"overOriginMs,omitempty"`
	// AddedP99Ms (edges) is latency p99 here minus p99 on the origin.
	AddedP99Ms *float64 `json:"addedP99Ms,omitempty"`
	// Relay is the increase of the gateway_relay_* counters over the
	// window (the followed-streams gauge: its value at the end).
	Relay map[string]float64 `json:"relay,omitempty"`
}

// procFigures is a process without viewers (the NATS server).
type procFigures struct {
	Target     string  `json:"target"`
	CPUIdlePct float64 `json:"cpuIdlePct"` // before any edge followed
	CPUPct     float64 `json:"cpuPct"`
	RSSKiB     int64   `json:"rssKiB"`
}

// signedStats are latency differences, which may be negative.
type signedStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

func statsSignedUS(a []int64) *signedStats {
	slices.Sort(a)
	q := func(f float64) float64 {
		if len(a) == 0 {
			return 0
		}
		i := int(math.Ceil(f*float64(len(a)))) - 1
		return math.Round(float64(a[min(max(i, 0), len(a)-1)])/10) / 100
	}
	return &signedStats{P50: q(.5), P95: q(.95), P99: q(.99), Min: q(0), Max: q(1), N: len(a)}
}

// targetResult is one of the targets, measured.
type targetResult struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
}

func runCluster(ctx context.Context, c config, stderr io.Writer) (*report, error) {
	video, audio, err := loadMedia(c)
	if err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if !c.quiet {
			fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...)
		}
	}
	cc := c.cl
	edges := cc.nodes - 1
	rep := &report{Time: time.Now().UTC().Format(time.RFC3339), Viewers: c.viewers, Streams: c.streams, Audio: !c.noAudio, Duration: c.duration.Seconds()}
	cr := &clusterReport{Nodes: cc.nodes, OriginViewers: cc.originViewers}
	rep.Cluster = cr

	if cc.singleViewers >= 0 {
		n := cc.singleViewers
		if n == 0 {
			n = (c.viewers + edges - 1) / edges // node 1's share
		}
		res, err := singlePhase(ctx, c, n, video, audio, stderr, logf)
		if err != nil {
			return nil, fmt.Errorf("single node: %w", err)
		}
		cr.Single, cr.SingleViewers = res, n
	}

	nats, err := startChild(ctx, stderr, "-serve-nats")
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	defer nats.stop()
	logf("nats-server at %s (pid %d)", nats.base, nats.pid)
	nodes := make([]target, 0, cc.nodes)
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for i := range cc.nodes {
		n, err := startChild(ctx, stderr, append([]string{"-serve-gateway", "-log-level", c.logLevel, fmt.Sprintf("-tls-direct=%v", c.tlsDirect),
			"-nats-url", nats.base, "-node-id", nodeName(i)}, childTLSArgs()...)...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nodeName(i), err)
		}
		nodes = append(nodes, n)
		logf("%s at %s (pid %d)", nodeName(i), n.base, n.pid)
	}
	pubs, err := publishAll(ctx, c, nodes[0].base, video, audio)
	defer func() { rep.Publisher = closePubs(pubs) }()
	if err != nil {
		return nil, err
	}
	if err := waitListed(ctx, c, nodes); err != nil {
		return nil, err
	}
	logf("%d publisher(s) live on %s, listed on every node", len(pubs), nodeName(0))

	counts := []int{c.viewers}
	if cc.scale > 0 {
		counts = append(counts, c.viewers*cc.scale)
	}
	for k, n := range counts {
		if k > 0 {
			// The edges keep following a while after their last viewer
			// left: wait, so "before relay" is without it again.
			logf("waiting for the edges to stop following")
			if err := waitUnfollowed(ctx, nodes[1:], 45*time.Second); err != nil {
				logf("%v (the next phase's cpuBeforeRelayPct includes the relay)", err)
			}
		}
		profiles := make([]string, len(nodes))
		profiles[0], profiles[1] = phaseFile(cc.originProfile, k), phaseFile(cc.edgeProfile, k)
		logf("cluster phase %d: %d viewers on %d edges, %d on the origin", k+1, n, edges, cc.originViewers)
		ph, err := runClusterPhase(ctx, c, nodes, nats, n, profiles)
		if err != nil {
			return nil, err
		}
		cr.Phases = append(cr.Phases, ph)
	}
	cr.Targets = clusterTargets(cr, cc.scale)
	return rep, ctx.Err()
}

// phaseFile names the profile file of cluster phase k ("" stays "").
func phaseFile(path string, k int) string {
	if path == "" || k == 0 {
		return path
	}
	return path + ".scaled"
}

// singlePhase loads a non-clustered gateway with n viewers, as the gateway
// phase of the default mode does.
func singlePhase(ctx context.Context, c config, n int, video []mediafile.AccessUnit, audio [][]byte, stderr io.Writer, logf func(string, ...any)) (*phaseResult, error) {
	gw, err := startGateway(ctx, c, stderr)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	pubs, err := publishAll(ctx, c, gw.base, video, audio)
	defer closePubs(pubs)
	if err != nil {
		return nil, err
	}
	logf("single-node phase at %s (pid %d): %d viewers", gw.base, gw.pid, n)
	sc := c
	sc.viewers = n
	return runPhase(ctx, sc, gw, c.gatewayProfile)
}

// publishAll publishes the streams to the gateway at base; on an error, the
// publishers returned are the ones live so far.
func publishAll(ctx context.Context, c config, base string, video []mediafile.AccessUnit, audio [][]byte) ([]*whipclient.Publisher, error) {
	var pubs []*whipclient.Publisher
	for i := range c.streams {
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := whipclient.Publish(pctx, whipclient.Options{
			URL: base + "/whip/" + streamName(i), Video: video, Audio: audio, FPS: c.fps,
			LoopbackOnly: true, Lightweight: true, StampVideo: stampFrame, TLS: clientTLS,
		})
		cancel()
		if err != nil {
			return pubs, fmt.Errorf("publish %s: %w", streamName(i), err)
		}
		pubs = append(pubs, p)
	}
	return pubs, nil
}

// closePubs ends the publishers and sums their figures (nil: none).
func closePubs(pubs []*whipclient.Publisher) *pubStats {
	if len(pubs) == 0 {
		return nil
	}
	var ps pubStats
	for _, p := range pubs {
		ps.Frames += p.FramesSent()
		ps.LateTicks += p.LateTicks()
		ps.KeyframeAsked += p.KeyframeRequests()
		p.Close()
	}
	return &ps
}

func apiClient(timeout time.Duration) *http.Client {
	client := &http.Client{Timeout: timeout}
	if clientTLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = clientTLS.Clone()
		client.Transport = tr
	}
	return client
}

// waitListed waits until every node lists every stream as published on node 0.
func waitListed(ctx context.Context, c config, nodes []target) error {
	client := apiClient(5 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			var list []struct {
				Name string `json:"name"`
				Node string `json:"node"`
			}
			err := getJSON(client, n.base+"/api/streams", &list)
			found := 0
			for _, s := range list {
				if strings.HasPrefix(s.Name, "lt") && s.Node == nodeName(0) {
					found++
				}
			}
			if err == nil && found >= c.streams {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not list the streams on %s after 30 s (last error: %v)", n.base, nodeName(0), err)
			}
			if !sleep(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// relayMetrics reads the gateway_relay_* samples of a node's /metrics,
// labels included in the key.
func relayMetrics(client *http.Client, base string) (map[string]float64, error) {
	m := map[string]float64{}
	err := scrapeSamples(client, base+"/metrics", func(series string, v float64) {
		if strings.HasPrefix(series, "gateway_relay_") {
			m[series] = v
		}
	})
	return m, err
}

const followedGauge = "gateway_relay_followed_streams"

// waitUnfollowed waits until no edge follows a stream any more.
func waitUnfollowed(ctx context.Context, edges []target, limit time.Duration) error {
	client := apiClient(5 * time.Second)
	deadline := time.Now().Add(limit)
	for _, n := range edges {
		for {
			m, err := relayMetrics(client, n.base)
			if err == nil && m[followedGauge] == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s still follows %v stream(s) after %s (err %v)", n.base, m[followedGauge], limit, err)
			}
			if !sleep(ctx, 250*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// firstFrame hears when a viewer gets its first video frame.
type firstFrame struct {
	once sync.Once
	got  chan struct{}
}

func (f *firstFrame) onInit(time.Time) {}
func (f *firstFrame) onEOS(time.Time)  {}
func (f *firstFrame) onVideoFrame(time.Time, time.Duration) {
	f.once.Do(func() { close(f.got) })
}

// interleave orders the viewers of several nodes so that a ramp over the
// result adds viewers to every node at its own even pace.
func interleave(groups [][]*viewer) []*viewer {
	type at struct {
		pos float64
		v   *viewer
	}
	var all []at
	for _, g := range groups {
		for k, v := range g {
			all = append(all, at{(float64(k) + .5) / float64(len(g)), v})
		}
	}
	slices.SortStableFunc(all, func(a, b at) int {
		switch {
		case a.pos < b.pos:
			return -1
		case a.pos > b.pos:
			return 1
		}
		return 0
	})
	out := make([]*viewer, len(all))
	for i, a := range all {
		out[i] = a.v
	}
	return out
}

// runClusterPhase measures the cluster with edgeViewers on the edges and
// the origin viewers on node 0:
//  1. -idle with no viewer: every process's CPU before any edge follows;
//  2. one first viewer on each edge (not counted), at a random moment
//     within a second: the edge starts following the stream for it (its
//     TTFF is the cold one);
//  3. -idle: every process's CPU while the edges follow (the idle CPU that
//     per-viewer CPU is counted from), RSS base;
//  4. the viewers join over the ramp, and after the warm-up everything is
//     measured over the window.
func runClusterPhase(ctx context.Context, c config, nodes []target, nats target, edgeViewers int, profiles []string) (*clusterPhase, error) {
	ph := &clusterPhase{EdgeViewers: edgeViewers}
	ph.LoadAvg[0] = loadAvg()
	procs := append(slices.Clone(nodes), nats)
	meters := func() []cpuMeter {
		m := make([]cpuMeter, len(procs))
		for i, p := range procs {
			m[i] = startCPU(p.pid)
		}
		return m
	}
	percents := func(m []cpuMeter) []float64 {
		out := make([]float64, len(m))
		for i := range m {
			out[i] = m[i].percent()
		}
		return out
	}
	m := meters()
	if !sleep(ctx, c.idle) {
		return nil, ctx.Err()
	}
	beforeRelay := percents(m)

	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var pwg sync.WaitGroup
	probes := make([]*viewer, len(nodes)-1)
	defer func() {
		pcancel()
		for _, p := range probes {
			p.closeConn()
		}
		pwg.Wait()
	}()
	deadline := time.After(30 * time.Second)
	for i := range probes {
		// At a random moment: the edge's start is paced by its own
		// timers, which a fixed schedule would always meet at one phase.
		if !sleep(ctx, rand.N(time.Second)) {
			return nil, ctx.Err()
		}
		ev := &firstFrame{got: make(chan struct{})}
		probes[i] = &viewer{url: wsURL(nodes[i+1].base, streamName(0)), win: &window{}, events: ev}
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			probes[i].run(pctx)
		}()
		select {
		case <-ev.got:
		case <-deadline:
			return nil, fmt.Errorf("%s: no video frame for its first viewer in 30 s", nodeName(i+1))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m = meters()
	if !sleep(ctx, c.idle) {
		return nil, ctx.Err()
	}
	following := percents(m)
	rss0 := make([]int64, len(nodes))
	for i, n := range nodes {
		rss0[i], _ = procRSS(n.pid)
	}

	now := time.Now()
	win := &window{start: now.Add(c.ramp + c.warmup)}
	win.end = win.start.Add(c.duration)
	groups := make([][]*viewer, len(nodes))
	add := func(node, j int) {
		groups[node] = append(groups[node], &viewer{url: wsURL(nodes[node].base, streamName(j%c.streams)), stream: j % c.streams, win: win, keepStamps: true})
	}
	for j := range c.cl.originViewers {
		add(0, j)
	}
	for j := range edgeViewers {
		add(1+j%(len(nodes)-1), j/(len(nodes)-1))
	}
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	all := interleave(groups)
	startRamp(vctx, &wg, all, now, c.ramp)
	stopViewers := func() {
		cancel()
		for _, v := range all {
			v.closeConn()
		}
		wg.Wait()
	}
	defer stopViewers()
	if !sleep(ctx, time.Until(win.start)) {
		return nil, ctx.Err()
	}
	client := apiClient(5 * time.Second)
	relay0 := make([]map[string]float64, len(nodes))
	for i, n := range nodes {
		relay0[i], _ = relayMetrics(client, n.base)
	}
	m = meters()
	self := startCPU(os.Getpid())
	// The profiles end with ctx at the latest, and are waited for on every return.
	profErr := make(chan error, len(profiles))
	nprof := 0
	defer func() {
		for range nprof {
			<-profErr
		}
	}()
	for i, p := range profiles {
		if p == "" {
			continue
		}
		nprof++
		go func() { profErr <- fetchProfile(ctx, nodes[i].base, p, c.duration) }()
	}
	if !sleep(ctx, time.Until(win.end)) {
		return nil, ctx.Err()
	}
	cpu := percents(m)
	ph.ClientCPUPct = round2(self.percent())
	ph.LoadAvg[1] = loadAvg()
	rss := make([]int64, len(procs))
	for i, p := range procs {
		rss[i], _ = procRSS(p.pid)
	}
	relay1 := make([]map[string]float64, len(nodes))
	for i, n := range nodes {
		relay1[i], _ = relayMetrics(client, n.base)
	}
	var perr error
	for ; nprof > 0; nprof-- {
		perr = errors.Join(perr, <-profErr)
	}
	if perr != nil {
		return nil, fmt.Errorf("profile: %w", perr)
	}
	stopViewers()
	pcancel()
	for _, p := range probes {
		p.closeConn()
	}
	pwg.Wait()

	gaps := streamGaps(all, c.streams)
	ni := len(nodes)
	ph.NATS = procFigures{Target: nats.base, CPUIdlePct: round2(beforeRelay[ni]), CPUPct: round2(cpu[ni]), RSSKiB: rss[ni]}
	originMedian, originFirst := frameLatencies(groups[0])
	for i, n := range nodes {
		nr := &nodeResult{Node: nodeName(i), Role: "edge", Viewers: len(groups[i]), CPUBeforeRelayPct: round2(beforeRelay[i])}
		if i == 0 {
			nr.Role = "origin"
		}
		r := &nr.phaseResult
		r.Target = n.base
		r.LoadAvg = ph.LoadAvg
		r.ClientCPUPct = ph.ClientCPUPct
		r.CPUIdlePct, r.CPUPct = round2(following[i]), round2(cpu[i])
		r.RSSBaseKiB, r.RSSKiB = rss0[i], rss[i]
		if k := len(groups[i]); k > 0 {
			r.CPUPerViewerPct = round4((cpu[i] - following[i]) / float64(k))
			r.RSSPerViewerKiB = math.Round(float64(rss[i]-rss0[i])/float64(k)*10) / 10
		}
		summarize(r, groups[i], gaps, c.duration)
		if i > 0 {
			p := &probes[i-1].res
			nr.ColdTTFFMs = math.Round(float64(p.ttff)/float64(time.Microsecond)/10) / 100
			if p.err != "" || p.serverErr != "" {
				r.Errors++
				r.ErrorSamples = append(r.ErrorSamples, "first viewer: "+p.err+p.serverErr)
			}
			nr.OverOriginMs = overOrigin(groups[i], originMedian)
			_, first := frameLatencies(groups[i])
			nr.HopMs = hopStats(first, originFirst)
			if len(groups[0]) > 0 {
				d := round2(r.LatencyMs.P99 - ph.Nodes[0].LatencyMs.P99)
				nr.AddedP99Ms = &d
			}
		}
		nr.Relay = relayDelta(relay0[i], relay1[i])
		ph.Nodes = append(ph.Nodes, nr)
	}
	return ph, nil
}

func relayDelta(before, after map[string]float64) map[string]float64 {
	if after == nil {
		return nil
	}
	d := map[string]float64{}
	for k, v := range after {
		name := strings.TrimPrefix(k, "gateway_relay_")
		if k == followedGauge {
			d[name] = v
			continue
		}
		d[name] = v - before[k]
	}
	return d
}

// frameKey names a video frame of a stream by its send time.
type frameKey struct {
	stream int
	at     int64
}

// frameLatencies returns, per frame, the median and the lowest latency
// (µs) among viewers.
func frameLatencies(viewers []*viewer) (median, lowest map[frameKey]int64) {
	lats := map[frameKey][]uint32{}
	for _, v := range viewers {
		for j, at := range v.res.stamps {
			k := frameKey{v.stream, at}
			lats[k] = append(lats[k], v.res.lat[j])
		}
	}
	median = make(map[frameKey]int64, len(lats))
	lowest = make(map[frameKey]int64, len(lats))
	for k, l := range lats {
		slices.Sort(l)
		median[k], lowest[k] = int64(l[len(l)/2]), int64(l[0])
	}
	return median, lowest
}

// overOrigin: per frame a viewer got that the origin's viewers got too,
// its latency minus their median for it (nil: no origin viewers).
func overOrigin(viewers []*viewer, origin map[frameKey]int64) *signedStats {
	if len(origin) == 0 {
		return nil
	}
	var d []int64
	for _, v := range viewers {
		for j, at := range v.res.stamps {
			if o, ok := origin[frameKey{v.stream, at}]; ok {
				d = append(d, int64(v.res.lat[j])-o)
			}
		}
	}
	return statsSignedUS(d)
}

// hopStats: per frame both sides got, here minus origin (nil: no origin viewers).
func hopStats(here, origin map[frameKey]int64) *signedStats {
	if len(origin) == 0 {
		return nil
	}
	var d []int64
	for k, h := range here {
		if o, ok := origin[k]; ok {
			d = append(d, h-o)
		}
	}
	return statsSignedUS(d)
}

// clusterTargets judges issue 11's "Measured" targets on the figures.
func clusterTargets(cr *clusterReport, scale int) []targetResult {
	var out []targetResult
	for k, ph := range cr.Phases {
		tag := fmt.Sprintf(" (phase %d, %d edge viewers)", k+1, ph.EdgeViewers)
		var hop, added, ttff, cold, cpu float64
		hasHop, hasAdded := false, false
		for _, n := range ph.Nodes[1:] {
			if n.HopMs != nil {
				hop, hasHop = max(hop, n.HopMs.P99), true
			}
			if n.AddedP99Ms != nil {
				added, hasAdded = max(added, *n.AddedP99Ms), true
			}
			ttff, cold = max(ttff, n.TTFFMs.P95), max(cold, n.ColdTTFFMs)
			cpu = max(cpu, n.CPUPerViewerPct)
		}
		if hasHop {
			out = append(out, targetResult{"latency added per hop (first delivery per frame, edge - origin), p99, worst edge" + tag, "< 5 ms", hop, hop < 5})
		}
		if hasAdded {
			out = append(out, targetResult{"edge latency p99 - origin latency p99, worst edge" + tag, "< 5 ms", added, added < 5})
		}
		out = append(out, targetResult{"edge TTFF p95, worst edge" + tag, "< 100 ms", ttff, ttff < 100})
		out = append(out, targetResult{"edge TTFF of the first viewer (the edge starts following), worst edge" + tag, "< 100 ms", cold, cold < 100})
		// Against the phase whose busiest edge has as many viewers as the single node.
		if cr.Single != nil && (ph.EdgeViewers+cr.Nodes-2)/(cr.Nodes-1) == cr.SingleViewers {
			// 0 when the single node's figure is not positive (too few
			// viewers for the CPU clock's 10 ms ticks): not judged.
			r := 0.0
			if cr.Single.CPUPerViewerPct > 0 {
				r = round2(cpu / cr.Single.CPUPerViewerPct)
			}
			out = append(out, targetResult{fmt.Sprintf("edge CPU per viewer / single node's (%d viewers each), worst edge%s", cr.SingleViewers, tag), "<= 1.1", r, r > 0 && r <= 1.1})
		}
	}
	if scale > 0 && len(cr.Phases) == 2 {
		a, b := cr.Phases[0].Nodes[0].CPUPct, cr.Phases[1].Nodes[0].CPUPct
		if a > 0 {
			r := round2(b / a)
			out = append(out, targetResult{fmt.Sprintf("origin CPU with %dx the edge viewers / phase 1's", scale), "about 1 (<= 1.25)", r, r <= 1.25})
		}
	}
	return out
}

func (cr *clusterReport) writeText(w io.Writer) {
	for k, ph := range cr.Phases {
		fmt.Fprintf(w, "cluster phase %d: %d nodes, %d viewers on %d edge(s) + %d on the origin, load %.2f -> %.2f, load tool CPU %.2f%%\n",
			k+1, cr.Nodes, ph.EdgeViewers, cr.Nodes-1, cr.OriginViewers, ph.LoadAvg[0], ph.LoadAvg[1], ph.ClientCPUPct)
		fmt.Fprintf(w, "  nats-server (%s): CPU %.2f%% of a core (before any relay %.2f%%), RSS %d KiB\n", ph.NATS.Target, ph.NATS.CPUPct, ph.NATS.CPUIdlePct, ph.NATS.RSSKiB)
		for _, n := range ph.Nodes {
			x := &n.phaseResult
			fmt.Fprintf(w, "  %s, %s (%s): %d viewers, connected %d, errors %d %q\n", n.Node, n.Role, x.Target, n.Viewers, x.Connected, x.Errors, x.ErrorSamples)
			fmt.Fprintf(w, "    CPU %.2f%% of a core (before any relay %.2f%%, relaying before the viewers %.2f%%): %.4f%% per viewer; RSS %d KiB (base %d): %.1f KiB per viewer\n",
				x.CPUPct, n.CPUBeforeRelayPct, x.CPUIdlePct, x.CPUPerViewerPct, x.RSSKiB, x.RSSBaseKiB, x.RSSPerViewerKiB)
			fmt.Fprintf(w, "    latency ms p50 %.2f p95 %.2f p99 %.2f max %.2f (%d frames, %d unstamped)", x.LatencyMs.P50, x.LatencyMs.P95, x.LatencyMs.P99, x.LatencyMs.Max, x.LatencyMs.N, x.UnstampedFrames)
			if n.AddedP99Ms != nil {
				fmt.Fprintf(w, "; p99 - origin's %.2f", *n.AddedP99Ms)
			}
			fmt.Fprintln(w)
			if n.HopMs != nil {
				fmt.Fprintf(w, "    hop per frame (first delivery here - first on the origin) ms p50 %.2f p95 %.2f p99 %.2f (%d frames)\n", n.HopMs.P50, n.HopMs.P95, n.HopMs.P99, n.HopMs.N)
			}
			if n.OverOriginMs != nil {
				fmt.Fprintf(w, "    each viewer's latency - the origin viewers' median, per frame, ms p50 %.2f p95 %.2f p99 %.2f (%d frames)\n", n.OverOriginMs.P50, n.OverOriginMs.P95, n.OverOriginMs.P99, n.OverOriginMs.N)
			}
			fmt.Fprintf(w, "    time to first frame ms p50 %.1f p95 %.1f max %.1f", x.TTFFMs.P50, x.TTFFMs.P95, x.TTFFMs.Max)
			if n.Role == "edge" {
				fmt.Fprintf(w, "; first viewer (starts the relay) %.1f", n.ColdTTFFMs)
			}
			fmt.Fprintln(w)
			fmt.Fprintf(w, "    frames per viewer %d..%d, skipped %d (%d viewers; %d more missing from the streams themselves), throughput kbit/s min %.0f mean %.0f\n",
				x.FramesPerViewer[0], x.FramesPerViewer[1], x.SkippedFrames, x.ViewersWithSkips, x.StreamGapFrames, x.ThroughputKbps[0], x.ThroughputKbps[1])
			if n.Relay != nil {
				fmt.Fprintf(w, "    relay in the window: messages out %.0f in %.0f, bytes out %.0f in %.0f, snapshots out %.0f in %.0f, gaps %.0f, dropped %.0f, following %.0f\n",
					n.Relay[`messages_total{dir="out"}`], n.Relay[`messages_total{dir="in"}`], n.Relay[`bytes_total{dir="out"}`], n.Relay[`bytes_total{dir="in"}`],
					n.Relay[`snapshots_total{dir="out"}`], n.Relay[`snapshots_total{dir="in"}`], n.Relay["gaps_total"], n.Relay["dropped_total"], n.Relay["followed_streams"])
			}
		}
	}
	for _, t := range cr.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "target %s: %g (want %s): %s\n", t.Name, t.Value, t.Target, verdict)
	}
}
