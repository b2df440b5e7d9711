package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"time"
)

func runPhase(ctx context.Context, c config, tg target, profile string) (*phaseResult, error) {
	res := &phaseResult{Target: tg.base}
	res.LoadAvg[0] = loadAvg()
	rss0, _ := procRSS(tg.pid)
	idle := startCPU(tg.pid)
	sleep(ctx, c.idle)
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
		viewers[i] = &viewer{url: wsURL(tg.base, streamName(i%c.streams)), stream: i % c.streams, win: win}
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
	startRamp(vctx, &wg, viewers, now, c.ramp)
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
			profErr = fetchProfile(ctx, tg.base, profile, c.duration)
		}()
	} else {
		close(profDone)
	}
	if !sleep(ctx, time.Until(win.end)) {
		<-profDone // it ends with ctx
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
	summarize(res, viewers, streamGaps(viewers, c.streams), c.duration)
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

// startRamp starts viewers evenly over ramp from now, each in a goroutine
// of wg that ends with ctx (and the viewer's connection).
func startRamp(ctx context.Context, wg *sync.WaitGroup, viewers []*viewer, now time.Time, ramp time.Duration) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, v := range viewers {
			at := now.Add(time.Duration(int64(ramp) * int64(i) / int64(len(viewers))))
			if !sleep(ctx, time.Until(at)) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				v.run(ctx)
			}()
		}
	}()
}

// streamGaps returns, per stream, the frames every viewer of it that got
// media missed: the stream's gaps (the publisher fell behind, packets were
// lost before the gateway), not the fan-out's.
func streamGaps(viewers []*viewer, streams int) []int {
	gap := make([]int, streams)
	for i := range gap {
		gap[i] = math.MaxInt
	}
	for _, v := range viewers {
		if v.res.ttff > 0 {
			gap[v.stream] = min(gap[v.stream], v.res.skipped)
		}
	}
	for i := range gap {
		if gap[i] == math.MaxInt {
			gap[i] = 0
		}
	}
	return gap
}

// summarize fills res's viewer figures from viewers (whose skipped frames
// lose their stream's gap, streamGap), over a window of d.
func summarize(res *phaseResult, viewers []*viewer, streamGap []int, d time.Duration) {
	for _, g := range streamGap {
		res.StreamGapFrames += g
	}
	var all, ttff []uint32
	minFrames, maxFrames := math.MaxInt, 0
	minKbps, sumKbps := math.MaxFloat64, 0.0
	seen := map[string]bool{}
	for _, v := range viewers {
		r := &v.res
		r.skipped -= streamGap[v.stream]
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
		lat := slices.Clone(r.lat) // r.lat stays in stamps' order
		slices.Sort(lat)
		p99 := pct(lat, .99)
		if len(lat) > 0 && p99 < 20000 {
			res.ViewersP99Under20++
		}
		if len(lat) > 0 && p99 < 50000 && r.skipped == 0 && r.err == "" && r.serverErr == "" {
			res.ViewersP99Under50++
		}
		res.Frames += r.frames
		res.SkippedFrames += r.skipped
		res.UnstampedFrames += r.badStamp
		if r.skipped > 0 {
			res.ViewersWithSkips++
		}
		minFrames, maxFrames = min(minFrames, r.frames), max(maxFrames, r.frames)
		kbps := float64(r.bytes) * 8 / 1000 / d.Seconds()
		minKbps, sumKbps = min(minKbps, kbps), sumKbps+kbps
	}
	if len(viewers) == 0 {
		minFrames, minKbps = 0, 0
	}
	res.FramesPerViewer = [2]int{minFrames, maxFrames}
	res.ThroughputKbps = [2]float64{math.Round(minKbps), math.Round(sumKbps / float64(max(len(viewers), 1)))}
	res.LatencyMs = statsUS(all)
	res.TTFFMs = statsUS(ttff)
}
