package main

// The ingest floor: what receiving a publisher costs with nothing but the
// work itself. A bare server reads the publishers' SRTP from one UDP socket
// with batched reads (peer.BatchConn, the gateway's own socket reader),
// decrypts it (pion/srtp, AES-256-GCM as Pion negotiates with Pion, replay
// protection on as in the gateway), and remuxes it (remux.Stream, the
// gateway's remuxer) into a sink that drops the fragments. No ICE, DTLS,
// interceptors, RTCP feedback, goroutine hand-offs or fan-out. Its
// publishers are bare too (barePublisher): the same media, packetized as
// Pion's TrackLocalStaticSample does (MTU 1200), at the same real-time pace,
// SRTP with a key given to the floor over HTTP instead of DTLS.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/srtp/v3"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/remux"
)

const (
	floorSRTPProfile = srtp.ProtectionProfileAeadAes256Gcm
	floorKeyLen      = 32
	floorSaltLen     = 12
	floorReplay      = 64 // Pion's default SRTP/SRTCP replay window
	floorMTU         = 1200
	floorVideoPT     = 96
	floorAudioPT     = 111
)

// floorRegistration is what a bare publisher posts to the floor.
type floorRegistration struct {
	VideoSSRC uint32 `json:"videoSSRC"`
	AudioSSRC uint32 `json:"audioSSRC"`
	Key       []byte `json:"key"`  // SRTP master key
	Salt      []byte `json:"salt"` // SRTP master salt
}

// floorStats are the floor's counters (GET /stats).
type floorStats struct {
	Datagrams      uint64 `json:"datagrams"`
	Reads          uint64 `json:"reads"` // socket reads (recvmmsg calls)
	RTP            uint64 `json:"rtp"`
	RTCP           uint64 `json:"rtcp"`
	DecryptErrors  uint64 `json:"decryptErrors"`
	Unknown        uint64 `json:"unknownSSRC"`
	Sessions       int    `json:"sessions"`
	VideoFrames    uint64 `json:"videoFrames"`
	VideoLost      uint64 `json:"videoLost"`
	FramesDropped  uint64 `json:"videoFramesDropped"`
	SenderReports  uint64 `json:"senderReports"`
	SegmentsOut    uint64 `json:"segments"`
	KeyframeAskedN uint64 `json:"keyframeRequests"`
	Mallocs        uint64 `json:"mallocs"` // the process's heap allocations (as go_memstats_mallocs_total)
}

type floorSession struct {
	ctx       *srtp.Context
	stream    *remux.Stream
	videoSSRC uint32
}

// ingestFloor is the bare ingest server.
type ingestFloor struct {
	conn *peer.BatchConn
	addr string
	log  *slog.Logger

	mu       sync.Mutex
	sessions []*floorSession
	bySSRC   atomic.Pointer[map[uint32]*floorSession] // copy on write: the reader takes no lock

	rtp, rtcp, decErr, unknown atomic.Uint64
	done                       chan struct{}
}

func newIngestFloor(log *slog.Logger, coalesce time.Duration) (*ingestFloor, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("ingest floor: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20) // as the gateway's ICE socket
	bc, err := peer.NewBatchConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	bc.SetCoalesce(coalesce)
	f := &ingestFloor{conn: bc, addr: c.LocalAddr().String(), log: log, done: make(chan struct{})}
	m := map[uint32]*floorSession{}
	f.bySSRC.Store(&m)
	go f.readLoop()
	return f, nil
}

// Close stops the reader.
func (f *ingestFloor) Close() {
	_ = f.conn.Close()
	<-f.done
}

func (f *ingestFloor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		var reg floorRegistration
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&reg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := f.add(reg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"udp": f.addr})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		f.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(f.stats())
	})
	return mux
}

type dropSink struct{ segs atomic.Uint64 }

func (*dropSink) WriteInit(*remux.Init)         {}
func (d *dropSink) WriteSegment(*remux.Segment) { d.segs.Add(1) }

func (f *ingestFloor) add(reg floorRegistration) error {
	ctx, err := srtp.CreateContext(reg.Key, reg.Salt, floorSRTPProfile, srtp.SRTPReplayProtection(floorReplay), srtp.SRTCPReplayProtection(floorReplay))
	if err != nil {
		return fmt.Errorf("srtp: %w", err)
	}
	st, err := remux.NewStream(remux.Config{
		Video: &remux.CodecParams{MimeType: "video/H264", ClockRate: 90000},
		Audio: &remux.CodecParams{MimeType: "audio/opus", ClockRate: 48000, Channels: 2},
		Sink:  &dropSink{},
	})
	if err != nil {
		return err
	}
	s := &floorSession{ctx: ctx, stream: st, videoSSRC: reg.VideoSSRC}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions = append(f.sessions, s)
	m := map[uint32]*floorSession{}
	for k, v := range *f.bySSRC.Load() {
		m[k] = v
	}
	m[reg.VideoSSRC] = s
	if reg.AudioSSRC != 0 {
		m[reg.AudioSSRC] = s
	}
	f.bySSRC.Store(&m)
	return nil
}

