// Package signaling owns the publishers' HTTP surface: WHIP (RFC 9725) and
// the WebSocket publish signaling of PROTOCOL.md, with auth, input
// validation, limits and JSON errors. It turns an accepted offer into a
// peer.Session connected to an mseout.Publication and owns that pair until
// the publish ends. It never touches RTP.
package signaling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/ratelog"
	"github.com/mseway/mseway/sdpfrag"
)

// connectTimeout ends a publish whose ICE/DTLS never completes.
const connectTimeout = 20 * time.Second

// maxRemoteCandidates bounds the ICE candidates one publish may give, in
// its offer and trickled (browsers give a few dozen): each costs
// connectivity checks sent where the client says, so a flood would cost CPU
// and aim the gateway's STUN at hosts of the client's choosing.
const maxRemoteCandidates = 100

// Options configures the Server.
type Options struct {
	Engine  Engine  // PeerEngine(e) in the gateway
	Streams Streams // MSEStreams(r) in the gateway
	// Authorize decides whether r may publish stream: nil, or an
	// *httpapi.Error (401, 403, 503). credential reports that a token or the
	// auth hook granted it (not open access): taking over a live stream
	// needs one. nil Authorize = anyone, without a credential.
	Authorize func(r *http.Request, stream string) (credential bool, err error)
	// Origins decides WebSocket upgrades and CORS by Origin; nil = any.
	Origins *httpapi.Origins
	// ICEServers, when set, gives the ICE servers advertised to a publisher
	// of stream (time-limited TURN credentials); nil = the engine's.
	ICEServers func(stream string) []webrtc.ICEServer
	// Events hears publish.started/ended/takeover (webhooks); may be nil.
	Events       func(typ, stream string, data map[string]any)
	MaxBodyBytes int64
	// MaxPending and MaxPendingPerIP bound the publishes negotiated but
	// not yet connected (0 = 100 and 10).
	MaxPending, MaxPendingPerIP int
	Logger                      *slog.Logger
}

// Server serves WHIP and WS publish signaling.
type Server struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // publish owner goroutines

	upgrader websocket.Upgrader
	refused  sync.Map // status -> *atomic.Int64
	logLimit ratelog.Limiter

	mu           sync.Mutex
	ended        ingestTotals // the counters of the sessions that ended
	sessions     map[string]*publish
	pending      int            // sessions not yet connected
	pendingPerIP map[string]int // of those, by client address
}

// publish is one live publish: the session, its publication and who ends it.
type publish struct {
	id       string
	stream   string
	protocol string
	kind     string // mseout.PublisherInfo.Kind
	remote   string // the connection's address, for logs
	ip       string // the client's address (trusted proxies believed)
	cred     bool   // a credential granted the publish: it may take over
	sess     Session
	// pub is set once the session connected and became the stream's
	// source; live is closed then. Until then the publish is pending: it
	// holds no stream and counts against the pending caps.
	pub      Publication
	live     chan struct{}
	endMsg   string        // why the publish ended before or instead of going live
	reason   string        // why own ended it (read after ended is closed)
	stop     chan struct{} // closed by DELETE or the WS closing
	stopOnce sync.Once
	ended    chan struct{} // closed when cleanup is done
	iceMu    sync.Mutex
	ufrag    string // the publisher's current ICE ufrag, to tell stale trickle from current
	etag     string // the entity-tag of the session's ICE state (RFC 9725 section 4.3)
	cands    int    // remote candidates taken, offer and trickle (under iceMu)
}

func (p *publish) requestStop() { p.stopOnce.Do(func() { close(p.stop) }) }

// New returns a Server; Close stops every publish it started.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100
	}
	if opts.MaxPendingPerIP <= 0 {
		opts.MaxPendingPerIP = 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, sessions: make(map[string]*publish), pendingPerIP: map[string]int{}}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      opts.Origins.Allowed,
		// Handshake failures answer in JSON like every other HTTP error.
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			s.fail(w, errorf(status, "websocket handshake: "+reason.Error()))
		},
	}
	return s
}

