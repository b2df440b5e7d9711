// Package peer owns the gateway's WebRTC side: one Pion API whose
// MediaEngine offers only codecs MSE can play from fMP4, the NACK generator,
// receiver report and TWCC interceptors, the single-port ICE UDP mux, and each publisher's
// PeerConnection lifecycle: negotiation, reading RTP into a remuxer, and
// keyframe requests (PLI). It knows nothing about fMP4 beyond handing packets
// to remux.
package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Config configures the Engine.
type Config struct {
	UDPPort    int    // single ICE port; 0 = any free port
	UDPAddress string // bind address; "" = every interface
	NAT1To1IPs []string
	// IncludeLoopback offers loopback candidates (local testing).
	IncludeLoopback bool
	// LoopbackOnly restricts ICE to loopback addresses, local and remote (tests).
	LoopbackOnly bool
	// DenyRemote are networks a publisher's candidates may not name: the
	// gateway sends them no connectivity checks (a public node denies
	// private ranges, so a client cannot aim it at the operator's LAN).
	DenyRemote          []netip.Prefix
	ICEServers          []webrtc.ICEServer
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	// InterfaceRescan is how often interface addresses are scanned for ones
	// that can be bound now (UDPAddress empty); 0 = 10 s.
	InterfaceRescan time.Duration
	// ReadCoalesce is how long a read of the ICE socket waits, at most, for
	// more datagrams when the last batch was not full (BatchConn.SetCoalesce):
	// 0 = DefaultReadCoalesce, < 0 = no wait.
	ReadCoalesce time.Duration
	Logger       *slog.Logger
}

// Engine creates publisher sessions sharing one Pion API and one ICE port.
type Engine struct {
	cfg  Config
	taps *connTapFactory
	api  *webrtc.API
	mux  ice.UDPMux
	log  *slog.Logger
}

// NewEngine builds the Pion API and opens the ICE UDP port.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DisconnectedTimeout <= 0 {
		cfg.DisconnectedTimeout = 3 * time.Second
	}
	if cfg.FailedTimeout <= 0 {
		cfg.FailedTimeout = 6 * time.Second
	}
	if cfg.ReadCoalesce == 0 {
		cfg.ReadCoalesce = DefaultReadCoalesce
	}
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return nil, fmt.Errorf("peer: register codecs: %w", err)
	}
	plog := newPionLogger(cfg.Logger)
	ir, taps, err := newInterceptors(me, plog)
	if err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.LoggerFactory = plog
	se.SetICETimeouts(cfg.DisconnectedTimeout, cfg.FailedTimeout, time.Second)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback || cfg.LoopbackOnly)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.NAT1To1IPs) > 0 {
		se.SetNAT1To1IPs(cfg.NAT1To1IPs, webrtc.ICECandidateTypeHost)
	}
	var ipFilter func(net.IP) bool
	if cfg.LoopbackOnly {
		ipFilter = func(ip net.IP) bool { return ip.IsLoopback() }
		se.SetIPFilter(ipFilter)
	}
	se.SetRemoteIPFilter(func(ip net.IP) bool { return remoteAllowed(ip, cfg.LoopbackOnly, cfg.DenyRemote) })
	mux, err := openUDPMux(cfg, ipFilter, plog)
	if err != nil {
		return nil, err
	}
	se.SetICEUDPMux(mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})

	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	e := &Engine{cfg: cfg, taps: taps, api: api, mux: mux, log: cfg.Logger}
	e.log.Info("webrtc ready", "ice_udp", muxAddrs(mux))
	return e, nil
}

