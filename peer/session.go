package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/remux"
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
	tap  *connTap // the connection's innermost interceptor: the RTCP it sent (nil: not known), reused reads
	log  *slog.Logger
	conf remux.Config // codecs from the negotiated answer

	started chan struct{}
	stream  *remux.Stream // set by Start before started is closed

	done     chan struct{} // closed when the connection fails or closes
	doneOnce sync.Once
	// established is closed when the connection is first up (ICE and DTLS).
	established     chan struct{}
	establishedOnce sync.Once
	closeOnce       sync.Once
	wg              sync.WaitGroup
	// tracksMu orders onTrack's wg.Add before Close's Wait: Pion calls
	// onTrack on a goroutine of its own, which may run while or after Close
	// waits. Once closing is set, onTrack starts no reader.
	tracksMu sync.Mutex
	closing  bool

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
	s := &Session{pc: pc, tap: e.taps.take(pc.ID()), log: log, started: make(chan struct{}), done: make(chan struct{}), established: make(chan struct{}), gatherTimeout: opts.GatherTimeout}
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
			s.establishedOnce.Do(func() { close(s.established) })
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
	s.tracksMu.Lock()
	if s.closing {
		s.tracksMu.Unlock()
		return
	}
	s.wg.Add(2)
	s.tracksMu.Unlock()
	s.log.Info("track", "kind", kind.String(), "codec", track.Codec().MimeType, "ssrc", uint32(track.SSRC()))
	// A panic in the remuxer or the fan-out ends this publish, not the process.
	go func() {
		defer s.wg.Done()
		defer contain.Recover(s.log, "publisher RTCP", s.markDone)
		s.readRTCP(recv, track.RID())
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
	if push == nil {
		push = func(*rtp.Packet, time.Time) {}
	}
	s.tap.ownReads(uint32(track.SSRC()))
	pumpRTP(track.Read, push)
}

// rtpReadBuffer is the buffer a track is read into: above Pion's receive
// MTU (1460 by default), which bounds the packets it hands out.
const rtpReadBuffer = 1500

// pumpRTP reads packets with read and pushes each until read fails: the
// per-packet path of a track. The buffer and the packet are reused (the
// remuxer copies what it keeps), so nothing is allocated per packet; a
// packet that does not parse is skipped.
func pumpRTP[A any](read func([]byte) (int, A, error), push func(*rtp.Packet, time.Time)) {
	buf := make([]byte, rtpReadBuffer)
	var pkt rtp.Packet
	for {
		n, _, err := read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		push(&pkt, time.Now())
	}
}

// readRTCP drains the receiver's RTCP (so the interceptors see it) and
// hands the sender reports of the remuxed tracks to the remuxer, which
// aligns audio and video with them.
func (s *Session) readRTCP(recv *webrtc.RTPReceiver, rid string) {
	read := recv.ReadRTCP
	if rid != "" {
		// A simulcast layer's own RTCP: ReadRTCP reads the first layer's
		// only (and Pion logs an error for each packet).
		read = func() ([]rtcp.Packet, interceptor.Attributes, error) { return recv.ReadSimulcastRTCP(rid) }
	}
	for {
		pkts, _, err := read()
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
	s.sendPLI(ssrc)
}

// sendPLI asks the publisher for a keyframe of the stream ssrc.
func (s *Session) sendPLI(ssrc uint32) {
	s.plis.Add(1)
	if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil && !errors.Is(err, errClosed) {
		s.log.Debug("PLI not sent", "ssrc", ssrc, "err", err)
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

// AddCandidate adds a remote ICE candidate (trickle).
func (s *Session) AddCandidate(c webrtc.ICECandidateInit) error {
	return s.pc.AddICECandidate(c)
}

// Connected reports whether the connection has been established.
func (s *Session) Connected() bool { return s.connected.Load() }

// Established is closed once the connection is up (ICE and DTLS), and
// stays closed.
func (s *Session) Established() <-chan struct{} { return s.established }

// Done is closed when the connection has failed or closed.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) markDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Close closes the PeerConnection and waits for its readers to stop.
func (s *Session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.markDone()
		s.tracksMu.Lock()
		s.closing = true
		s.tracksMu.Unlock()
		err = s.pc.Close()
		s.wg.Wait()
	})
	return err
}
