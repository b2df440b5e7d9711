package mseout

import (
	"encoding/json"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/remux"
)

// initMsg is an init announcement (text) and init segment (binary), framed
// once, back to back, so a viewer writes both at once.
type initMsg struct {
	gen    uint64
	frames []byte
	size   int
	tracks []remux.Track
	src    *remux.Init // for Outputs
}

// segMsg is one media segment, framed once and shared by every viewer.
type segMsg struct {
	frame    []byte
	size     int
	keyframe bool
	src      remux.Segment // for Outputs: its Data is the frame's payload
}

// sweepShard is the fewest viewers worth a goroutine of their own in a sweep.
const sweepShard = 128

// sweep writes directly to viewers. Large sweeps are split over the cores
// (a write is a syscall of a few microseconds: 1,000 viewers take a few
// milliseconds on one core), so the last viewer of a stream waits less.
func sweep(vs []*viewer) {
	shards := min(runtime.GOMAXPROCS(0), len(vs)/sweepShard)
	if shards <= 1 {
		for _, v := range vs {
			v.flushDirect()
		}
		return
	}
	var wg sync.WaitGroup
	per := (len(vs) + shards - 1) / shards
	for i := per; i < len(vs); i += per {
		part := vs[i:min(i+per, len(vs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, v := range part {
				v.flushDirect()
			}
		}()
	}
	for _, v := range vs[:per] {
		v.flushDirect()
	}
	wg.Wait()
}

const keyframeAskAge = 2 * time.Second // a cached keyframe older than this is refreshed on join

// hub is one stream: its publisher of the moment, current init, GOP cache and viewers.
type hub struct {
	r        *Registry
	name     string
	settings configs.Stream

	mu       sync.Mutex
	pub      *Publication
	init     *initMsg
	initGen  uint64
	gop      []*segMsg // since the newest keyframe; empty = no usable cache
	gopBytes int
	viewers  map[*viewer]struct{}
	outputs  []*attached // attached with Registry.Attach

	lastKeyframe time.Time
	// keyframeInterval is the time between the last two keyframes (0:
	// fewer than two yet); reset with each publication.
	keyframeInterval time.Duration
	prevKeyframe     time.Time // this publication's newest keyframe, for keyframeInterval
	lastKeyframeAsk  time.Time

	// rates for the API, over windows of about two seconds
	winStart          time.Time
	winFrames         int
	winBytes          int
	fps               float64
	bitrate           int
	lastSegmentAtTime time.Time

	// for the per-stream metrics: since the hub was made
	segments, segmentBytes int64
}

func newHub(r *Registry, name string, s configs.Stream) *hub {
	return &hub{r: r, name: name, settings: s, viewers: make(map[*viewer]struct{})}
}

// setPublisher makes p current and returns the publication it replaces.
func (h *hub) setPublisher(p *Publication) *Publication {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.pub
	h.pub = p
	h.keyframeInterval, h.prevKeyframe = 0, time.Time{} // the new publisher's own, from its second keyframe
	h.gop, h.gopBytes = nil, 0
	h.fps, h.bitrate, h.winFrames, h.winBytes = 0, 0, 0, 0
	h.winStart = time.Now()
	return old
}

// Publication is the link from one publisher's remuxer to its stream. It
// implements remux.Sink. Writes from a publication that has been replaced or
// closed are ignored.
type Publication struct {
	r       *Registry
	h       *hub
	info    PublisherInfo
	since   time.Time
	done    chan struct{}
	endOnce sync.Once
	viewers chan int
	sweepCh chan struct{} // a sweep is wanted
}

// kickSweep asks the publication's sweeper to write to the viewers. It never
// blocks: requests made while a sweep runs are served by one more sweep.
func (p *Publication) kickSweep() {
	select {
	case p.sweepCh <- struct{}{}:
	default:
	}
}

// sweepLoop writes the queued segments of every viewer that keeps up, each
// with one non-blocking writev (flushDirect), off the publisher's goroutine:
// the ingest never waits for the fan-out. When a sweep takes longer than a
// frame (a very large audience, a starved machine), the next sweep writes
// the segments queued meanwhile together, in one writev per viewer, so the
// cost per message falls as the load rises; a viewer whose queue overflows
// skips to the next keyframe as usual. It returns when the publication ends.
func (p *Publication) sweepLoop() {
	defer p.r.wg.Done()
	// A viewer's panic is contained in flushDirect; one here ends the
	// publication (its publisher is disconnected), not the process.
	defer contain.Recover(p.r.log, "stream fan-out", p.end)
	var vs []*viewer
	for {
		ended := false
		select {
		case <-p.done:
			ended = true // a last sweep for what was queued
		case <-p.sweepCh:
		}
		h := p.h
		h.mu.Lock()
		for v := range h.viewers {
			vs = append(vs, v)
		}
		h.mu.Unlock()
		sweep(vs)
		clear(vs)
		vs = vs[:0]
		if ended {
			return
		}
	}
}

var _ remux.Sink = (*Publication)(nil)

// Done is closed when the publication ends: Close was called, or a newer
// publisher took the stream over. The publisher's connection should then be closed.
func (p *Publication) Done() <-chan struct{} { return p.done }

// Viewers delivers the stream's viewer count whenever it changes (latest value only).
func (p *Publication) Viewers() <-chan int { return p.viewers }

// Stream returns the stream name.
func (p *Publication) Stream() string { return p.h.name }

func (p *Publication) end() { p.endOnce.Do(func() { close(p.done) }) }

func (p *Publication) notifyViewers(n int) {
	select {
	case <-p.viewers:
	default:
	}
	p.viewers <- n
}

// Close ends the publication. When it is still the stream's publisher its
// viewers get eos and the stream stops being live.
func (p *Publication) Close() {
	p.end()
	h := p.h
	h.mu.Lock()
	if h.pub != p {
		h.mu.Unlock()
		return
	}
	h.pub = nil
	h.init = nil
	h.gop, h.gopBytes = nil, 0
	for v := range h.viewers {
		v.pushControl(frameEOS, false)
	}
	for _, o := range h.outputs {
		o.waitKey = false
		o.out.WriteEnd()
	}
	h.mu.Unlock()
	h.r.log.Info("publish ended", "stream", h.name, "session", p.info.Session, "remote", p.info.RemoteAddr, "duration", time.Since(p.since).Round(time.Millisecond))
	h.r.changed(h.name)
	h.r.removeIfIdle(h)
}

// WriteInit makes in the stream's current init and sends it to every viewer
// with the next keyframe.
func (p *Publication) WriteInit(in *remux.Init) {
	text, err := json.Marshal(struct {
		Type   string        `json:"type"`
		MIME   string        `json:"mime"`
		Tracks []remux.Track `json:"tracks"`
	}{"init", in.MIME, in.Tracks})
	if err != nil {
		return
	}
	frames := make([]byte, 0, frameSize(len(text))+frameSize(len(in.Data)))
	frames = appendFrame(frames, opText, text)
	frames = appendFrame(frames, opBinary, in.Data)
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pub != p {
		return
	}
	h.initGen++
	h.init = &initMsg{gen: h.initGen, frames: frames, size: len(text) + len(in.Data), tracks: in.Tracks, src: in}
	// The cache belongs to the old init; the next segment is a keyframe.
	h.gop, h.gopBytes = nil, 0
	for _, o := range h.outputs {
		o.waitKey = false // the next segment is a keyframe
		o.out.WriteInit(in)
	}
	h.r.log.Info("stream init", "stream", h.name, "mime", in.MIME, "tracks", in.Tracks)
}

// WriteSegment shares s with every viewer and the GOP cache.
func (p *Publication) WriteSegment(s *remux.Segment) {
	seg := &segMsg{frame: newFrame(opBinary, s.Data), size: len(s.Data), keyframe: s.Keyframe, src: *s}
	seg.src.Data = seg.frame[len(seg.frame)-len(s.Data):]
	ok, swept, askKeyframe := p.share(seg, s.HasVideo)
	if !ok {
		return
	}
	if swept {
		p.kickSweep()
	}
	p.r.metrics.segments.Add(1)
	p.r.metrics.segmentBytes.Add(int64(seg.size))
	if askKeyframe {
		p.requestKeyframe()
	}
}

// share caches seg and queues it for every viewer. It reports whether the
// publication still feeds the stream, whether a sweep should write to
// viewers directly, and whether to ask for a keyframe. The lock is released
// by a defer: a panic contained upstream must not leave the stream locked.
func (p *Publication) share(seg *segMsg, hasVideo bool) (ok, swept, askKeyframe bool) {
	h := p.h
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pub != p || h.init == nil {
		return false, false, false
	}
	if seg.keyframe {
		if !h.prevKeyframe.IsZero() {
			h.keyframeInterval = now.Sub(h.prevKeyframe)
		}
		h.prevKeyframe = now
		h.lastKeyframe = now
		clear(h.gop)
		h.gop, h.gopBytes = h.gop[:0], 0
	}
	if h.settings.GOPCache && (seg.keyframe || len(h.gop) > 0) {
		if h.gopBytes+seg.size <= h.settings.GOPCacheMaxBytes {
			h.gop = append(h.gop, seg)
			h.gopBytes += seg.size
		} else {
			clear(h.gop)
			h.gop, h.gopBytes = h.gop[:0], 0
		}
	}
	if ki := h.settings.KeyframeInterval; ki > 0 && now.Sub(h.lastKeyframe) > ki && now.Sub(h.lastKeyframeAsk) > ki/2 {
		h.lastKeyframeAsk = now
		askKeyframe = true
	}
	if hasVideo {
		h.winFrames++
	}
	h.winBytes += seg.size
	h.segments++
	h.segmentBytes += int64(seg.size)
	if d := now.Sub(h.winStart); d >= 2*time.Second {
		h.fps = float64(h.winFrames) / d.Seconds()
		h.bitrate = int(float64(h.winBytes*8) / d.Seconds())
		h.winStart, h.winFrames, h.winBytes = now, 0, 0
	}
	h.lastSegmentAtTime = now
	init := h.init
	for v := range h.viewers {
		if v.pushSegment(seg, init, true) {
			swept = true
		}
	}
	for _, o := range h.outputs {
		if o.waitKey {
			if !seg.keyframe {
				continue
			}
			o.waitKey = false
		}
		o.out.WriteSegment(&seg.src)
	}
	return true, swept, askKeyframe
}

func (p *Publication) requestKeyframe() {
	if p.info.RequestKeyframe != nil {
		p.h.r.metrics.keyframeAsks.Add(1)
		p.info.RequestKeyframe()
	}
}

// addViewer attaches v and queues what it needs to start: waiting, or the
// init and the GOP cache. It returns an error message when v is refused.
func (h *hub) addViewer(v *viewer) string {
	h.mu.Lock()
	if h.pub == nil && !h.settings.WaitForPublisher && (h.r.opts.RemoteLive == nil || !h.r.opts.RemoteLive(h.name)) {
		h.mu.Unlock()
		return "stream not found: " + h.name
	}
	if len(h.viewers) >= h.r.limits().MaxViewersPerStream {
		h.mu.Unlock()
		return "too many viewers on this stream"
	}
	h.viewers[v] = struct{}{}
	n := len(h.viewers)
	pub := h.pub
	ask := false
	switch {
	case pub == nil:
		v.pushControl(frameWaiting, false)
	case h.init != nil && len(h.gop) > 0:
		v.pushBurst(h.gop, h.init)
		ask = time.Since(h.lastKeyframe) > keyframeAskAge
	default:
		// No usable cache: the viewer starts at the next keyframe; ask for one.
		ask = true
	}
	now := time.Now()
	if ask && now.Sub(h.lastKeyframeAsk) < 500*time.Millisecond {
		ask = false
	}
	if ask {
		h.lastKeyframeAsk = now
	}
	h.mu.Unlock()
	h.r.changed(h.name)
	if pub != nil {
		pub.notifyViewers(n)
		if ask {
			pub.requestKeyframe()
		}
	}
	return ""
}

func (h *hub) removeViewer(v *viewer) {
	h.mu.Lock()
	_, ok := h.viewers[v]
	delete(h.viewers, v)
	n := len(h.viewers)
	pub := h.pub
	h.mu.Unlock()
	if ok {
		h.r.changed(h.name)
	}
	if ok && pub != nil {
		pub.notifyViewers(n)
	}
	h.r.removeIfIdle(h)
}

func (h *hub) info() StreamInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	si := StreamInfo{Name: h.name, Live: h.pub != nil, Viewers: len(h.viewers), Tracks: []TrackInfo{}}
	if h.pub != nil {
		si.Publisher = &PublisherJSON{Protocol: h.pub.info.Protocol, Kind: h.pub.info.kind(), RemoteAddr: h.pub.info.RemoteAddr, Since: h.pub.since}
		si.KeyframeInterval = h.keyframeInterval.Seconds()
		si.Bitrate = h.bitrate
		if time.Since(h.lastSegmentAtTime) > 5*time.Second {
			si.Bitrate = 0
		}
	}
	if h.init != nil {
		for i, t := range h.init.tracks {
			ti := TrackInfo{Kind: t.Kind, Codec: t.Codec, Width: t.Width, Height: t.Height, SampleRate: t.SampleRate, Channels: t.Channels}
			if t.Kind == "video" {
				ti.FPS = float64(int(h.fps*10+0.5)) / 10
			}
			if i == 0 {
				ti.Bitrate = si.Bitrate
			}
			si.Tracks = append(si.Tracks, ti)
		}
	}
	var sum ViewerStatsSummary
	var lat []float64
	for v := range h.viewers {
		st := v.stats.Load()
		if st == nil {
			continue
		}
		sum.Reporting++
		lat = append(lat, st.Latency)
		sum.LatencyAvg += st.Latency
		sum.LatencyMax = max(sum.LatencyMax, st.Latency)
		sum.BufferedAvg += st.Buffered
		sum.DecodedFrames += st.DecodedFrames
		sum.DroppedFrames += st.DroppedFrames
		sum.Stalls += st.Stalls
		sum.StallTime += st.StallTime
	}
	if sum.Reporting > 0 {
		slices.Sort(lat)
		sum.LatencyP50, sum.LatencyP95 = lat[(len(lat)-1)/2], lat[(len(lat)*95+99)/100-1]
		sum.LatencyAvg /= float64(sum.Reporting)
		sum.BufferedAvg /= float64(sum.Reporting)
		si.ViewerStats = &sum
	}
	return si
}

// goaway sends every viewer a goaway and closes it; the publication stays.
func (h *hub) goaway(reason string) int {
	url := ""
	if h.r.opts.GoawayURL != nil {
		url = h.r.opts.GoawayURL(h.name)
	}
	frames := goawayFrames(reason, url)
	h.mu.Lock()
	defer h.mu.Unlock()
	for v := range h.viewers {
		v.pushGoaway(frames)
	}
	return len(h.viewers)
}

// shutdown sends every viewer a goaway (it reconnects) and ends the publication.
func (h *hub) shutdown(reason string) {
	url := ""
	if h.r.opts.GoawayURL != nil {
		url = h.r.opts.GoawayURL(h.name)
	}
	frames := goawayFrames(reason, url)
	h.mu.Lock()
	pub := h.pub
	for v := range h.viewers {
		v.pushGoaway(frames)
	}
	for _, o := range h.outputs {
		o.out.WriteEnd()
	}
	h.mu.Unlock()
	if pub != nil {
		pub.end()
	}
}
