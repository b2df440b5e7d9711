// Package whipclient is a WHIP (RFC 9725) publisher built on Pion that sends
// video frames (H.264, VP9, AV1 or H.265) and Opus packets from memory at
// real-time pace, looping them. It answers keyframe requests (PLI) by
// jumping to the next keyframe, as an encoder would, and can impair its own
// network (loss, reordering, jitter, shifted sender reports) for tests, from
// the start (Options.Impair) or during a publish (SetImpairment). The
// integration tests and the load tool use it.
package whipclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/sdpfrag"
	"github.com/mseway/mseway/whip"
)

// Options describes what to publish and where.
type Options struct {
	URL string // e.g. http://127.0.0.1:8080/whip/demo
	// WebSocketURL, when set, negotiates over the WebSocket publish signaling
	// (e.g. ws://127.0.0.1:8080/ws/publish/demo) instead of WHIP.
	WebSocketURL string
	Token        string // bearer token, optional
	// TLS is the client config for https:// and wss:// URLs (nil: the
	// system's roots); tests pass one that trusts their own certificate.
	TLS *tls.Config

	Video []mediafile.AccessUnit // starting with a keyframe; nil = no video
	// VideoCodec is the MIME type of Video: webrtc.MimeTypeH264 (the
	// default), MimeTypeVP9, MimeTypeAV1 or MimeTypeH265 (see ReadVideo).
	// The offer holds only that video codec.
	VideoCodec string
	FPS        int      // video frame rate; 0 = 30
	Audio      [][]byte // Opus packets of 20 ms; nil = no audio

	// LoopbackOnly keeps ICE on loopback addresses (tests).
	LoopbackOnly bool
	// ConnectTimeout bounds negotiation and ICE/DTLS; 0 = 15 s.
	ConnectTimeout time.Duration
	// Impair, when set, makes the outgoing network lossy from the start
	// (tests); SetImpairment changes it later, with or without it.
	Impair *Impairment
	// LogSent records every frame and audio packet with the time it was
	// handed to Pion (see Sent): tests match what viewers receive with it.
	LogSent bool
	// StampVideo, when set, rewrites each video frame just before it is
	// sent (the load tool puts the send time in an SEI).
	StampVideo func(frame []byte, now time.Time) []byte
	// Lightweight keeps only the RTCP sender/receiver reports and the
	// transport-wide sequence numbers every browser puts on its packets (so
	// the gateway does its congestion-control feedback as for a browser):
	// no NACK responder, bandwidth estimator or stats interceptors, so that
	// many publishers stay cheap next to the gateway they load (loopback
	// loses nothing).
	Lightweight bool
}

// Sent is one frame or audio packet as it was sent.
type Sent struct {
	Video bool
	Data  []byte // shared with Options.Video / Options.Audio: do not modify
	At    time.Time
}

// Publisher is one live WHIP publish.
type Publisher struct {
	pc   *webrtc.PeerConnection
	udp  ice.UDPMux    // our own socket, under its ICE mux (closing it closes the socket)
	sess *whip.Session // the WHIP session, once created
	opts Options
	wc   *whip.Client

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	ws      *websocket.Conn // WebSocket signaling, when used
	viewers atomic.Int64
	wsErr   atomic.Value

	lateTicks  atomic.Int64
	plis       atomic.Int64
	twccFB     atomic.Int64 // transport-wide congestion-control feedback packets received
	twccAcked  atomic.Int64 // packets they report as received
	jumpToKey  atomic.Bool
	framesSent atomic.Int64
	audioSent  atomic.Int64
	impair     *impairInterceptor // always there: SetImpairment needs it

	sentMu sync.Mutex
	sent   []Sent
}

func (p *Publisher) logSent(video bool, data []byte, at time.Time) {
	if !p.opts.LogSent {
		return
	}
	p.sentMu.Lock()
	p.sent = append(p.sent, Sent{Video: video, Data: data, At: at})
	p.sentMu.Unlock()
}

// Sent returns what was sent so far when Options.LogSent is set.
func (p *Publisher) Sent() []Sent {
	p.sentMu.Lock()
	defer p.sentMu.Unlock()
	return append([]Sent(nil), p.sent...)
}

// HTTPError is a non-201 answer to the WHIP POST.
type HTTPError = whip.HTTPError

