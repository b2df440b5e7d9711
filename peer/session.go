package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/remux"
	"github.com/mseway/mseway/sdpfrag"
)

// pliInterval throttles keyframe requests to one per this interval.
const pliInterval = 500 * time.Millisecond

// SessionOptions tunes Accept.
type SessionOptions struct {
	// OnCandidate, when set, receives the gateway's ICE candidates as they are
	// gathered (trickle ICE) and Accept answers at once; otherwise Accept waits
	// for gathering to complete so the answer holds every candidate (WHIP).
	OnCandidate func(webrtc.ICECandidateInit)
	// GatherTimeout bounds the wait for ICE gathering; 0 = 5 s.
	GatherTimeout time.Duration
	Logger        *slog.Logger
}

// Session is one publisher's PeerConnection.
type Session struct {
	pc   *webrtc.PeerConnection
	log  *slog.Logger
	conf remux.Config // codecs from the negotiated answer

	started chan struct{}
	stream  *remux.Stream // set by Start before started is closed

	done      chan struct{} // closed when the connection fails or closes
	doneOnce  sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup

	restartMu     sync.Mutex // one ICE restart at a time
	gatherTimeout time.Duration

	layers simulcastLayers // simulcast video: the layers and the one remuxed

	connected atomic.Bool
	videoSSRC atomic.Uint32
	audioSSRC atomic.Uint32 // of the remuxed audio track
	lastPLI   atomic.Int64  // unix nanos
	plis      atomic.Int64
	videoSeen atomic.Bool
	audioSeen atomic.Bool
}

// Accept negotiates a publisher's offer and returns its session and the SDP
// answer. The offer must have passed CheckOffer. Media flows into the
// remuxer only after Start.
func (e *Engine) Accept(ctx context.Context, offer string, opts SessionOptions) (*Session, string, error) {
	log := opts.Logger
	if log == nil {
		log = e.log
	}
	pc, err := e.api.NewPeerConnection(webrtc.Configuration{ICEServers: e.cfg.ICEServers})
	if err != nil {
		return nil, "", fmt.Errorf("peer: new connection: %w", err)
	}
	s := &Session{pc: pc, log: log, started: make(chan struct{}), done: make(chan struct{}), gatherTimeout: opts.GatherTimeout}
	if s.gatherTimeout <= 0 {
		s.gatherTimeout = 5 * time.Second
	}
	fail := func(err error) (*Session, string, error) {
		_ = s.Close()
		return nil, "", err
	}

	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		log.Debug("peer connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connected.Store(true)
			log.Info("publisher connected")
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.markDone()
		}
	})
	pc.OnTrack(s.onTrack)
	if opts.OnCandidate != nil {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil {
				opts.OnCandidate(c.ToJSON())
			}
		})
	}

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrMalformedOffer, err))
	}
	preferCodecs(pc, offer, log)
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNoAcceptableCodec, err))
	}
	var gathered <-chan struct{}
	if opts.OnCandidate == nil {
		gathered = webrtc.GatheringCompletePromise(pc)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(fmt.Errorf("peer: set local description: %w", err))
	}
	if gathered != nil {
		if err := s.waitGathering(ctx, gathered); err != nil {
			return fail(err)
		}
	}
	local := pc.LocalDescription()
	conf, err := codecsFromAnswer(local.SDP)
	if err != nil {
		return fail(err)
	}
	s.conf = conf
	return s, local.SDP, nil
}

// videoRank orders video codecs by preference (PROTOCOL.md): H.264, VP9,
// AV1, H.265. Pion answers in the offer's order, and browsers offer VP8 and
// VP9 first, so the answerer sets its own preference.
func videoRank(name string) int {
	switch strings.ToUpper(name) {
	case "H264":
		return 0
	case "VP9":
		return 1
	case "AV1":
		return 2
	case "H265":
		return 3
	}
	return 4
}