// newInterceptors registers the interceptors of a publisher's connection
// (and their feedback and header extensions with me). Only those a
// receive-only peer uses: the NACK generator, receiver reports and TWCC
// feedback. The gateway sends no media, so Pion's NACK responder and sender
// reports (a goroutine and a ticker per connection, as webrtc.ConfigureNack
// and ConfigureRTCPReports add them) would have nothing to do.
func newInterceptors(me *webrtc.MediaEngine, plog logging.LoggerFactory) (*interceptor.Registry, *connTapFactory, error) {
	ir := &interceptor.Registry{}
	// First: it sees what every later interceptor sends (feedback.go), and
	// it is next to the SRTP streams (reuse.go).
	taps := newConnTapFactory()
	ir.Add(taps)
	nackGen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(plog))
	if err != nil {
		return nil, nil, fmt.Errorf("peer: nack: %w", err)
	}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	ir.Add(nackGen)
	reports, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(plog))
	if err != nil {
		return nil, nil, fmt.Errorf("peer: rtcp reports: %w", err)
	}
	ir.Add(reports)
	// Simulcast publishers (several encodings of one video, told apart by
	// RID) are accepted; the session remuxes one layer (simulcast.go).
	// Without these extensions browsers reject an answer that takes simulcast.
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return nil, nil, fmt.Errorf("peer: simulcast extensions: %w", err)
	}
	// Without congestion-control feedback browsers never raise their
	// bitrate. What webrtc.ConfigureTWCCSender does, with a feedback
	// interceptor of our own (twcc.go).
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, nil, fmt.Errorf("peer: twcc: %w", err)
		}
	}
	ir.Add(twccFactory{log: plog})
	return ir, taps, nil
}

// remoteAllowed reports whether a publisher's ICE candidate address may be
// checked: never an unspecified, multicast or broadcast address (a
// candidate is where the gateway sends STUN; those would aim it at a whole
// network), never one in deny, and only loopback when ICE is kept on
// loopback.
func remoteAllowed(ip net.IP, loopbackOnly bool, deny []netip.Prefix) bool {
	if ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
		return false
	}
	if a, ok := netip.AddrFromSlice(ip); ok {
		a = a.Unmap()
		for _, p := range deny {
			if p.Contains(a) {
				return false
			}
		}
	}
	return !loopbackOnly || ip.IsLoopback()
}

// udpSocketBuffer is the receive (and send) buffer asked for the shared ICE
// socket: every publisher's media arrives on it, and a keyframe burst from
// many publishers at once overflows the default (~208 KiB). The kernel caps
// it at net.core.rmem_max / wmem_max.
const udpSocketBuffer = 8 << 20

func openUDPMux(cfg Config, ipFilter func(net.IP) bool, plog pionLogger) (ice.UDPMux, error) {
	if cfg.UDPAddress != "" {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(cfg.UDPAddress), Port: cfg.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("peer: ICE UDP port: %w", err)
		}
		_ = conn.SetReadBuffer(udpSocketBuffer)
		_ = conn.SetWriteBuffer(udpSocketBuffer)
		bc, err := NewBatchConn(conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		bc.SetCoalesce(cfg.ReadCoalesce)
		return ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: bc, Logger: plog.NewLogger("ice")}), nil
	}
	rescan := cfg.InterfaceRescan
	if rescan <= 0 {
		rescan = 10 * time.Second
	}
	logger := plog.NewLogger("ice")
	newMux := func(c *net.UDPConn) (ice.UDPMux, error) {
		bc, err := NewBatchConn(c)
		if err != nil {
			return nil, err
		}
		bc.SetCoalesce(cfg.ReadCoalesce)
		return ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: bc, Logger: logger}), nil
	}
	return newInterfaceMux(cfg.UDPPort, cfg.IncludeLoopback || cfg.LoopbackOnly, ipFilter, rescan, cfg.Logger, newMux)
}

func muxAddrs(m ice.UDPMux) []string {
	var out []string
	for _, a := range m.GetListenAddresses() {
		out = append(out, a.String())
	}
	return out
}

// UDPAddrs returns the addresses the ICE UDP mux listens on.
func (e *Engine) UDPAddrs() []string { return muxAddrs(e.mux) }

// ICEServers returns the configured STUN/TURN servers.
func (e *Engine) ICEServers() []webrtc.ICEServer { return e.cfg.ICEServers }

// Close releases the ICE port. Sessions must be closed first.
func (e *Engine) Close() error { return e.mux.Close() }

// H.264 profiles accepted (profile_idc + constraint flags); Pion matches on
// these and packetization-mode, not on the level.
var h264Profiles = []string{"42001f", "42e01f", "4d001f", "64001f", "640c1f"}