// Register adds the publisher endpoints to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /whip/{stream}", s.handleWHIPPost)
	mux.HandleFunc("OPTIONS /whip/{stream}", s.handleOptions)
	mux.HandleFunc("PATCH /whip/{stream}/{session}", s.handleWHIPPatch)
	mux.HandleFunc("DELETE /whip/{stream}/{session}", s.handleWHIPDelete)
	mux.HandleFunc("OPTIONS /whip/{stream}/{session}", s.handleOptions)
	mux.HandleFunc("GET /ws/publish/{stream}", s.handleWSPublish)
}

// Close ends every publish and waits for their cleanup.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// Publishing reports how many publishes are live (connected).
func (s *Server) Publishing() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions) - s.pending
}

// Pending reports how many publishes are negotiated but not yet connected.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// takePending counts a new pending publish from ip (an IPv6 client by its
// /64): an error past the caps.
func (s *Server) takePending(ip string) error {
	ip = httpapi.AddressGroup(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.pendingPerIP[ip] >= s.opts.MaxPendingPerIP:
		return errorf(http.StatusTooManyRequests, fmt.Sprintf("too many publishes from your address waiting to connect (at most %d)", s.opts.MaxPendingPerIP))
	case s.pending >= s.opts.MaxPending:
		return errorf(http.StatusServiceUnavailable, "too many publishes waiting to connect")
	}
	s.pending++
	s.pendingPerIP[ip]++
	return nil
}

// releasePending uncounts a pending publish from ip.
func (s *Server) releasePending(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releasePendingLocked(ip)
}

func (s *Server) releasePendingLocked(ip string) {
	ip = httpapi.AddressGroup(ip)
	s.pending--
	if s.pendingPerIP[ip]--; s.pendingPerIP[ip] <= 0 {
		delete(s.pendingPerIP, ip)
	}
}

// takeCandidates counts n more remote candidates for p: false past
// maxRemoteCandidates.
func (p *publish) takeCandidates(n int) bool {
	p.iceMu.Lock()
	defer p.iceMu.Unlock()
	if p.cands+n > maxRemoteCandidates {
		return false
	}
	p.cands += n
	return true
}

// errorf is httpapi.Errorf: an error that answers with its status.
func errorf(code int, msg string) error { return httpapi.Errorf(code, msg) }

// fail writes err as the JSON error of its status (500 otherwise), counts
// it by status and logs it, at most a line a second.
func (s *Server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if he, ok := errors.AsType[*httpapi.Error](err); ok {
		status = he.Status
	}
	s.countRefusal(strconv.Itoa(status))
	httpapi.Fail(w, err)
}

