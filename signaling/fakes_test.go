package signaling

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/internal/testkit/apitest"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/remux"
	"github.com/mseway/mseway/sdpfrag"
)

// fakeEngine accepts every offer with a fakeSession (or fails with err).
type fakeEngine struct {
	mu       sync.Mutex
	err      error
	sessions []*fakeSession
	ice      []webrtc.ICEServer
	// holdConnect leaves new sessions unconnected until connect().
	holdConnect bool
}

func (e *fakeEngine) Accept(_ context.Context, offer string, opts peer.SessionOptions) (Session, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return nil, "", e.err
	}
	s := &fakeSession{done: make(chan struct{}), established: make(chan struct{}), offer: offer}
	if !e.holdConnect {
		s.connect()
	}
	e.sessions = append(e.sessions, s)
	if opts.OnCandidate != nil { // trickle: a candidate may be gathered before the answer is sent
		opts.OnCandidate(webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"})
	}
	return s, "v=0 fake answer", nil
}

func (e *fakeEngine) ICEServers() []webrtc.ICEServer { return e.ice }

func (e *fakeEngine) session(t *testing.T, i int) *fakeSession {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.sessions) {
		t.Fatalf("%d sessions, want session %d", len(e.sessions), i)
	}
	return e.sessions[i]
}

// fakeSession records what signaling asks of a publisher's connection.
type fakeSession struct {
	mu         sync.Mutex
	offer      string
	started    bool
	closed     int
	candidates []webrtc.ICECandidateInit
	restarts   []sdpfrag.Frag
	restartErr error
	done       chan struct{}
	doneOnce   sync.Once

	established chan struct{}
	connectOnce sync.Once
}

// connect makes the session connected, as ICE and DTLS completing would.
func (s *fakeSession) connect() { s.connectOnce.Do(func() { close(s.established) }) }

func (s *fakeSession) Established() <-chan struct{} { return s.established }

func (s *fakeSession) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (s *fakeSession) Start(remux.Sink) error {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	return nil
}
func (s *fakeSession) Done() <-chan struct{} { return s.done }
func (s *fakeSession) Connected() bool       { return true }
func (s *fakeSession) AddCandidate(c webrtc.ICECandidateInit) error {
	if !strings.HasPrefix(c.Candidate, "candidate:") || len(strings.Fields(c.Candidate)) < 8 {
		return errors.New("not a candidate line")
	}
	s.mu.Lock()
	s.candidates = append(s.candidates, c)
	s.mu.Unlock()
	return nil
}
func (s *fakeSession) RestartICE(_ context.Context, remote sdpfrag.Frag) (sdpfrag.Frag, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restartErr != nil {
		return sdpfrag.Frag{}, s.restartErr
	}
	s.restarts = append(s.restarts, remote)
	return sdpfrag.Frag{Ufrag: "gwufrag2", Pwd: "gwpassword2gwpassword2", EndOfCandidates: true}, nil
}
func (s *fakeSession) RestartICEWithOffer(offer string) (string, error) {
	if !strings.Contains(offer, "a=ice-ufrag:new") {
		return "", errors.New("the offer changes more than the ICE credentials")
	}
	return "v=0 restarted answer", nil
}
func (s *fakeSession) RequestKeyframe()        {}
func (s *fakeSession) KeyframeRequests() int64 { return 0 }
func (s *fakeSession) Stats() remux.Stats      { return remux.Stats{} }
func (s *fakeSession) Feedback() peer.Feedback {
	return peer.Feedback{VideoJitter: -1, AudioJitter: -1, RTT: -1}
}
func (s *fakeSession) Close() error {
	s.mu.Lock()
	s.closed++
	s.mu.Unlock()
	s.fail()
	return nil
}

// fail ends the session as a failed connection would.
func (s *fakeSession) fail() { s.doneOnce.Do(func() { close(s.done) }) }

func (s *fakeSession) closedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// offerSDP is a real offer (H.264 + Opus, sendonly) from a Pion offerer, as
// peer.CheckOffer wants it.
func offerSDP(t testing.TB) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// testServer is a signaling Server with a fake engine and a real registry.
type testServer struct {
	engine *fakeEngine
	reg    *mseout.Registry
	srv    *Server
	url    string
}

func newTestServer(t testing.TB, opts Options, limits func(*mseout.Options)) *testServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ro := mseout.Options{Logger: log}
	ro.Limits.MaxStreams, ro.Limits.MaxViewers, ro.Limits.MaxViewersPerStream = 10, 10, 10
	if limits != nil {
		limits(&ro)
	}
	reg := mseout.NewRegistry(ro)
	fe := &fakeEngine{}
	opts.Engine, opts.Streams, opts.Logger = fe, MSEStreams(reg), log
	s := New(opts)
	mux := http.NewServeMux()
	s.Register(mux)
	mux.HandleFunc("GET /ws/watch/{stream}", func(w http.ResponseWriter, r *http.Request) {
		reg.ServeViewer(w, r, r.PathValue("stream"))
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		reg.Close()
		hs.Close()
	})
	return &testServer{engine: fe, reg: reg, srv: s, url: hs.URL}
}

// staticAuth authorizes publishing with one static token, as the gateway's
// auth package does: a credential when it matches, 401/403 otherwise.
func staticAuth(token string) func(*http.Request, string) (bool, error) {
	return func(r *http.Request, _ string) (bool, error) {
		if err := httpapi.CheckToken(httpapi.Token(r), token, "publish"); err != nil {
			return false, err
		}
		return true, nil
	}
}

// waitLive waits until stream has a live publisher.
func (ts *testServer) waitLive(t *testing.T, stream string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if live, _ := ts.reg.State(stream); live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s never went live", stream)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitStarted waits until sess is remuxing into its stream (it went live).
func (ts *testServer) waitStarted(t *testing.T, sess *fakeSession) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !sess.isStarted() {
		if time.Now().After(deadline) {
			t.Fatal("the session never went live")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// do sends a request and returns the status, the headers and the body.
func (ts *testServer) do(t *testing.T, method, path, ctype, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	r := apitest.Do(t, nil, method, ts.url+path, ctype, body, hdr)
	return r.Status, r.Header, r.Body
}

// waitFor is a channel that fires after a generous deadline.
func waitFor(*testing.T) <-chan time.Time { return time.After(5 * time.Second) }

// waitUntil polls cond until it holds, or fails the test after 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