func (f *ingestFloor) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions = nil
	m := map[uint32]*floorSession{}
	f.bySSRC.Store(&m)
}

func (f *ingestFloor) stats() floorStats {
	st := floorStats{RTP: f.rtp.Load(), RTCP: f.rtcp.Load(), DecryptErrors: f.decErr.Load(), Unknown: f.unknown.Load()}
	st.Datagrams, st.Reads = f.conn.Stats()
	st.Mallocs = heapAllocs()
	f.mu.Lock()
	defer f.mu.Unlock()
	st.Sessions = len(f.sessions)
	for _, s := range f.sessions {
		rs := s.stream.Stats()
		st.VideoFrames += rs.VideoFramesEmitted
		st.VideoLost += rs.VideoLost
		st.FramesDropped += rs.VideoFramesDropped
		st.SenderReports += rs.SenderReports
		st.SegmentsOut += rs.SegmentsEmitted
		st.KeyframeAskedN += rs.KeyframeRequests
	}
	return st
}

// readLoop is the floor's whole per-packet path: read (batched), find the
// session by SSRC, decrypt, parse, remux. Buffers are reused.
func (f *ingestFloor) readLoop() {
	defer close(f.done)
	buf := make([]byte, 8192)
	dec := make([]byte, 8192)
	var hdr rtp.Header
	var pkt rtp.Packet
	for {
		n, _, err := f.conn.ReadFromAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Warn("ingest floor: read", "err", err)
			}
			return
		}
		b := buf[:n]
		if n < 12 || b[0]>>6 != 2 {
			continue
		}
		now := time.Now()
		if b[1] >= 192 && b[1] <= 223 { // RTCP (RFC 5761)
			s := (*f.bySSRC.Load())[binary.BigEndian.Uint32(b[4:8])]
			if s == nil {
				f.unknown.Add(1)
				continue
			}
			out, err := s.ctx.DecryptRTCP(dec, b, nil)
			if err != nil {
				f.decErr.Add(1)
				continue
			}
			f.rtcp.Add(1)
			if len(out) >= 20 && out[1] == 200 { // a sender report
				ssrc := binary.BigEndian.Uint32(out[4:8])
				kind := remux.KindAudio
				if ssrc == s.videoSSRC {
					kind = remux.KindVideo
				}
				s.stream.PushSenderReport(kind, binary.BigEndian.Uint64(out[8:16]), binary.BigEndian.Uint32(out[16:20]))
			}
			continue
		}
		ssrc := binary.BigEndian.Uint32(b[8:12])
		s := (*f.bySSRC.Load())[ssrc]
		if s == nil {
			f.unknown.Add(1)
			continue
		}
		out, err := s.ctx.DecryptRTP(dec, b, &hdr)
		if err != nil {
			f.decErr.Add(1)
			continue
		}
		if pkt.Unmarshal(out) != nil {
			continue
		}
		f.rtp.Add(1)
		if ssrc == s.videoSSRC {
			s.stream.PushVideo(&pkt, now)
		} else {
			s.stream.PushAudio(&pkt, now)
		}
	}
}

// barePublisher sends the load tool's media to the ingest floor: RTP
// packetized as Pion does, SRTP, a sender report per track a second.
type barePublisher struct {
	conn      *net.UDPConn
	ctx       *srtp.Context
	mu        sync.Mutex // ctx and the send buffer
	out       []byte
	video     []mediafile.AccessUnit
	audio     [][]byte
	fps       int
	videoSSRC uint32
	audioSSRC uint32
	frames    atomic.Int64
	late      atomic.Int64
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	srMu               sync.Mutex
	vTS, aTS           uint32
	vAt, aAt           time.Time
	vPackets, aPackets uint32
	vOctets, aOctets   uint32
}

