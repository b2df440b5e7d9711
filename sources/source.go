// Package sources publishes local devices straight into streams of this
// gateway: a capture (devices) is encoded, its frames go into a remux.Stream
// through the access-unit entry point (no RTP round trip) and the stream's
// mseout publication fans them out. A source can be on demand (capturing
// only while someone watches) and gives way to a WHIP publisher that takes
// its stream over.
package sources

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/remux"
)

// Config configures a local source: a capture published straight into a
// stream of this gateway, without a WebRTC hop.
type Config struct {
	Stream   string
	Capture  devices.Config
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
	// Publish, when set, publishes instead of Registry.Publish (a cluster
	// claims the name cluster-wide first; mseout.ErrStreamBusy while another
	// node publishes it). The publication must belong to Registry.
	Publish func(stream string, info mseout.PublisherInfo) (*mseout.Publication, error)
}

// Source is a running local source. It owns one goroutine, from Start to
// Close.
type Source struct {
	cfg Config
	log *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	current  atomic.Pointer[devices.Capture] // the running capture, for keyframe requests
	captures atomic.Int64                    // captures opened so far
}

// Start checks cfg and starts the source. A device that cannot be opened is
// an error here when the source is not on demand; later failures are logged
// and retried.
func Start(cfg Config) (*Source, error) {
	if err := cfg.Capture.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		return nil, errors.New("sources: Config.Registry is nil")
	}
	if err := cfg.Capture.CheckBuild(); err != nil {
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
	if err := cfg.Capture.CheckDevices(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Source{cfg: cfg, log: cfg.Logger.With("source", cfg.Stream), cancel: cancel, done: make(chan struct{})}
	var first *devices.Capture
	if !cfg.OnDemand { // a broken device stops the gateway at start
		c, err := devices.Open(cfg.Capture)
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
func (l *Source) Close() {
	l.cancel()
	<-l.done
}

// Captures returns how many times the source opened its devices.
func (l *Source) Captures() int64 { return l.captures.Load() }

func (l *Source) requestKeyframe() {
	if c := l.current.Load(); c != nil {
		c.RequestKeyframe()
	}
}

func (l *Source) run(ctx context.Context, capture *devices.Capture) {
	defer close(l.done)
	defer func() {
		if capture != nil {
			capture.Close()
		}
	}()
	publish := l.cfg.Publish
	if publish == nil {
		publish = l.cfg.Registry.Publish
	}
	lastErr := ""
	for ctx.Err() == nil {
		if l.cfg.OnDemand && !l.waitForViewers(ctx) {
			return
		}
		pub, err := publish(l.cfg.Stream, mseout.PublisherInfo{
			Protocol:        "local",
			Kind:            "local",
			RemoteAddr:      "local:" + deviceLabel(l.cfg.Capture),
			RequestKeyframe: l.requestKeyframe,
		})
		if errors.Is(err, mseout.ErrClosed) {
			return
		}
		if err != nil {
			// The same refusal again (another node publishes the name) is
			// logged once.
			level := slog.LevelWarn
			if err.Error() == lastErr {
				level = slog.LevelDebug
			}
			lastErr = err.Error()
			l.log.Log(ctx, level, "local source cannot publish; retrying", "err", err, "in", l.cfg.Retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(l.cfg.Retry): // collected once fired or not (Go 1.23+)
			}
			continue
		}
		lastErr = ""
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
		if errors.Is(l.cfg.Registry.CheckPublish(l.cfg.Stream, false), mseout.ErrClosed) {
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
func (l *Source) waitFor(ctx context.Context, cond func(live bool, viewers int) bool) bool {
	reg := l.cfg.Registry
	changed, stop := reg.Watch(l.cfg.Stream)
	defer stop()
	for {
		if errors.Is(reg.CheckPublish(l.cfg.Stream, false), mseout.ErrClosed) {
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
func (l *Source) waitForViewers(ctx context.Context) bool {
	return l.waitFor(ctx, func(live bool, viewers int) bool { return !live && viewers > 0 })
}

// serve feeds pub until ctx ends or pub is done. It returns the capture that
// is still open, if any.
func (l *Source) serve(ctx context.Context, pub *mseout.Publication, capture *devices.Capture) *devices.Capture {
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
			c, err := devices.Open(l.cfg.Capture)
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

func deviceLabel(c devices.Config) string {
	switch {
	case c.Video != devices.None && c.Audio != devices.None:
		return c.Video + "+" + c.Audio
	case c.Video != devices.None:
		return c.Video
	default:
		return c.Audio
	}
}

// localFeed pushes a capture's encoded frames into a remux.Stream whose sink
// is the stream's publication, through the access-unit entry point.
type localFeed struct {
	stream *remux.Stream
}

func newLocalFeed(c *devices.Capture, pub *mseout.Publication) (*localFeed, error) {
	cfg := remux.Config{Sink: pub, RequestKeyframe: c.RequestKeyframe}
	if c.HasVideo() {
		cfg.Video = &remux.CodecParams{MimeType: remux.MimeTypeH264, ClockRate: 90000}
		if c.VideoCodec() == devices.VP9 {
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
	return &localFeed{stream: s}, nil
}

// WriteVideo implements devices.Sink.
func (f *localFeed) WriteVideo(fr devices.Frame) {
	f.stream.PushVideoFrame(fr.Data, uint32(fr.Time*90000/time.Second), time.Now())
}

// WriteAudio implements devices.Sink.
func (f *localFeed) WriteAudio(fr devices.Frame) {
	f.stream.PushAudioFrame(fr.Data, uint32(fr.Time*48000/time.Second), time.Now())
}