// Publish negotiates over WHIP, waits until the connection is up and starts
// sending. Stop it with Close.
func Publish(ctx context.Context, opts Options) (*Publisher, error) {
	if opts.FPS <= 0 {
		opts.FPS = 30
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 15 * time.Second
	}
	if len(opts.Video) == 0 && len(opts.Audio) == 0 {
		return nil, errors.New("whipclient: nothing to publish")
	}
	if opts.VideoCodec == "" {
		opts.VideoCodec = webrtc.MimeTypeH264
	}
	videoCap, err := videoCapability(opts.VideoCodec)
	if err != nil {
		return nil, err
	}
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me, videoCap); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	// Registered first: it sits next to the network, behind the NACK
	// responder, so lost packets can be retransmitted. Installed always, so
	// that SetImpairment works on any publish: while no impairment was ever
	// set, it costs one atomic load per packet.
	imp := newImpairInterceptor()
	if opts.Impair != nil {
		imp.set(*opts.Impair)
	}
	ir.Add(impairFactory{imp})
	if opts.Lightweight {
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, err
		}
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, ir); err != nil {
			return nil, err
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	if opts.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		loop := func(ip net.IP) bool { return ip.IsLoopback() }
		se.SetIPFilter(loop)
		se.SetRemoteIPFilter(loop)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	// Our own UDP socket, so Vanish can cut the network like a crash would.
	bind := net.IPv4zero
	if opts.LoopbackOnly {
		bind = net.IPv4(127, 0, 0, 1)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: bind})
	if err != nil {
		return nil, err
	}
	// Closed through the mux, which closes udp: closing udp under a live
	// mux makes Pion log an error for the read that fails.
	mux := webrtc.NewICEUDPMux(nil, udp)
	se.SetICEUDPMux(mux)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		mux.Close()
		return nil, err
	}
	p := &Publisher{pc: pc, udp: mux, opts: opts, wc: &whip.Client{Endpoint: opts.URL, Token: opts.Token, HTTP: &http.Client{Timeout: opts.ConnectTimeout, Transport: httpTransport(opts.TLS)}}, impair: imp}
	fail := func(err error) (*Publisher, error) {
		_ = pc.Close()
		mux.Close()
		return nil, err
	}

	var videoTrack, audioTrack *webrtc.TrackLocalStaticSample
	if len(opts.Video) > 0 {
		videoTrack, err = webrtc.NewTrackLocalStaticSample(videoCap, "video", "whipclient")
		if err != nil {
			return fail(err)
		}
		sender, err := pc.AddTransceiverFromTrack(videoTrack, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fail(err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.readRTCP(sender.Sender())
		}()
	}
	if len(opts.Audio) > 0 {
		audioTrack, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		}, "audio", "whipclient")
		if err != nil {
			return fail(err)
		}
		sender, err := pc.AddTransceiverFromTrack(audioTrack, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fail(err)
		}
		// Drained too: transport-wide feedback names the SSRC of the last
		// packet it covers, so half of it comes to the audio sender.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.readRTCP(sender.Sender())
		}()
	}

	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connOnce.Do(func() { close(connected) })
		}
	})

	if opts.WebSocketURL != "" {
		if err := p.wsSignal(ctx, pc); err != nil {
			p.delete()
			// Closing the connection ends the RTCP reader, so the wait
			// cannot hang (it did, when the wait came first).
			_, err = fail(err)
			p.wg.Wait()
			return nil, err
		}
	} else if p.sess, err = p.wc.Offer(ctx, pc); err != nil {
		return fail(err)
	}
	t := time.NewTimer(opts.ConnectTimeout)
	defer t.Stop()
	select {
	case <-connected:
	case <-t.C:
		p.delete()
		return fail(errors.New("whipclient: connection not established"))
	case <-ctx.Done():
		p.delete()
		return fail(ctx.Err())
	}

	sendCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if videoTrack != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sendVideo(sendCtx, videoTrack)
		}()
	}
	if audioTrack != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sendAudio(sendCtx, audioTrack)
		}()
	}
	return p, nil
}

// ETag is the session's current entity-tag, from the 201 or the last ICE restart.
func (p *Publisher) ETag() string {
	if p.sess == nil {
		return ""
	}
	return p.sess.ETag()
}

// LocalUfrag is the publisher's current ICE username fragment.
func (p *Publisher) LocalUfrag() string {
	if d := p.pc.LocalDescription(); d != nil {
		return sdpfrag.FromSDP(d.SDP).Ufrag
	}
	return ""
}

// RestartICE restarts ICE over WHIP (RFC 9725 section 4.3.2); see
// whip.Session.RestartICE.
func (p *Publisher) RestartICE(ctx context.Context) error {
	if p.sess == nil {
		return errors.New("whipclient: not a WHIP publish")
	}
	return p.sess.RestartICE(ctx)
}

// Location is the WHIP session URL.
func (p *Publisher) Location() string {
	if p.sess == nil {
		return ""
	}
	return p.sess.Location()
}

// delete ends the session on the server: WHIP DELETE, or closing the
// signaling socket.
func (p *Publisher) delete() int {
	if p.ws != nil {
		_ = p.ws.Close()
		return 0
	}
	if p.sess == nil {
		return 0
	}
	return p.sess.Delete()
}

func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.plis.Add(1)
				p.jumpToKey.Store(true)
			case *rtcp.TransportLayerCC:
				p.twccFB.Add(1)
				p.twccAcked.Add(int64(len(pkt.RecvDeltas)))
			}
		}
	}
}

