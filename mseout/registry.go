package mseout

import (
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/ratelog"
)

// Errors returned by Registry.Publish and Registry.CheckPublish.
var (
	ErrStreamBusy     = errors.New("stream already has a publisher")
	ErrTooManyStreams = errors.New("too many streams")
	ErrClosed         = errors.New("gateway is shutting down")
)

// Options configures a Registry.
type Options struct {
	// Settings returns the settings of a stream by name.
	Settings func(name string) configs.Stream
	Limits   configs.Limits
	// Authorize decides whether a request may view stream: nil, or an
	// *httpapi.Error (401, 403, 503) answered before the upgrade. nil =
	// anyone may view.
	Authorize func(r *http.Request, stream string) error
	// Origins decides viewer upgrades by their Origin; nil = any.
	Origins *httpapi.Origins
	// RemoteLive, when set, reports whether another node of a cluster
	// publishes stream: its viewers wait here for the relay even where
	// wait_for_publisher is off. It must not block or call the Registry.
	RemoteLive func(stream string) bool
	// GoawayURL, when set, names where a stream's viewers reconnect when
	// this gateway shuts down (another node of a cluster): the goaway's url.
	GoawayURL func(stream string) string
	// Events hears viewer.joined, viewer.left and publish.takeover
	// (webhooks); it must not block. May be nil.
	Events func(typ, stream string, data map[string]any)
	// OnPublish hears of every publication made (after its publisher
	// became the stream's source); it must not block. May be nil.
	OnPublish func(name string, info PublisherInfo)
	Logger    *slog.Logger
	// WriteTimeout bounds one write to a viewer; 0 = 10 s.
	WriteTimeout time.Duration
	// KeepAlive is the ping interval to viewers; 0 = 20 s.
	KeepAlive time.Duration
}

// Registry holds every stream hub. It is safe for concurrent use.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	hubs map[string]*hub
	// viewerIDs numbers viewers for the admin API.
	viewerIDs atomic.Uint64
	closed    bool
	viewers   int                                   // all viewers, all streams
	perIP     map[string]int                        // viewers by client address
	watchers  map[string]map[chan struct{}]struct{} // Watch: per stream name

	wg        sync.WaitGroup                 // viewers being served (and their writers), publications' sweepers
	lims      atomic.Pointer[configs.Limits] // Options.Limits, then SetLimits'
	metrics   metrics
	refuseLog ratelog.Limiter
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Settings == nil {
		def := configs.Default().StreamDefaults
		opts.Settings = func(string) configs.Stream { return def }
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 20 * time.Second
	}
	r := &Registry{opts: opts, log: opts.Logger, hubs: make(map[string]*hub)}
	lims := opts.Limits
	r.lims.Store(&lims)
	r.metrics.initHistograms()
	return r
}

// SetLimits replaces the limits (a config reload). Viewers and streams
// already admitted stay when they are over the new ones; the next viewer or
// publish is decided by them.
func (r *Registry) SetLimits(l configs.Limits) { r.lims.Store(&l) }

// limits are the limits in effect.
func (r *Registry) limits() *configs.Limits { return r.lims.Load() }

// PublisherInfo describes a publisher to the registry.
type PublisherInfo struct {
	Protocol string // "whip", "ws", "local", "relay"
	// Kind says who publishes: "browser", "whip" (a WHIP client other than
	// a browser: OBS, GStreamer, ffmpeg), "agent" (the capture agent),
	// "local" (a local source), "remote" (another node of the cluster).
	// "": the protocol's name.
	Kind       string
	RemoteAddr string
	// Session names the publisher's session in logs ("": none), never a
	// capability (signaling gives the first 8 hex digits of its id).
	Session string
	// RequestKeyframe asks the publisher for a keyframe. It must not block and
	// must throttle itself. May be nil.
	RequestKeyframe func()
	// TakeOver lets this publisher replace a live one, when the stream
	// allows takeover: the publisher proved the right to publish it (a
	// credential), or is a local source of the operator's config.
	TakeOver bool
}

func (i PublisherInfo) kind() string {
	if i.Kind != "" {
		return i.Kind
	}
	return i.Protocol
}

// CheckPublish reports whether a publish of name would be accepted now, so a
// caller can refuse before negotiating a PeerConnection; takeOver is
// PublisherInfo.TakeOver.
func (r *Registry) CheckPublish(name string, takeOver bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkPublishLocked(name, takeOver)
}