// preferCodecs decides which video codec the answer selects. When the
// offer's first video codec is one the gateway takes, the offerer chose it
// (the publish page puts the codec the user picked first) and Pion's answer,
// which keeps the offer's order, stands. Otherwise (browsers list VP8 first
// by default) it sets on the transceiver the offered codecs the gateway
// takes in its own order of preference, H.264, VP9, AV1, H.265, with their
// RTX and RTCP feedback. On any doubt it leaves Pion's choice alone.
func preferCodecs(pc *webrtc.PeerConnection, offer string, log *slog.Logger) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return
	}
	byMid := map[string]*sdp.MediaDescription{}
	for _, md := range sd.MediaDescriptions {
		if mid, ok := md.Attribute("mid"); ok && md.MediaName.Media == "video" {
			byMid[mid] = md
		}
	}
	for _, tr := range pc.GetTransceivers() {
		md := byMid[tr.Mid()]
		if md == nil || tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		type offered struct {
			c    webrtc.RTPCodecParameters
			rank int
		}
		names := map[string]string{}
		fmtps := map[string]string{}
		fbs := map[string][]webrtc.RTCPFeedback{} // "*" applies to every payload type
		for _, a := range md.Attributes {
			pt, rest, _ := strings.Cut(a.Value, " ")
			switch a.Key {
			case "rtpmap":
				names[pt] = rest
			case "fmtp":
				fmtps[pt] = rest
			case "rtcp-fb":
				typ, param, _ := strings.Cut(rest, " ")
				fbs[pt] = append(fbs[pt], webrtc.RTCPFeedback{Type: typ, Parameter: param})
			}
		}
		firstOK := false
		for _, ptStr := range md.MediaName.Formats {
			name, _, _ := strings.Cut(names[ptStr], "/")
			if name == "" || isHelperCodec(name) {
				continue
			}
			firstOK, _ = acceptable("video", name, fmtps[ptStr])
			break
		}
		if firstOK {
			continue
		}
		var primary []offered
		rtx := map[string][]webrtc.RTPCodecParameters{} // apt -> rtx codecs
		for _, ptStr := range md.MediaName.Formats {
			rm := names[ptStr]
			name, clock, _ := strings.Cut(rm, "/")
			var pt uint8
			if _, err := fmt.Sscan(ptStr, &pt); err != nil || name == "" {
				continue
			}
			var rate uint32
			fmt.Sscan(clock, &rate)
			// The feedback the offer lists; the answer keeps what the
			// MediaEngine also registers (NACK, PLI, FIR, REMB, TWCC).
			fb := append(append([]webrtc.RTCPFeedback(nil), fbs[ptStr]...), fbs["*"]...)
			c := webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/" + name, ClockRate: rate, SDPFmtpLine: fmtps[ptStr], RTCPFeedback: fb},
				PayloadType:        webrtc.PayloadType(pt),
			}
			if strings.EqualFold(name, "rtx") {
				apt := fmtpValue(fmtps[ptStr], "apt")
				rtx[apt] = append(rtx[apt], c)
				continue
			}
			if ok, _ := acceptable("video", name, fmtps[ptStr]); ok {
				primary = append(primary, offered{c, videoRank(name)})
			}
		}
		if len(primary) == 0 {
			continue
		}
		sort.SliceStable(primary, func(i, j int) bool { return primary[i].rank < primary[j].rank })
		// Keep what the MediaEngine can match (e.g. an H.264 profile it does
		// not register is left out), one codec at a time.
		var prefs, rtxs []webrtc.RTPCodecParameters
		for _, p := range primary {
			if tr.SetCodecPreferences([]webrtc.RTPCodecParameters{p.c}) != nil {
				continue
			}
			prefs = append(prefs, p.c)
			for _, r := range rtx[fmt.Sprint(uint8(p.c.PayloadType))] {
				if tr.SetCodecPreferences([]webrtc.RTPCodecParameters{r}) == nil {
					rtxs = append(rtxs, r)
				}
			}
		}
		if len(prefs) == 0 {
			_ = tr.SetCodecPreferences(nil)
			continue
		}
		if err := tr.SetCodecPreferences(append(prefs, rtxs...)); err != nil {
			log.Debug("codec preferences not set; keeping the offer's order", "err", err)
		}
	}
}

func fmtpValue(fmtp, key string) string { return fmtpParam(fmtp, key, "") }

// codecsFromAnswer reads the first accepted video and audio codec of the answer.
func codecsFromAnswer(answer string) (remux.Config, error) {
	var conf remux.Config
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return conf, fmt.Errorf("peer: own answer unparsable: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		if _, inactive := md.Attribute("inactive"); inactive {
			continue
		}
		first := md.MediaName.Formats[0]
		var name string
		var clock, channels uint64
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, rest, _ := strings.Cut(a.Value, " ")
			if pt != first {
				continue
			}
			parts := strings.Split(rest, "/")
			name = parts[0]
			if len(parts) > 1 {
				fmt.Sscan(parts[1], &clock)
			}
			if len(parts) > 2 {
				fmt.Sscan(parts[2], &channels)
			}
		}
		switch {
		case md.MediaName.Media == "video" && conf.Video == nil && name != "":
			conf.Video = &remux.CodecParams{MimeType: "video/" + name, ClockRate: uint32(clock)}
		case md.MediaName.Media == "audio" && conf.Audio == nil && name != "":
			conf.Audio = &remux.CodecParams{MimeType: "audio/" + name, ClockRate: uint32(clock), Channels: uint16(channels)}
		}
	}
	if conf.Video == nil && conf.Audio == nil {
		return conf, fmt.Errorf("%w: the answer accepts no media", ErrNoAcceptableCodec)
	}
	return conf, nil
}