// countRefusal counts a refused request or message by what answered it
// (an HTTP status, or "ws" for an error on the publish socket).
func (s *Server) countRefusal(key string) {
	c, _ := s.refused.LoadOrStore(key, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
}

// warn logs a refusal a client caused, at most a line a second.
func (s *Server) warn(log *slog.Logger, msg string, args ...any) {
	if ok, held := s.logLimit.Allow(); ok {
		log.Warn(msg, append(args, "refusals_not_logged", held)...)
	}
}

// checkStream validates the stream name and the right to publish it;
// credential reports that a credential granted it.
func (s *Server) checkStream(r *http.Request) (name string, credential bool, err error) {
	name = r.PathValue("stream")
	if err := httpapi.StreamName(name); err != nil {
		return "", false, err
	}
	if s.opts.Authorize != nil {
		credential, err = s.opts.Authorize(r, name)
		if err != nil {
			return "", false, err
		}
	}
	return name, credential, nil
}

// event tells the Events hook, if any.
func (s *Server) event(typ, stream string, data map[string]any) {
	if s.opts.Events != nil {
		s.opts.Events(typ, stream, data)
	}
}

// mapPublishError turns registry and negotiation errors into HTTP errors.
func mapPublishError(err error) error {
	switch {
	case errors.Is(err, mseout.ErrStreamBusy):
		return errorf(http.StatusConflict, "stream already has a publisher")
	case errors.Is(err, mseout.ErrTooManyStreams):
		return errorf(http.StatusServiceUnavailable, "too many streams")
	case errors.Is(err, mseout.ErrClosed):
		return errorf(http.StatusServiceUnavailable, "gateway is shutting down")
	case errors.Is(err, peer.ErrMalformedOffer):
		return errorf(http.StatusBadRequest, err.Error())
	case errors.Is(err, peer.ErrNoAcceptableCodec):
		return errorf(http.StatusNotAcceptable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, "negotiation did not finish in time")
	}
	if _, ok := errors.AsType[*httpapi.Error](err); ok {
		return err
	}
	return errorf(http.StatusInternalServerError, err.Error())
}

// AgentUserAgent starts the User-Agent of the capture agent's requests.
const AgentUserAgent = "mseway-agent/"

// publisherKind names who publishes, for the operator's figures (never for
// a decision): the capture agent by its User-Agent, the WebSocket signaling
// is the web page's, and a WHIP client is a browser when its User-Agent is
// one (they all start "Mozilla/5.0"), otherwise OBS, GStreamer, ffmpeg...
func publisherKind(protocol, userAgent string) string {
	switch {
	case strings.HasPrefix(userAgent, AgentUserAgent):
		return "agent"
	case protocol == "ws" || strings.HasPrefix(userAgent, "Mozilla/"):
		return "browser"
	}
	return "whip"
}

// startPublish negotiates offer; the publish becomes the source of stream
// once it connects (own). With onCandidate set, candidates trickle out and
// the answer is returned at once.
func (s *Server) startPublish(ctx context.Context, r *http.Request, stream string, cred bool, offer, protocol string, onCandidate func(webrtc.ICECandidateInit)) (*publish, string, error) {
	reg := s.opts.Streams
	remote, ip := r.RemoteAddr, httpapi.ClientIP(r)
	if err := reg.CheckPublish(stream, cred); err != nil {
		return nil, "", mapPublishError(err)
	}
	if _, err := peer.CheckOffer(offer); err != nil {
		return nil, "", mapPublishError(err)
	}
	offerCands := strings.Count(offer, "a=candidate:")
	if offerCands > maxRemoteCandidates {
		return nil, "", errorf(http.StatusBadRequest, fmt.Sprintf("the offer has %d ICE candidates; at most %d are taken", offerCands, maxRemoteCandidates))
	}
	// The session id is the WHIP resource's capability (PATCH and DELETE
	// need nothing else): logs carry its first 8 hex digits only.
	id := newID()
	log := s.log.With("stream", stream, "session", id[:8], "remote", remote, "protocol", protocol)
	if ip != remoteIP(remote) {
		log = log.With("client", ip)
	}
	if err := s.takePending(ip); err != nil {
		s.warn(log, "publish refused", "err", err)
		return nil, "", err
	}
	opts := peer.SessionOptions{Logger: log}
	opts.OnCandidate = onCandidate
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sess, answer, err := s.opts.Engine.Accept(ctx, offer, opts)
	if err != nil {
		s.releasePending(ip)
		s.warn(log, "publish refused", "err", err)
		return nil, "", mapPublishError(err)
	}
	p := &publish{
		id: id, stream: stream, protocol: protocol, kind: publisherKind(protocol, r.UserAgent()), remote: remote, ip: ip, cred: cred,
		sess: sess, live: make(chan struct{}), stop: make(chan struct{}), ended: make(chan struct{}),
		ufrag: sdpfrag.FromSDP(offer).Ufrag, etag: newETag(), cands: offerCands,
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.releasePendingLocked(ip)
		s.mu.Unlock()
		_ = sess.Close()
		return nil, "", mapPublishError(mseout.ErrClosed)
	}
	s.sessions[p.id] = p
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.own(p, log)
	}()
	return p, answer, nil
}

// own takes the publish live when it connects, waits for it to end,
// whatever ends it, and cleans up.
// reasonSessionEnded is why a publish ends when its connection does.
const reasonSessionEnded = "connection closed or failed"