func (r *Registry) checkPublishLocked(name string, takeOver bool) error {
	if r.closed {
		return ErrClosed
	}
	live := false
	if h := r.hubs[name]; h != nil {
		h.mu.Lock()
		live = h.pub != nil
		busy := live && !(h.settings.AllowTakeover && takeOver)
		h.mu.Unlock()
		if busy {
			return ErrStreamBusy
		}
	}
	if !live && r.liveCountLocked() >= r.limits().MaxStreams {
		return ErrTooManyStreams
	}
	return nil
}

func (r *Registry) liveCountLocked() int {
	n := 0
	for _, h := range r.hubs {
		h.mu.Lock()
		if h.pub != nil {
			n++
		}
		h.mu.Unlock()
	}
	return n
}

// Publish makes a new publisher the source of stream name. A current
// publisher is replaced when the stream allows takeover and info.TakeOver
// is set (its Done channel is closed); otherwise ErrStreamBusy is returned.
func (r *Registry) Publish(name string, info PublisherInfo) (*Publication, error) {
	r.mu.Lock()
	if err := r.checkPublishLocked(name, info.TakeOver); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	h := r.hubLocked(name)
	p := &Publication{
		r:       r,
		h:       h,
		info:    info,
		since:   time.Now(),
		done:    make(chan struct{}),
		viewers: make(chan int, 1),
		sweepCh: make(chan struct{}, 1),
	}
	r.wg.Add(1) // under r.mu, after the closed check: before Close waits
	r.mu.Unlock()
	go p.sweepLoop()

	old := h.setPublisher(p)
	r.changed(name)
	if old != nil {
		old.end()
		r.log.Info("publisher replaced", "stream", name, "old", old.info.RemoteAddr, "new", info.RemoteAddr)
		r.event("publish.takeover", name, map[string]any{"old_remote": old.info.RemoteAddr, "new_remote": info.RemoteAddr, "protocol": info.Protocol})
	}
	r.metrics.publishes.Add(1)
	r.log.Info("publish started", "stream", name, "session", info.Session, "protocol", info.Protocol, "remote", info.RemoteAddr)
	if r.opts.OnPublish != nil {
		r.opts.OnPublish(name, info)
	}
	return p, nil
}

// event tells the Events hook, if any.
func (r *Registry) event(typ, stream string, data map[string]any) {
	if r.opts.Events != nil {
		r.opts.Events(typ, stream, data)
	}
}

// Watch returns a channel that receives a signal (several changes may
// coalesce into one) whenever stream name gains or loses a viewer or a
// publisher, and when the registry closes; stop ends the watch. It lets a
// local source wake up for its first viewer instead of polling.
func (r *Registry) Watch(name string) (changed <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	if r.watchers == nil {
		r.watchers = map[string]map[chan struct{}]struct{}{}
	}
	if r.watchers[name] == nil {
		r.watchers[name] = map[chan struct{}]struct{}{}
	}
	r.watchers[name][ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.watchers[name], ch)
		if len(r.watchers[name]) == 0 {
			delete(r.watchers, name)
		}
		r.mu.Unlock()
	}
}

// changed signals the watchers of name. Not to be called with a hub's mu
// held (r.mu comes first).
func (r *Registry) changed(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.watchers[name] {
		select {
		case ch <- struct{}{}:
		default: // a signal is pending already
		}
	}
}

