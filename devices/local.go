package devices

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/remux"
)

// LocalConfig configures a local source: a capture published straight into a
// stream of this gateway, without a WebRTC hop.
type LocalConfig struct {
	Stream   string
	Capture  Config
	Registry *mseout.Registry
	// OnDemand captures only while someone watches: the stream is not live
	// until a viewer waits on it (the source then publishes and starts its
	// devices), and it stops Linger after the last viewer left.
	OnDemand bool
	Linger   time.Duration // 0 = 10 s
	// Retry is the wait before reopening a failed device or retrying a
	// refused publish; 0 = 5 s. After another publisher took the stream
	// over, the source publishes again as soon as that one leaves.
	Retry  time.Duration
	Logger *slog.Logger
}

// LocalSource is a running local source. It owns one goroutine, from
// StartLocal to Close.
type LocalSource struct {
	cfg LocalConfig
	log *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	current  atomic.Pointer[Capture] // the running capture, for keyframe requests
	captures atomic.Int64            // captures opened so far
}

// StartLocal checks cfg and starts the source. A device that cannot be opened
// is an error here when the source is not on demand; later failures are
// logged and retried.
func StartLocal(cfg LocalConfig) (*LocalSource, error) {
	if err := cfg.Capture.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		return nil, errors.New("devices: LocalConfig.Registry is nil")
	}
	if err := cfg.Capture.checkBuild(); err != nil {
		return nil, err // ErrNoEncoder, ErrNoVP9
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 10 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Capture.Logger = cfg.Logger.With("source", cfg.Stream)
	// Resolve device names now, so a typo stops the gateway at start.
	if cfg.Capture.Video != None {
		if _, err := findDriver("video", cfg.Capture.Video); err != nil {
			return nil, err
		}
	}
	if cfg.Capture.Audio != None {
		if _, err := findDriver("audio", cfg.Capture.Audio); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &LocalSource{cfg: cfg, log: cfg.Logger.With("source", cfg.Stream), cancel: cancel, done: make(chan struct{})}
	var first *Capture
	if !cfg.OnDemand { // a broken device stops the gateway at start
		c, err := Open(cfg.Capture)
		if err != nil {
			cancel()
			return nil, err
		}
		first = c
		l.captures.Add(1)
	}
	go l.run(ctx, first)
	return l, nil
}

// Close stops the source: its publication ends (viewers get eos) and the
// devices are closed. It waits for the source's goroutine.
func (l *LocalSource) Close() {
	l.cancel()
	<-l.done
}

// Captures returns how many times the source opened its devices.
func (l *LocalSource) Captures() int64 { return l.captures.Load() }

func (l *LocalSource) requestKeyframe() {
	if c := l.current.Load(); c != nil {
		c.RequestKeyframe()
	}
}

func (l *LocalSource) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (l *LocalSource) run(ctx context.Context, capture *Capture) {
	defer close(l.done)
	defer func() {
		if capture != nil {
			capture.Close()
		}
	}()
	for ctx.Err() == nil {
		if l.cfg.OnDemand && !l.waitForViewers(ctx) {
			return
		}
		pub, err := l.cfg.Registry.Publish(l.cfg.Stream, mseout.PublisherInfo{
			Protocol:        "local",
			RemoteAddr:      "local:" + deviceLabel(l.cfg.Capture),
			RequestKeyframe: l.requestKeyframe,
		})
		if errors.Is(err, mseout.ErrClosed) {
			return
		}
		if err != nil {
			l.log.Warn("local source cannot publish; retrying", "err", err, "in", l.cfg.Retry)
			if !l.sleep(ctx, l.cfg.Retry) {
				return
			}
			continue
		}
		capture = l.serve(ctx, pub, capture)
		takenOver := false
		select {
		case <-pub.Done(): // before our Close: a newer publisher took over
			takenOver = true
		default:
		}
		pub.Close()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(l.cfg.Registry.CheckPublish(l.cfg.Stream), mseout.ErrClosed) {
			return // the gateway is shutting down
		}
		if takenOver {
			// Another publisher took the stream over: wait for it to leave.
			l.log.Info("local source taken over by another publisher; waiting for it to leave")
			if capture != nil {
				capture.Close()
				capture = nil
			}
			if !l.waitFor(ctx, func(live bool, _ int) bool { return !live }) {
				return
			}
		}
	}
}

// waitFor waits until cond holds for the stream's state (live, viewer
// count), woken by the registry on every change. It returns false when ctx
// ends or the registry closes.
func (l *LocalSource) waitFor(ctx context.Context, cond func(live bool, viewers int) bool) bool {
	reg := l.cfg.Registry
	changed, stop := reg.Watch(l.cfg.Stream)
	defer stop()
	for {
		if errors.Is(reg.CheckPublish(l.cfg.Stream), mseout.ErrClosed) {
			return false
		}
		if cond(reg.State(l.cfg.Stream)) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

// waitForViewers waits until viewers wait on the stream and nobody else
// publishes it.
func (l *LocalSource) waitForViewers(ctx context.Context) bool {
	return l.waitFor(ctx, func(live bool, viewers int) bool { return !live && viewers > 0 })
}

// serve feeds pub until ctx ends or pub is done. It returns the capture that
// is still open, if any.
func (l *LocalSource) serve(ctx context.Context, pub *mseout.Publication, capture *Capture) *Capture {
	var feed *localFeed
	stopCapture := func() {
		if capture != nil {
			l.current.Store(nil)
			capture.Close()
			capture = nil
			feed = nil
			l.log.Info("local source idle")
		}
	}
	startFeed := func() bool {
		if capture == nil {
			c, err := Open(l.cfg.Capture)
			if err != nil {
				l.log.Error("local source cannot open its devices", "err", err)
				return false
			}
			capture = c
			l.captures.Add(1)
		}
		f, err := newLocalFeed(capture, pub)
		if err != nil {
			l.log.Error("local source", "err", err)
			stopCapture()
			return false
		}
		feed = f
		l.current.Store(capture)
		capture.SetSink(feed)
		capture.RequestKeyframe()
		l.log.Info("local source capturing", "stream", l.cfg.Stream)
		return true
	}
	var retry <-chan time.Time
	if !startFeed() {
		retry = time.After(l.cfg.Retry)
	}
	var linger *time.Timer
	var lingerC <-chan time.Time
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	_, viewers := l.cfg.Registry.State(l.cfg.Stream)
	if l.cfg.OnDemand && viewers == 0 { // the viewer that woke us left already
		linger = time.NewTimer(l.cfg.Linger)
		lingerC = linger.C
	}
	for {
		var capDone <-chan struct{}
		if capture != nil {
			capDone = capture.Done()
		}
		select {
		case <-ctx.Done():
			return capture
		case <-pub.Done():
			l.current.Store(nil)
			return capture
		case n := <-pub.Viewers():
			if !l.cfg.OnDemand {
				continue
			}
			if linger != nil {
				linger.Stop()
				lingerC = nil
			}
			if n == 0 {
				linger = time.NewTimer(l.cfg.Linger)
				lingerC = linger.C
			}
		case <-lingerC:
			lingerC = nil
			if _, n := l.cfg.Registry.State(l.cfg.Stream); n == 0 {
				// Nobody watches: stop the devices and end the publication
				// (the stream is no longer live) until a viewer waits again.
				l.log.Info("local source stopped: no viewers", "linger", l.cfg.Linger)
				stopCapture()
				return nil
			}
		case <-capDone:
			l.log.Error("local source device failed; reopening", "err", capture.Err(), "in", l.cfg.Retry)
			stopCapture()
			retry = time.After(l.cfg.Retry)
		case <-retry:
			retry = nil
			if !startFeed() {
				retry = time.After(l.cfg.Retry)
			}
		}
	}
}

func deviceLabel(c Config) string {
	switch {
	case c.Video != None && c.Audio != None:
		return c.Video + "+" + c.Audio
	case c.Video != None:
		return c.Video
	default:
		return c.Audio
	}
}

// localFeed packetizes encoded frames into RTP in-process and pushes them
// into a remux.Stream whose sink is the stream's publication.
type localFeed struct {
	stream *remux.Stream

	mu           sync.Mutex
	vSeq, aSeq   uint16
	vBase, aBase uint32
	vPay         rtp.Payloader // H.264 or VP9
	vPT          uint8
	vSSRC, aSSRC uint32
}

const localMTU = 1200

func newLocalFeed(c *Capture, pub *mseout.Publication) (*localFeed, error) {
	cfg := remux.Config{Sink: pub, RequestKeyframe: c.RequestKeyframe}
	var pay rtp.Payloader = &codecs.H264Payloader{}
	var pt uint8 = 102
	if c.HasVideo() {
		cfg.Video = &remux.CodecParams{MimeType: remux.MimeTypeH264, ClockRate: 90000}
		if c.VideoCodec() == VP9 {
			// Non-flexible mode, with the scalability structure (size) on
			// keyframes, as pion's VP9 tracks send it to the gateway.
			pay, pt = &codecs.VP9Payloader{}, 98
			cfg.Video = &remux.CodecParams{MimeType: remux.MimeTypeVP9, ClockRate: 90000}
		}
	}
	if c.HasAudio() {
		cfg.Audio = &remux.CodecParams{MimeType: remux.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	s, err := remux.NewStream(cfg)
	if err != nil {
		return nil, err
	}
	return &localFeed{
		stream: s,
		vPay:   pay, vPT: pt,
		vSeq: uint16(rand.Uint32()), aSeq: uint16(rand.Uint32()),
		vBase: rand.Uint32(), aBase: rand.Uint32(),
		vSSRC: rand.Uint32(), aSSRC: rand.Uint32(),
	}, nil
}

// WriteVideo implements Sink.
func (f *localFeed) WriteVideo(fr Frame) {
	ts := f.vBase + uint32(fr.Time*90000/time.Second)
	f.mu.Lock()
	payloads := f.vPay.Payload(localMTU, fr.Data)
	pkts := make([]rtp.Packet, len(payloads))
	for i, p := range payloads {
		pkts[i] = rtp.Packet{
			Header: rtp.Header{Version: 2, PayloadType: f.vPT, SequenceNumber: f.vSeq, Timestamp: ts,
				SSRC: f.vSSRC, Marker: i == len(payloads)-1},
			Payload: p,
		}
		f.vSeq++
	}
	f.mu.Unlock()
	now := time.Now()
	for i := range pkts {
		f.stream.PushVideo(&pkts[i], now)
	}
}

// WriteAudio implements Sink.
func (f *localFeed) WriteAudio(fr Frame) {
	ts := f.aBase + uint32(fr.Time*48000/time.Second)
	f.mu.Lock()
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: f.aSeq, Timestamp: ts, SSRC: f.aSSRC, Marker: true},
		Payload: fr.Data,
	}
	f.aSeq++
	f.mu.Unlock()
	f.stream.PushAudio(&pkt, time.Now())
}
