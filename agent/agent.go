// Package agent is the capture agent (`gateway capture`): it publishes a
// local capture (devices) to a remote gateway over WHIP (whip), keeps the
// publish alive (ICE restart on a network change, reconnect with backoff when
// the gateway or the network goes away) and answers keyframe requests.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/whip"
)

// Config says where the capture agent publishes.
type Config struct {
	URL string // WHIP endpoint, e.g. http://gateway:8080/whip/cam1
	// Fallbacks are other WHIP endpoints of the same stream (the other nodes
	// of a cluster). After a failed publish or a lost connection the agent
	// moves on to the next endpoint of URL, Fallbacks..., in turn.
	Fallbacks []string
	Token     string // bearer token, optional
	// Wait keeps retrying when the very first publish fails (an agent started
	// before its gateway). Without it the first failure is returned.
	Wait bool
	// LoopbackOnly keeps ICE on 127.0.0.1 (agent and gateway on one machine, tests).
	LoopbackOnly bool
	// MinBackoff and MaxBackoff bound the wait between reconnects; 0 = 500 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds one publish attempt (HTTP + ICE + DTLS); 0 = 10 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// HTTPError is a WHIP POST answered with something else than 201.
type HTTPError = whip.HTTPError

// Stats counts what the agent did.
type Stats struct {
	Sessions     int64 // publishes that connected
	Attempts     int64 // publish attempts
	PLIs         int64 // keyframe requests (PLI/FIR) received from the gateway
	DeletesSent  int64
	LastDeleteOK bool
	ICERestarts  int64 // ICE restarts the gateway accepted (after a network change)
	// Video is the video codec negotiated by the last publish, as
	// "MIME PT fmtp", e.g. "video/VP9 98 profile-id=0" ("" before one).
	Video string
}

// Agent publishes a Capture over WHIP and keeps publishing: when the
// connection drops or the gateway restarts it reconnects with backoff.
type Agent struct {
	cfg       Config
	cap       *devices.Capture
	log       *slog.Logger
	endpoints []string // URL, then Fallbacks

	sessions, attempts, plis, deletes atomic.Int64
	iceRestarts                       atomic.Int64
	lastDeleteOK                      atomic.Bool
	current                           atomic.Pointer[whipSession] // the live session
	video                             atomic.Value                // string: Stats.Video
	connected                         chan struct{}               // closed at the first connect
	connOnce                          sync.Once
}

// New returns an agent for c. Run it with Run.
func New(c *devices.Capture, cfg Config) (*Agent, error) {
	endpoints := append([]string{cfg.URL}, cfg.Fallbacks...)
	for _, e := range endpoints {
		if err := CheckURL(e); err != nil {
			return nil, err
		}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, cap: c, log: cfg.Logger, endpoints: endpoints, connected: make(chan struct{})}, nil
}

// CheckURL checks a WHIP endpoint: http(s)://host[:port]/whip/STREAM.
func CheckURL(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("WHIP URL %q: want http(s)://host[:port]/whip/STREAM", endpoint)
	}
	return nil
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	video, _ := a.video.Load().(string)
	return Stats{
		Sessions: a.sessions.Load(), Attempts: a.attempts.Load(), PLIs: a.plis.Load(),
		DeletesSent: a.deletes.Load(), LastDeleteOK: a.lastDeleteOK.Load(), Video: video,
		ICERestarts: a.iceRestarts.Load(),
	}
}

// Connected is closed once the first publish is up.
func (a *Agent) Connected() <-chan struct{} { return a.connected }

