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
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
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
	Engine       Engine  // PeerEngine(e) in the gateway
	Streams      Streams // MSEStreams(r) in the gateway
	PublishToken string
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Server serves WHIP and WS publish signaling.
type Server struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // publish owner goroutines

	mu       sync.Mutex
	sessions map[string]*publish
}

// publish is one live publish: the session, its publication and who ends it.
type publish struct {
	id       string
	stream   string
	protocol string
	remote   string
	sess     Session
	pub      Publication
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, sessions: make(map[string]*publish)}
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

// Publishing reports how many publishes are live.
func (s *Server) Publishing() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
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

// writeError writes err as the JSON error of its status (500 otherwise).
func writeError(w http.ResponseWriter, err error) { httpapi.Fail(w, err) }

// checkStream validates the stream name and the publish token.
func (s *Server) checkStream(r *http.Request) (string, error) {
	name := r.PathValue("stream")
	if err := httpapi.StreamName(name); err != nil {
		return "", err
	}
	if err := httpapi.CheckToken(httpapi.Token(r), s.opts.PublishToken, "publish"); err != nil {
		return "", err
	}
	return name, nil
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

// startPublish negotiates offer and makes it the source of stream. With
// onCandidate set, candidates trickle out and the answer is returned at once.
func (s *Server) startPublish(ctx context.Context, stream, offer, protocol, remote string, onCandidate func(webrtc.ICECandidateInit)) (*publish, string, error) {
	reg := s.opts.Streams
	if err := reg.CheckPublish(stream); err != nil {
		return nil, "", mapPublishError(err)
	}
	if _, err := peer.CheckOffer(offer); err != nil {
		return nil, "", mapPublishError(err)
	}
	offerCands := strings.Count(offer, "a=candidate:")
	if offerCands > maxRemoteCandidates {
		return nil, "", errorf(http.StatusBadRequest, fmt.Sprintf("the offer has %d ICE candidates; at most %d are taken", offerCands, maxRemoteCandidates))
	}
	log := s.log.With("stream", stream, "remote", remote, "protocol", protocol)
	opts := peer.SessionOptions{Logger: log}
	opts.OnCandidate = onCandidate
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sess, answer, err := s.opts.Engine.Accept(ctx, offer, opts)
	if err != nil {
		log.Warn("publish refused", "err", err)
		return nil, "", mapPublishError(err)
	}
	pub, err := reg.Publish(stream, mseout.PublisherInfo{Protocol: protocol, RemoteAddr: remote, RequestKeyframe: sess.RequestKeyframe})
	if err != nil {
		_ = sess.Close()
		return nil, "", mapPublishError(err)
	}
	if err := sess.Start(pub); err != nil {
		pub.Close()
		_ = sess.Close()
		return nil, "", errorf(http.StatusNotAcceptable, err.Error())
	}
	p := &publish{
		id: newID(), stream: stream, protocol: protocol, remote: remote,
		sess: sess, pub: pub, stop: make(chan struct{}), ended: make(chan struct{}),
		ufrag: sdpfrag.FromSDP(offer).Ufrag, etag: newETag(), cands: offerCands,
	}
	s.mu.Lock()
	s.sessions[p.id] = p
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.own(p, log)
	}()
	return p, answer, nil
}

// own waits for the publish to end, whatever ends it, and cleans up.
func (s *Server) own(p *publish, log *slog.Logger) {
	defer close(p.ended)
	defer contain.Recover(log, "publish lifecycle", func() {
		p.pub.Close()
		_ = p.sess.Close()
		s.mu.Lock()
		delete(s.sessions, p.id)
		s.mu.Unlock()
	})
	connect := time.NewTimer(connectTimeout)
	defer connect.Stop()
	var reason string
	for reason == "" {
		select {
		case <-p.sess.Done():
			reason = "connection closed or failed"
		case <-p.pub.Done():
			reason = "replaced by a newer publisher or shutdown"
		case <-p.stop:
			reason = "ended by the publisher"
		case <-s.ctx.Done():
			reason = "server shutting down"
		case <-connect.C:
			if !p.sess.Connected() {
				reason = "connection not established within " + connectTimeout.String()
			}
		}
	}
	p.pub.Close()
	_ = p.sess.Close()
	s.mu.Lock()
	delete(s.sessions, p.id)
	s.mu.Unlock()
	st := p.sess.Stats()
	log.Info("publish closed", "reason", reason, "frames", st.VideoFramesEmitted, "dropped_frames", st.VideoFramesDropped,
		"lost_video_packets", st.VideoLost, "lost_audio_packets", st.AudioLost, "keyframe_requests", p.sess.KeyframeRequests())
	if st.VideoOutOfOrder > 0 {
		log.Warn("the publisher sent frames out of presentation order beyond what its SPS declares (B-frames without max_num_reorder_frames, or repeated timestamps); viewers saw them in decode order: configure its encoder without B-frames, as WebRTC expects",
			"frames", st.VideoOutOfOrder, "reordered_ok", st.VideoReordered)
	}
}

func (s *Server) lookup(r *http.Request) (*publish, error) {
	stream, err := s.checkStream(r)
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

// setCORS lets publishers on other origins use WHIP.
func setCORS(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, Link, Accept-Post, Accept-Patch, ETag")
}