// publishBare registers a publisher with the floor at base and starts it.
func publishBare(ctx context.Context, client *http.Client, base string, video []mediafile.AccessUnit, audio [][]byte, fps int) (*barePublisher, error) {
	key := make([]byte, floorKeyLen+floorSaltLen)
	var ss [8]byte
	_, _ = rand.Read(key)
	_, _ = rand.Read(ss[:])
	reg := floorRegistration{VideoSSRC: binary.BigEndian.Uint32(ss[:4]) | 1, Key: key[:floorKeyLen], Salt: key[floorKeyLen:]}
	if len(audio) > 0 {
		reg.AudioSSRC = binary.BigEndian.Uint32(ss[4:]) &^ 1
	}
	body, _ := json.Marshal(reg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/ingest", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ingest floor: %w", err)
	}
	defer resp.Body.Close()
	var ans struct {
		UDP string `json:"udp"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil {
		return nil, fmt.Errorf("ingest floor: register: %s", resp.Status)
	}
	raddr, err := net.ResolveUDPAddr("udp4", ans.UDP)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, raddr)
	if err != nil {
		return nil, err
	}
	sctx, err := srtp.CreateContext(reg.Key, reg.Salt, floorSRTPProfile)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &barePublisher{conn: conn, ctx: sctx, out: make([]byte, 0, 2048), video: video, audio: audio, fps: fps, videoSSRC: reg.VideoSSRC, audioSSRC: reg.AudioSSRC}
	sendCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.sendVideo(sendCtx)
	}()
	if len(audio) > 0 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sendAudio(sendCtx)
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.sendReports(sendCtx)
	}()
	return p, nil
}

// Close stops the publisher.
func (p *barePublisher) Close() {
	p.cancel()
	p.wg.Wait()
	p.conn.Close()
}

func (p *barePublisher) send(pkt *rtp.Packet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	plain, err := pkt.Marshal()
	if err != nil {
		return
	}
	out, err := p.ctx.EncryptRTP(p.out[:0], plain, &pkt.Header)
	if err != nil {
		return
	}
	p.out = out
	_, _ = p.conn.Write(out)
}

func (p *barePublisher) sendVideo(ctx context.Context) {
	interval := time.Second / time.Duration(p.fps)
	pz := rtp.NewPacketizer(floorMTU, floorVideoPT, p.videoSSRC, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	start := time.Now()
	for n, i := int64(1), 0; ; n, i = n+1, (i+1)%len(p.video) {
		now := time.Now()
		pkts := pz.Packetize(stampFrame(p.video[i].Data, now), uint32(90000/p.fps))
		for _, pkt := range pkts {
			p.send(pkt)
		}
		if len(pkts) > 0 {
			p.srMu.Lock()
			p.vTS, p.vAt = pkts[0].Timestamp, now
			p.vPackets += uint32(len(pkts))
			for _, pkt := range pkts {
				p.vOctets += uint32(len(pkt.Payload))
			}
			p.srMu.Unlock()
		}
		p.frames.Add(1)
		d := time.Until(start.Add(time.Duration(n) * interval))
		if d < -interval {
			p.late.Add(1)
		}
		if !sleep(ctx, max(d, 0)) {
			return
		}
	}
}

func (p *barePublisher) sendAudio(ctx context.Context) {
	const interval = 20 * time.Millisecond
	pz := rtp.NewPacketizer(floorMTU, floorAudioPT, p.audioSSRC, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(p.audio) {
		now := time.Now()
		pkts := pz.Packetize(p.audio[i], 960)
		for _, pkt := range pkts {
			p.send(pkt)
		}
		if len(pkts) > 0 {
			p.srMu.Lock()
			p.aTS, p.aAt = pkts[0].Timestamp, now
			p.aPackets++
			p.aOctets += uint32(len(pkts[0].Payload))
			p.srMu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sendReports sends an RTCP sender report per track a second, as Pion's
// report interceptor does.
func (p *barePublisher) sendReports(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.srMu.Lock()
		type sr struct {
			ssrc, ts, pkts, octets uint32
			at                     time.Time
		}
		srs := []sr{{p.videoSSRC, p.vTS, p.vPackets, p.vOctets, p.vAt}}
		if p.audioSSRC != 0 {
			srs = append(srs, sr{p.audioSSRC, p.aTS, p.aPackets, p.aOctets, p.aAt})
		}
		p.srMu.Unlock()
		for _, s := range srs {
			if s.at.IsZero() {
				continue
			}
			b := make([]byte, 28)
			b[0], b[1] = 0x80, 200
			binary.BigEndian.PutUint16(b[2:], 6)
			binary.BigEndian.PutUint32(b[4:], s.ssrc)
			binary.BigEndian.PutUint64(b[8:], ntpTime(s.at))
			binary.BigEndian.PutUint32(b[16:], s.ts)
			binary.BigEndian.PutUint32(b[20:], s.pkts)
			binary.BigEndian.PutUint32(b[24:], s.octets)
			p.mu.Lock()
			out, err := p.ctx.EncryptRTCP(nil, b, nil)
			p.mu.Unlock()
			if err == nil {
				_, _ = p.conn.Write(out)
			}
		}
	}
}

// ntpTime is t as a 64-bit NTP timestamp.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	s := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | frac
}

// heapAllocs counts the process's heap allocations so far, tiny ones
// included, as client_golang's go_memstats_mallocs_total does.
func heapAllocs() uint64 {
	ms := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(ms)
	var n uint64
	for _, m := range ms {
		if m.Value.Kind() == metrics.KindUint64 {
			n += m.Value.Uint64()
		}
	}
	return n
}