// Run publishes until ctx is done (then it sends the WHIP DELETE and returns
// nil) or the capture fails. Without Wait, a failing first publish is returned.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.cfg.MinBackoff
	first := true
	at := 0 // the endpoint tried next
	for {
		endpoint := a.endpoints[at]
		a.attempts.Add(1)
		a.log.Info("publishing", "url", redactURL(endpoint))
		s, err := a.dial(ctx, endpoint)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if first && !a.cfg.Wait && len(a.endpoints) == 1 {
				return fmt.Errorf("publish to %s: %w", redactURL(endpoint), err)
			}
			at = (at + 1) % len(a.endpoints)
			if at == 0 && first && !a.cfg.Wait {
				return fmt.Errorf("publish to every endpoint failed, the last %s: %w", redactURL(endpoint), err)
			}
			a.log.Warn("publish failed; retrying", "err", err, "next", redactURL(a.endpoints[at]), "in", backoff.Round(time.Millisecond))
		} else {
			first = false
			a.sessions.Add(1)
			a.connOnce.Do(func() { close(a.connected) })
			if s.videoCodec != "" {
				a.video.Store(s.videoCodec)
			}
			a.log.Info("live", "session", s.sess.Location(), "video", s.videoCodec)
			s.live.Store(true)
			a.current.Store(s)
			a.cap.SetSink(s)
			a.cap.RequestKeyframe()
			began := time.Now()
			var reason string
			select {
			case <-ctx.Done():
				a.cap.SetSink(nil)
				status := s.close(true)
				a.deletes.Add(1)
				a.lastDeleteOK.Store(status == http.StatusOK)
				a.log.Info("stopped; WHIP DELETE sent", "status", status)
				return nil
			case <-a.cap.Done():
				a.cap.SetSink(nil)
				s.close(true)
				return fmt.Errorf("capture failed: %w", a.cap.Err())
			case <-s.ended:
				reason = s.endReason()
			}
			a.current.Store(nil)
			a.cap.SetSink(nil)
			s.close(true) // the gateway may still be there (takeover): say goodbye
			if time.Since(began) > 30*time.Second {
				backoff = a.cfg.MinBackoff
			}
			if len(a.endpoints) > 1 {
				// Its node may be gone: the next one takes the stream over
				// at once (the name is cluster-wide).
				at = (at + 1) % len(a.endpoints)
				backoff = a.cfg.MinBackoff
			}
			a.log.Warn("connection lost; reconnecting", "reason", reason, "after", time.Since(began).Round(time.Millisecond), "next", redactURL(a.endpoints[at]))
		}
		// Jitter so a fleet of agents does not reconnect in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-a.cap.Done():
			return fmt.Errorf("capture failed: %w", a.cap.Err())
		case <-time.After(wait):
		}
		backoff = min(2*backoff, a.cfg.MaxBackoff)
	}
}

// whipSession is one WHIP publish: a PeerConnection and its resource URL.
type whipSession struct {
	a     *Agent
	pc    *webrtc.PeerConnection
	video *webrtc.TrackLocalStaticSample
	audio *webrtc.TrackLocalStaticSample
	wc    *whip.Client
	sess  *whip.Session // set once the POST succeeded
	// videoCodec is the negotiated video codec ("MIME PT fmtp").
	videoCodec  string
	videoSender *webrtc.RTPSender

	// live is set once the publish is up; a disconnect then tries an ICE
	// restart (restarting guards against two at once), which close stops.
	live       atomic.Bool
	restarting atomic.Bool
	restartMu  sync.Mutex
	closing    bool // under restartMu
	stopCtx    context.Context
	stop       context.CancelFunc

	ended     chan struct{}
	endOnce   sync.Once
	reason    atomic.Value
	closeOnce sync.Once
	wg        sync.WaitGroup
	status    int
}

func (s *whipSession) end(reason string) {
	s.endOnce.Do(func() {
		s.reason.Store(reason)
		close(s.ended)
	})
}

func (s *whipSession) endReason() string {
	r, _ := s.reason.Load().(string)
	return r
}

// WriteVideo implements devices.Sink.
func (s *whipSession) WriteVideo(f devices.Frame) {
	if s.video != nil {
		_ = s.video.WriteSample(media.Sample{Data: f.Data, Duration: f.Duration})
	}
}

// WriteAudio implements devices.Sink.
func (s *whipSession) WriteAudio(f devices.Frame) {
	if s.audio != nil {
		_ = s.audio.WriteSample(media.Sample{Data: f.Data, Duration: f.Duration})
	}
}

// videoCodec returns the one video codec the agent offers for a capture
// codec: H.264 packetization-mode 1 (payload type 102), or VP9 profile 0
// (payload type 98 and fmtp profile-id=0, as the gateway registers it in
// peer/engine.go; libvpx encodes 8-bit 4:2:0, which is profile 0).
func videoCodec(capCodec string) webrtc.RTPCodecParameters {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if capCodec == devices.VP9 {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
				SDPFmtpLine: "profile-id=0", RTCPFeedback: fb},
			PayloadType: 98,
		}
	}
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb},
		PayloadType: 102,
	}
}