func registerCodecs(me *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	pt := webrtc.PayloadType(102)
	for _, p := range h264Profiles {
		c := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: fb,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + p,
			},
			PayloadType: pt,
		}
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", pt)},
			PayloadType:        pt + 1,
		}
		if err := me.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		pt += 2
	}
	// Then VP9 (profiles 0 and 2), AV1 (main profile) and H.265 (Main,
	// Main 10), in that order of preference (PROTOCOL.md). Never VP8.
	others := []struct {
		mime, fmtp string
		pt         webrtc.PayloadType
	}{
		{webrtc.MimeTypeVP9, "profile-id=0", 98},
		{webrtc.MimeTypeVP9, "profile-id=2", 100},
		{webrtc.MimeTypeAV1, "profile=0", 45},
		{webrtc.MimeTypeH265, "profile-id=1", 116},
		{webrtc.MimeTypeH265, "profile-id=2", 118},
	}
	for _, o := range others {
		c := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: o.mime, ClockRate: 90000, RTCPFeedback: fb, SDPFmtpLine: o.fmtp},
			PayloadType:        o.pt,
		}
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", o.pt)},
			PayloadType:        o.pt + 1,
		}
		if err := me.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	opus := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	return me.RegisterCodec(opus, webrtc.RTPCodecTypeAudio)
}

// pionLogger routes Pion's logs to slog (warnings and errors only).
// pionLogger sends Pion's warnings and errors to slog, rate-limited: a
// client can make Pion warn once per packet it sends (STUN to a live ufrag
// of a half-open session), so at most pionLogBurst lines go out at once and
// pionLogRate a second after that; the rest are counted, and the count goes
// with the next line that is let through. Warnings that name a client's
// packets or a closing connection, not a fault of the gateway, are Debug.
type pionLogger struct {
	l  *slog.Logger
	rl *logLimiter
}

func newPionLogger(l *slog.Logger) pionLogger {
	return pionLogger{l: l, rl: &logLimiter{tokens: pionLogBurst, last: time.Now()}}
}

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return leveled{p.l.With("pion", scope), p.rl}
}

const (
	pionLogBurst = 20
	pionLogRate  = 5 // lines a second after the burst
)

// logLimiter is a token bucket for log lines.
type logLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// allow takes a token; it returns false when none is left, and otherwise
// how many lines were suppressed since the last one let through.
func (r *logLimiter) allow() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.tokens = min(pionLogBurst, r.tokens+now.Sub(r.last).Seconds()*pionLogRate)
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		return false, 0
	}
	r.tokens--
	n := r.suppressed
	r.suppressed = 0
	return true, n
}

// noise names Pion warnings caused by what clients send or by a connection
// that is closing: Debug, not Warn.
var noise = []string{
	"Failed to ping without candidate pairs",
	"no endpoint for packet",
	"stream is already closed",
	"Failed to read from candidate",
	"use of closed network connection",
	"Discarded",
}

type leveled struct {
	l  *slog.Logger
	rl *logLimiter
}

func (l leveled) log(level slog.Level, m string) {
	if level == slog.LevelWarn {
		for _, n := range noise {
			if strings.Contains(m, n) {
				level = slog.LevelDebug
				break
			}
		}
	}
	if !l.l.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := l.rl.allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		l.l.Log(context.Background(), level, m, "suppressed_before", suppressed)
		return
	}
	l.l.Log(context.Background(), level, m)
}

func (leveled) Trace(string)                {}
func (leveled) Tracef(string, ...any)       {}
func (l leveled) Debug(m string)            { l.log(slog.LevelDebug, m) }
func (l leveled) Debugf(f string, a ...any) { l.log(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (leveled) Info(string)                 {}
func (leveled) Infof(string, ...any)        {}
func (l leveled) Warn(m string)             { l.log(slog.LevelWarn, m) }
func (l leveled) Warnf(f string, a ...any)  { l.log(slog.LevelWarn, fmt.Sprintf(f, a...)) }
func (l leveled) Error(m string)            { l.log(slog.LevelError, m) }
func (l leveled) Errorf(f string, a ...any) { l.log(slog.LevelError, fmt.Sprintf(f, a...)) }

var errClosed = errors.New("session closed")