func (s *Server) own(p *publish, log *slog.Logger) {
	defer close(p.ended)
	pending := true
	cleanup := func() {
		if p.pub != nil {
			p.pub.Close()
		}
		_ = p.sess.Close()
		// final: the session is closed
		st, plis, fb := p.sess.Stats(), p.sess.KeyframeRequests(), p.sess.Feedback()
		s.mu.Lock()
		delete(s.sessions, p.id)
		s.ended.add(st, plis, fb.NACKed)
		if pending {
			s.releasePendingLocked(p.ip)
		}
		s.mu.Unlock()
	}
	defer contain.Recover(log, "publish lifecycle", cleanup)
	connect := time.NewTimer(connectTimeout)
	defer connect.Stop()
	var reason string
	var pubDone <-chan struct{}
	established := p.sess.Established()
	for reason == "" {
		select {
		case <-established:
			established = nil
			connect.Stop()
			s.mu.Lock()
			s.releasePendingLocked(p.ip)
			pending = false
			s.mu.Unlock()
			if reason = s.goLive(p, log); reason == "" {
				pubDone = p.pub.Done()
			}
		case <-p.sess.Done():
			reason = reasonSessionEnded
		case <-pubDone:
			reason = "replaced by a newer publisher or shutdown"
		case <-p.stop:
			reason = "ended by the publisher"
		case <-s.ctx.Done():
			reason = "server shutting down"
		case <-connect.C:
			reason = "connection not established within " + connectTimeout.String()
		}
	}
	if p.pub == nil {
		p.endMsg = reason
	}
	p.reason = reason
	cleanup()
	if p.pub != nil {
		s.event("publish.ended", p.stream, map[string]any{"protocol": p.protocol, "remote_ip": p.ip, "reason": reason})
	}
	st := p.sess.Stats()
	log.Info("publish closed", "reason", reason, "frames", st.VideoFramesEmitted, "dropped_frames", st.VideoFramesDropped,
		"lost_video_packets", st.VideoLost, "lost_audio_packets", st.AudioLost, "keyframe_requests", p.sess.KeyframeRequests())
	if st.VideoOutOfOrder > 0 {
		log.Warn("the publisher sent frames out of presentation order beyond what its SPS declares (B-frames without max_num_reorder_frames, or repeated timestamps); viewers saw them in decode order: configure its encoder without B-frames, as WebRTC expects",
			"frames", st.VideoOutOfOrder, "reordered_ok", st.VideoReordered)
	}
}

// goLive makes a connected publish the source of its stream: "" or why
// it cannot be (the stream got a publisher meanwhile that this one may not
// take over, the gateway is stopping).
func (s *Server) goLive(p *publish, log *slog.Logger) string {
	pub, err := s.opts.Streams.Publish(p.stream, mseout.PublisherInfo{
		Protocol: p.protocol, Kind: p.kind, RemoteAddr: p.remote, Session: p.id[:8], RequestKeyframe: p.sess.RequestKeyframe, TakeOver: p.cred,
	})
	if err != nil {
		s.warn(log, "publish refused at connect", "err", err)
		return "refused at connect: " + err.Error()
	}
	if err := p.sess.Start(pub); err != nil {
		pub.Close()
		s.warn(log, "publish refused at connect", "err", err)
		return "refused at connect: " + err.Error()
	}
	p.pub = pub
	close(p.live)
	s.event("publish.started", p.stream, map[string]any{"protocol": p.protocol, "remote_ip": p.ip})
	return ""
}

// remoteIP is the host of a host:port address.
func remoteIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

func (s *Server) lookup(r *http.Request) (*publish, error) {
	stream, _, err := s.checkStream(r)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	p := s.sessions[r.PathValue("session")]
	s.mu.Unlock()
	if p == nil || p.stream != stream || p.protocol != "whip" {
		return nil, errorf(http.StatusNotFound, "no such WHIP session")
	}
	return p, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// setCORS lets publishers on other origins (the allowed ones) use WHIP.
func (s *Server) setCORS(w http.ResponseWriter, r *http.Request) {
	s.opts.Origins.SetCORS(w, r)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, Link, Accept-Post, Accept-Patch, ETag")
}