// State returns whether stream name has a publisher and how many viewers it has.
func (r *Registry) State(name string) (live bool, viewers int) {
	r.mu.Lock()
	h := r.hubs[name]
	r.mu.Unlock()
	if h == nil {
		return false, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pub != nil, len(h.viewers)
}

// hubLocked returns the hub of name, creating it. r.mu must be held.
func (r *Registry) hubLocked(name string) *hub {
	h := r.hubs[name]
	if h == nil {
		h = newHub(r, name, r.opts.Settings(name))
		r.hubs[name] = h
	}
	return h
}

// removeIfIdle drops a hub with no publisher, no viewers and no outputs.
func (r *Registry) removeIfIdle(h *hub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.mu.Lock()
	idle := h.pub == nil && len(h.viewers) == 0 && len(h.outputs) == 0
	h.mu.Unlock()
	if idle && r.hubs[h.name] == h {
		delete(r.hubs, h.name)
	}
}

// StreamInfo is one entry of GET /api/streams.
type StreamInfo struct {
	Name    string      `json:"name"`
	Live    bool        `json:"live"`
	Tracks  []TrackInfo `json:"tracks"`
	Viewers int         `json:"viewers"`
	Bitrate int         `json:"bitrate"` // bits/s of media sent to each viewer
	// KeyframeInterval is the time between the last two keyframes, in
	// seconds (0 before two).
	KeyframeInterval float64        `json:"keyframeInterval,omitempty"`
	Publisher        *PublisherJSON `json:"publisher"`
	// ViewerStats aggregates the stats messages viewers sent (PROTOCOL.md).
	ViewerStats *ViewerStatsSummary `json:"viewerStats,omitempty"`
	// Node is the cluster node the stream is published on (in a cluster).
	Node string `json:"node,omitempty"`
}

// TrackInfo describes a track in StreamInfo.
type TrackInfo struct {
	Kind       string  `json:"kind"`
	Codec      string  `json:"codec"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	FPS        float64 `json:"fps,omitempty"`
	Bitrate    int     `json:"bitrate"` // bits/s; the whole stream's for the first track
	SampleRate int     `json:"sampleRate,omitempty"`
	Channels   int     `json:"channels,omitempty"`
}

// PublisherJSON describes the current publisher.
type PublisherJSON struct {
	Protocol   string    `json:"protocol"`
	Kind       string    `json:"kind"`
	RemoteAddr string    `json:"remoteAddr,omitempty"` // admin only
	Since      time.Time `json:"since"`
}

// ViewerStatsSummary aggregates what viewers reported.
type ViewerStatsSummary struct {
	Reporting     int     `json:"reporting"`
	LatencyAvg    float64 `json:"latencyAvg"`
	LatencyMax    float64 `json:"latencyMax"`
	LatencyP50    float64 `json:"latencyP50"`
	LatencyP95    float64 `json:"latencyP95"`
	BufferedAvg   float64 `json:"bufferedAvg"`
	DecodedFrames int64   `json:"decodedFrames"`
	DroppedFrames int64   `json:"droppedFrames"`
	Stalls        int64   `json:"stalls"`
	StallTime     float64 `json:"stallTime"` // seconds, summed over the viewers
}

// Streams lists every stream with a publisher or viewers, sorted by name.
func (r *Registry) Streams() []StreamInfo {
	r.mu.Lock()
	hubs := make([]*hub, 0, len(r.hubs))
	for _, h := range r.hubs {
		hubs = append(hubs, h)
	}
	r.mu.Unlock()
	out := make([]StreamInfo, 0, len(hubs))
	for _, h := range hubs {
		out = append(out, h.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Goaway sends every viewer of stream a goaway (PROTOCOL.md "Drain") with
// reason and closes it: they reconnect, to the node Options.GoawayURL names
// or to this one after a pause. The publication, if any, goes on. It
// returns how many viewers were sent away.
func (r *Registry) Goaway(stream, reason string) int {
	r.mu.Lock()
	h := r.hubs[stream]
	r.mu.Unlock()
	if h == nil {
		return 0
	}
	return h.goaway(reason)
}

// Close ends every stream: viewers get an error and are disconnected,
// publications are ended. It waits for viewer goroutines to stop.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	hubs := make([]*hub, 0, len(r.hubs))
	for _, h := range r.hubs {
		hubs = append(hubs, h)
	}
	r.mu.Unlock()
	for _, h := range hubs {
		h.shutdown("server shutting down")
	}
	r.mu.Lock()
	names := make([]string, 0, len(r.watchers))
	for name := range r.watchers {
		names = append(names, name)
	}
	r.mu.Unlock()
	for _, name := range names {
		r.changed(name) // watchers see the registry closed
	}
	r.wg.Wait()
}

// RequestKeyframe asks the publisher of stream name for a keyframe (through
// its PublisherInfo.RequestKeyframe, which throttles itself); a no-op when
// the stream has no publisher. Upstream consumers that join mid-GOP (another
// node's relay) use it.
func (r *Registry) RequestKeyframe(name string) {
	r.mu.Lock()
	h := r.hubs[name]
	r.mu.Unlock()
	if h == nil {
		return
	}
	h.mu.Lock()
	pub := h.pub
	h.mu.Unlock()
	if pub != nil {
		pub.requestKeyframe()
	}
}
