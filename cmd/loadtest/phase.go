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