// newAPI builds the Pion API of the agent. The MediaEngine registers exactly
// the codecs the agent sends (H.264 packetization-mode 1 or VP9 profile 0,
// and Opus), and the tracks are Pion's TrackLocalStaticSample, so the
// payload types on the wire are the ones negotiated on this MediaEngine.
// (mediadevices' own tracks stamp the payload type of their CodecSelector
// unless CodecSelector.Populate is called on the negotiating MediaEngine; the
// agent does not use them.)
func (a *Agent) newAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(videoCodec(a.cap.VideoCodec()), webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	// Notice a dead gateway or network within seconds, not Pion's 25 s.
	se.SetICETimeouts(3*time.Second, 5*time.Second, time.Second)
	if a.cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		loop := func(ip net.IP) bool { return ip.IsLoopback() }
		se.SetIPFilter(loop)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// userAgent names the agent to the gateway, which counts its publishers
// by it (signaling.AgentUserAgent starts it).
const userAgent = "mseway-agent/1"

// dial makes one publish: offer, POST, answer, and waits for the connection.
func (a *Agent) dial(ctx context.Context, endpoint string) (*whipSession, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
	defer cancel()
	api, err := a.newAPI()
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	s := &whipSession{a: a, pc: pc, ended: make(chan struct{}),
		wc: &whip.Client{Endpoint: endpoint, Token: a.cfg.Token, HTTP: &http.Client{Timeout: a.cfg.ConnectTimeout}, UserAgent: userAgent}}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	fail := func(err error) (*whipSession, error) {
		s.close(true)
		return nil, err
	}
	if a.cap.HasVideo() {
		c := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}
		if a.cap.VideoCodec() == devices.VP9 {
			c = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}
		}
		s.video, err = webrtc.NewTrackLocalStaticSample(c, "video", "capture")
		if err != nil {
			return fail(err)
		}
		tr, err := pc.AddTransceiverFromTrack(s.video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fail(err)
		}
		s.videoSender = tr.Sender()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readRTCP(tr.Sender())
		}()
	}
	if a.cap.HasAudio() {
		s.audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "capture")
		if err != nil {
			return fail(err)
		}
		tr, err := pc.AddTransceiverFromTrack(s.audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fail(err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readRTCP(tr.Sender())
		}()
	}
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		a.log.Debug("connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateDisconnected:
			// The network may have changed under us (a new address): an ICE
			// restart keeps the publish, and viewers see no new init. If the
			// network is just gone, the connection fails and Run reconnects.
			s.restartMu.Lock() // no wg.Add once close waits
			if !s.closing && s.live.Load() && s.restarting.CompareAndSwap(false, true) {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer s.restarting.Store(false)
					_ = s.restartICE(s.stopCtx)
				}()
			}
			s.restartMu.Unlock()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.end("connection " + st.String())
		}
	})
	if s.sess, err = s.wc.Offer(ctx, pc); err != nil {
		return fail(err)
	}
	if s.videoSender != nil {
		if cs := s.videoSender.GetParameters().Codecs; len(cs) > 0 {
			s.videoCodec = fmt.Sprintf("%s %d %s", cs[0].MimeType, cs[0].PayloadType, cs[0].SDPFmtpLine)
		}
	}
	select {
	case <-connected:
	case <-s.ended:
		return fail(fmt.Errorf("connection failed: %s", s.endReason()))
	case <-ctx.Done():
		return fail(errors.New("ICE/DTLS connection not established in time"))
	}
	return s, nil
}

func (s *whipSession) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			s.end("RTCP: " + err.Error())
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.a.plis.Add(1)
				s.a.cap.RequestKeyframe()
			}
		}
	}
}

// restartICE restarts the session's ICE over WHIP PATCH.
func (s *whipSession) restartICE(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.a.cfg.ConnectTimeout)
	defer cancel()
	if err := s.sess.RestartICE(ctx); err != nil {
		s.a.log.Warn("ICE restart failed", "err", err)
		return err
	}
	s.a.iceRestarts.Add(1)
	s.a.log.Info("ICE restarted", "session", s.sess.Location())
	return nil
}

// RestartICE restarts the live publish's ICE now, as the agent does by
// itself when its connection goes disconnected (tests; a network change
// the agent cannot see).
func (a *Agent) RestartICE(ctx context.Context) error {
	s := a.current.Load()
	if s == nil {
		return errors.New("no live publish")
	}
	if !s.restarting.CompareAndSwap(false, true) {
		return errors.New("an ICE restart is already running")
	}
	defer s.restarting.Store(false)
	return s.restartICE(ctx)
}

// close ends the session: the WHIP DELETE (when asked and a session exists),
// then the PeerConnection. It returns the DELETE's status (0 if none).
func (s *whipSession) close(sendDelete bool) int {
	s.closeOnce.Do(func() {
		s.restartMu.Lock()
		s.closing = true
		s.restartMu.Unlock()
		s.stop() // an ICE restart in flight
		if sendDelete && s.sess != nil {
			s.status = s.sess.Delete()
		}
		_ = s.pc.Close()
		s.end("closed")
		s.wg.Wait()
	})
	return s.status
}

// redactURL is endpoint for logs: without userinfo or query (a token may
// ride in either).
func redactURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