// HasVideo and HasAudio report what was negotiated.
func (s *Session) HasVideo() bool { return s.conf.Video != nil }

// HasAudio reports whether an audio track was negotiated.
func (s *Session) HasAudio() bool { return s.conf.Audio != nil }

// Start connects the session's media to sink through a new remuxer.
func (s *Session) Start(sink remux.Sink) error {
	conf := s.conf
	conf.Sink = sink
	conf.RequestKeyframe = s.RequestKeyframe
	st, err := remux.NewStream(conf)
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	s.stream = st
	close(s.started)
	return nil
}

func (s *Session) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	kind := track.Kind()
	s.log.Info("track", "kind", kind.String(), "codec", track.Codec().MimeType, "ssrc", uint32(track.SSRC()))
	s.wg.Add(2)
	// A panic in the remuxer or the fan-out ends this publish, not the process.
	go func() {
		defer s.wg.Done()
		defer contain.Recover(s.log, "publisher RTCP", s.markDone)
		s.readRTCP(recv)
	}()
	go func() {
		defer s.wg.Done()
		defer contain.Recover(s.log, "publisher media", s.markDone)
		s.readRTP(track, kind)
	}()
}

// readRTP feeds one track into the remuxer until the connection ends. Only
// the first track of each kind is used; further ones are drained.
func (s *Session) readRTP(track *webrtc.TrackRemote, kind webrtc.RTPCodecType) {
	select {
	case <-s.started:
	case <-s.done:
		return
	}
	if kind == webrtc.RTPCodecTypeVideo && s.conf.Video != nil && track.RID() != "" {
		s.readSimulcastLayer(track)
		return
	}
	var push func(*rtp.Packet, time.Time)
	switch {
	case kind == webrtc.RTPCodecTypeVideo && s.conf.Video != nil && s.videoSeen.CompareAndSwap(false, true):
		s.videoSSRC.Store(uint32(track.SSRC()))
		push = s.stream.PushVideo
		s.RequestKeyframe()
	case kind == webrtc.RTPCodecTypeAudio && s.conf.Audio != nil && s.audioSeen.CompareAndSwap(false, true):
		s.audioSSRC.Store(uint32(track.SSRC()))
		push = s.stream.PushAudio
	default:
		s.log.Warn("ignoring extra track", "kind", kind.String(), "ssrc", uint32(track.SSRC()))
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		if push != nil {
			push(pkt, time.Now())
		}
	}
}

// readRTCP drains the receiver's RTCP (so the interceptors see it) and
// hands the sender reports of the remuxed tracks to the remuxer, which
// aligns audio and video with them.
func (s *Session) readRTCP(recv *webrtc.RTPReceiver) {
	for {
		pkts, _, err := recv.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			sr, ok := p.(*rtcp.SenderReport)
			if !ok {
				continue
			}
			select {
			case <-s.started:
			default:
				continue // not remuxing yet
			}
			switch sr.SSRC {
			case 0:
			case s.videoSSRC.Load():
				s.stream.PushSenderReport(remux.KindVideo, sr.NTPTime, sr.RTPTime)
			case s.audioSSRC.Load():
				s.stream.PushSenderReport(remux.KindAudio, sr.NTPTime, sr.RTPTime)
			}
		}
	}
}

// RequestKeyframe sends a PLI to the video track, at most once per 500 ms.
// It never blocks for long and is safe from any goroutine.
func (s *Session) RequestKeyframe() {
	ssrc := s.videoSSRC.Load()
	if ssrc == 0 {
		return
	}
	now := time.Now().UnixNano()
	last := s.lastPLI.Load()
	if now-last < int64(pliInterval) || !s.lastPLI.CompareAndSwap(last, now) {
		return
	}
	s.plis.Add(1)
	if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil && !errors.Is(err, errClosed) {
		s.log.Debug("PLI not sent", "err", err)
	}
}

// KeyframeRequests returns how many PLIs were sent.
func (s *Session) KeyframeRequests() int64 { return s.plis.Load() }