func (p *Publisher) sendVideo(ctx context.Context, track *webrtc.TrackLocalStaticSample) {
	interval := time.Second / time.Duration(p.opts.FPS)
	start := time.Now()
	aus := p.opts.Video
	i := 0
	for n := int64(1); ; n++ {
		if p.jumpToKey.Swap(false) && !aus[i].Keyframe {
			for j := 1; j < len(aus); j++ {
				if k := (i + j) % len(aus); aus[k].Keyframe {
					i = k
					break
				}
			}
		}
		now := time.Now()
		data := aus[i].Data
		if p.opts.StampVideo != nil {
			data = p.opts.StampVideo(data, now)
		}
		p.logSent(true, data, now)
		if err := track.WriteSample(media.Sample{Data: data, Duration: interval}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return
		}
		p.framesSent.Add(1)
		i = (i + 1) % len(aus)
		// An absolute schedule keeps media time and wall time together
		// when the machine is busy; a tick missed by more than a frame is counted.
		d := time.Until(start.Add(time.Duration(n) * interval))
		if d < -interval {
			p.lateTicks.Add(1)
		}
		t := time.NewTimer(max(d, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (p *Publisher) sendAudio(ctx context.Context, track *webrtc.TrackLocalStaticSample) {
	const interval = 20 * time.Millisecond
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(p.opts.Audio) {
		p.logSent(false, p.opts.Audio[i], time.Now())
		if err := track.WriteSample(media.Sample{Data: p.opts.Audio[i], Duration: interval}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return
		}
		p.audioSent.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// videoFmtp is what the publisher offers for each video codec it sends.
var videoFmtp = map[string]string{
	webrtc.MimeTypeH264: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	webrtc.MimeTypeVP9:  "profile-id=0",
	webrtc.MimeTypeAV1:  "profile=0",
	webrtc.MimeTypeH265: "profile-id=1",
}

// videoCapability is what the publisher offers for a video MIME type (any case).
func videoCapability(mime string) (webrtc.RTPCodecCapability, error) {
	for m, fmtp := range videoFmtp {
		if strings.EqualFold(m, mime) {
			return webrtc.RTPCodecCapability{MimeType: m, ClockRate: 90000, SDPFmtpLine: fmtp}, nil
		}
	}
	return webrtc.RTPCodecCapability{}, fmt.Errorf("whipclient: cannot send video %q", mime)
}

// registerCodecs registers the one video codec to send (with RTX) and Opus.
func registerCodecs(me *webrtc.MediaEngine, video webrtc.RTPCodecCapability) error {
	video.RTCPFeedback = []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for _, c := range []struct {
		c    webrtc.RTPCodecParameters
		kind webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: video, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
	} {
		if err := me.RegisterCodec(c.c, c.kind); err != nil {
			return err
		}
	}
	return nil
}

// ImpairStats returns what the impairment did (zero while none was set).
func (p *Publisher) ImpairStats() ImpairStats { return p.impair.stats() }

// SetImpairment replaces the impairment of the running publish, whether or
// not it started with Options.Impair; it is safe to call from any goroutine.
// The zero Impairment makes the network clean again: packets held back for
// reordering go out at once, packets waiting for their jitter delay go out
// at once and in order, and later packets go straight out once those are
// gone. The generator restarts from imp.Seed. Packets already waiting for a
// jitter delay keep their send times when the jitter changes to another
// non-zero value.
func (p *Publisher) SetImpairment(imp Impairment) { p.impair.set(imp) }

// KeyframeRequests returns how many PLI/FIR the publisher received.
func (p *Publisher) KeyframeRequests() int64 { return p.plis.Load() }

// TransportFeedback returns the transport-wide congestion-control feedback
// packets received (Lightweight publishers stamp their packets for it), and
// how many sent packets they report as received.
func (p *Publisher) TransportFeedback() (feedback, reported int64) {
	return p.twccFB.Load(), p.twccAcked.Load()
}

// LateTicks returns how many video frames went out more than a frame
// interval late (the machine was too busy).
func (p *Publisher) LateTicks() int64 { return p.lateTicks.Load() }

// FramesSent returns how many video frames were sent.
func (p *Publisher) FramesSent() int64 { return p.framesSent.Load() }

// Close stops sending, sends the WHIP DELETE and closes the connection. It
// returns the DELETE's status code (0 if it was not answered).
func (p *Publisher) Close() int {
	status := 0
	p.closeOnce.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		status = p.delete()
		_ = p.pc.Close()
		p.udp.Close()
		p.wg.Wait()
	})
	return status
}

// Vanish cuts the network first and then tears down, without a DELETE or a
// DTLS close: to the gateway it looks like a publisher that crashed or lost
// its network.
func (p *Publisher) Vanish() {
	p.closeOnce.Do(func() {
		p.udp.Close()
		if p.ws != nil {
			_ = p.ws.Close() // the network is gone for the signaling too
		}
		if p.cancel != nil {
			p.cancel()
		}
		_ = p.pc.Close()
		p.wg.Wait()
	})
}

// httpTransport is the default transport with tlsConfig, or the default
// transport itself when there is none.
func httpTransport(tlsConfig *tls.Config) http.RoundTripper {
	if tlsConfig == nil {
		return http.DefaultTransport
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tlsConfig.Clone() // the transport adds "h2" to the one it holds
	return t
}