// Stats returns the remuxer's counters (zero before Start).
func (s *Session) Stats() remux.Stats {
	select {
	case <-s.started:
		return s.stream.Stats()
	default:
		return remux.Stats{}
	}
}

// waitGathering waits for ICE gathering to complete, at most gatherTimeout
// (then the candidates found so far are used).
func (s *Session) waitGathering(ctx context.Context, gathered <-chan struct{}) error {
	t := time.NewTimer(s.gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
		s.log.Warn("ICE gathering incomplete; answering with the candidates found so far")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// ErrICERestart wraps what makes an ICE restart fail; the session goes on
// with the ICE state it had.
var ErrICERestart = errors.New("ICE restart failed")

// RestartICE applies a publisher's ICE restart (RFC 9725 section 4.3.2):
// remote holds the publisher's new ICE credentials and candidates. The
// negotiated media stay as they are; the gateway gathers again with new
// credentials and returns them with its candidates. A restart may come
// while the old path is failing: media resume on the new one.
func (s *Session) RestartICE(ctx context.Context, remote sdpfrag.Frag) (sdpfrag.Frag, error) {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	cur, err := s.restartable(remote.Ufrag)
	if err != nil {
		return sdpfrag.Frag{}, err
	}
	offer, err := sdpfrag.ReplaceICE(cur, remote.Ufrag, remote.Pwd, nil)
	if err != nil {
		return sdpfrag.Frag{}, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	gathered, err := s.reoffer(offer, remote.Candidates, true)
	if err != nil {
		return sdpfrag.Frag{}, err
	}
	if err := s.waitGathering(ctx, gathered); err != nil {
		return sdpfrag.Frag{}, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	local := sdpfrag.FromSDP(s.pc.LocalDescription().SDP)
	local.EndOfCandidates = true
	s.log.Info("ICE restarted by the publisher", "candidates", len(local.Candidates))
	return local, nil
}

// RestartICEWithOffer applies an ICE restart that comes as a whole new
// offer (WebSocket signaling): only the ICE credentials may differ from the
// negotiated session. It returns the answer at once; the gateway's new
// candidates trickle out through SessionOptions.OnCandidate.
func (s *Session) RestartICEWithOffer(offer string) (string, error) {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	if _, err := s.restartable(sdpfrag.FromSDP(offer).Ufrag); err != nil {
		return "", err
	}
	if _, err := s.reoffer(offer, nil, false); err != nil {
		return "", err
	}
	s.log.Info("ICE restarted by the publisher (new offer)")
	return s.pc.LocalDescription().SDP, nil
}

// restartable checks that an ICE restart to the remote ufrag can be applied
// and returns the current remote description. restartMu must be held.
func (s *Session) restartable(ufrag string) (string, error) {
	select {
	case <-s.done:
		return "", fmt.Errorf("%w: the connection is closed", ErrICERestart)
	default:
	}
	cur := s.pc.RemoteDescription()
	if cur == nil {
		return "", fmt.Errorf("%w: no negotiated session", ErrICERestart)
	}
	if ufrag == "" || ufrag == sdpfrag.FromSDP(cur.SDP).Ufrag {
		return "", fmt.Errorf("%w: the ice-ufrag did not change (only ICE restarts are renegotiated)", ErrICERestart)
	}
	return cur.SDP, nil
}

// reoffer applies offer (Pion restarts ICE when its credentials changed),
// adds cands, and sets the answer. With gather, the returned channel is
// closed when the gateway's candidates are all gathered.
func (s *Session) reoffer(offer string, cands []webrtc.ICECandidateInit, gather bool) (<-chan struct{}, error) {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	first := uint16(0)
	for _, c := range cands {
		// All on the bundle's transport, whatever section the fragment named.
		c.SDPMid, c.SDPMLineIndex = nil, &first
		if err := s.pc.AddICECandidate(c); err != nil {
			s.log.Warn("ICE restart: bad candidate ignored", "candidate", c.Candidate, "err", err)
		}
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	var gathered <-chan struct{}
	if gather {
		gathered = webrtc.GatheringCompletePromise(s.pc)
	}
	if err := s.pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	return gathered, nil
}

// AddCandidate adds a remote ICE candidate (trickle).
func (s *Session) AddCandidate(c webrtc.ICECandidateInit) error {
	return s.pc.AddICECandidate(c)
}

// Connected reports whether the connection has been established.
func (s *Session) Connected() bool { return s.connected.Load() }

// Done is closed when the connection has failed or closed.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) markDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Close closes the PeerConnection and waits for its readers to stop.
func (s *Session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.markDone()
		err = s.pc.Close()
		s.wg.Wait()
	})
	return err
}
