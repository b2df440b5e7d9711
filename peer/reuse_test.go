package peer

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

const (
	chainSSRC  = 0x1234
	chainTWCC  = 3 // the transport-cc extension's ID
	chainTWCCo = 12 + 4 + 1
)

// packetSource is an SRTP read stream stand-in: it hands out one video
// packet after another (sequence numbers, timestamps and transport-wide
// sequence numbers counting up) without allocating.
type packetSource struct {
	raw    []byte
	seq    uint16
	skip   uint16 // sequence numbers to leave out before the next packet (a loss)
	twccAt int    // offset of the transport-wide sequence number; -1: none to write
}

func newPacketSource(tb testing.TB) *packetSource {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SSRC: chainSSRC}, Payload: make([]byte, 1100)}
	if err := p.SetExtension(chainTWCC, []byte{0, 0}); err != nil {
		tb.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	if raw[chainTWCCo-1] != chainTWCC<<4|1 {
		tb.Fatalf("transport-cc extension not at %d: % x", chainTWCCo, raw[:24])
	}
	return &packetSource{raw: raw, twccAt: chainTWCCo}
}

func (s *packetSource) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	s.seq += 1 + s.skip
	s.skip = 0
	n := copy(b, s.raw)
	binary.BigEndian.PutUint16(b[2:], s.seq)
	binary.BigEndian.PutUint32(b[4:], uint32(s.seq)*3000)
	if s.twccAt >= 0 {
		binary.BigEndian.PutUint16(b[s.twccAt:], s.seq)
	}
	return n, a, nil
}

// rtcpLog keeps what the chain sends.
type rtcpLog struct {
	mu          sync.Mutex
	nacks, twcc int
	twccPackets int // packets reported received
}

func (l *rtcpLog) Write(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			l.nacks++
		case *rtcp.TransportLayerCC:
			l.twcc++
			l.twccPackets += len(p.RecvDeltas)
		}
	}
	return 0, nil
}

func (l *rtcpLog) counts() (nacks, twcc, twccPackets int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nacks, l.twcc, l.twccPackets
}

// ingestChain builds the interceptors of a publisher's connection as the
// engine does (newInterceptors), over src, the way Pion binds them; with
// pionTWCC, Pion's own TWCC interceptor instead of ours (the build before).
func ingestChain(tb testing.TB, src *packetSource, pionTWCC bool) (interceptor.RTPReader, *connTap, *rtcpLog) {
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		tb.Fatal(err)
	}
	plog := newPionLogger(slog.New(slog.DiscardHandler))
	ir, taps, err := newInterceptors(me, plog)
	if err != nil {
		tb.Fatal(err)
	}
	var chain interceptor.Interceptor
	if !pionTWCC {
		if chain, err = ir.Build("pc"); err != nil {
			tb.Fatal(err)
		}
	} else {
		// The same interceptors in the same order, with Pion's TWCC last.
		nackGen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(plog))
		if err != nil {
			tb.Fatal(err)
		}
		reports, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(plog))
		if err != nil {
			tb.Fatal(err)
		}
		pion, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(plog))
		if err != nil {
			tb.Fatal(err)
		}
		var ics []interceptor.Interceptor
		for _, f := range []interceptor.Factory{taps, nackGen, reports, pion} {
			ic, err := f.NewInterceptor("pc")
			if err != nil {
				tb.Fatal(err)
			}
			ics = append(ics, ic)
		}
		chain = interceptor.NewChain(ics)
	}
	tb.Cleanup(func() { chain.Close() })
	log := &rtcpLog{}
	chain.BindRTCPWriter(log)
	info := &interceptor.StreamInfo{
		SSRC: chainSSRC, ClockRate: 90000, MimeType: webrtc.MimeTypeH264, PayloadType: 102,
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}},
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: chainTWCC}},
	}
	reader := chain.BindRemoteStream(info, src)
	tap := taps.take("pc")
	if tap == nil {
		tb.Fatal("no connTap made for the connection")
	}
	return reader, tap, log
}

// TestIngestChainNoAllocs: once the session owns a stream's reads, a packet
// goes through the whole interceptor chain of the engine (NACK generator,
// receiver reports, TWCC) without an allocation, and the chain still does
// its work: TWCC feedback for the packets, a NACK for a gap.
func TestIngestChainNoAllocs(t *testing.T) {
	if rtpHeaderKey == nil {
		t.Fatal("Pion's RTP header attribute key was not found: reads are not reused")
	}
	src := newPacketSource(t)
	reader, tap, log := ingestChain(t, src, false)
	buf := make([]byte, rtpReadBuffer)
	read := func() {
		if _, _, err := reader.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Before the session owns the stream, Pion's interceptors make the
	// attributes and the header: the allocations this removes.
	for range 100 {
		read()
	}
	if n := testing.AllocsPerRun(200, read); n < 1 {
		t.Errorf("%v allocations per packet before the reads are owned, want the map and header Pion makes", n)
	}
	tap.ownReads(chainSSRC)
	if n := testing.AllocsPerRun(2000, read); n != 0 {
		t.Errorf("%v allocations per packet through the interceptor chain, want 0", n)
	}
	src.skip = 5 // a loss: the NACK generator must see the reused header's sequence numbers
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		read()
		time.Sleep(time.Millisecond)
		if nacks, twcc, _ := log.counts(); nacks > 0 && twcc > 0 {
			break
		}
	}
	nacks, reports, packets := log.counts()
	t.Logf("%d NACKs, %d TWCC feedback packets reporting %d packets", nacks, reports, packets)
	if nacks == 0 {
		t.Error("no NACK for 5 lost packets")
	}
	if reports == 0 || packets == 0 {
		t.Error("no TWCC feedback")
	}
}

// TestTWCCFeedbackReportsEveryPacket: every packet read is in the feedback,
// with its arrival, in order.
func TestTWCCFeedbackReportsEveryPacket(t *testing.T) {
	src := newPacketSource(t)
	reader, tap, log := ingestChain(t, src, false)
	tap.ownReads(chainSSRC)
	buf := make([]byte, rtpReadBuffer)
	const n = 300
	for range n {
		if _, _, err := reader.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, packets := log.counts(); packets >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, reports, packets := log.counts()
	if packets != n {
		t.Errorf("TWCC feedback reported %d packets as received, want %d (in %d feedback packets)", packets, n, reports)
	}
	if reports < 2 {
		t.Errorf("%d feedback packets for %d packets over ~%d ms, want one every 100 ms", reports, n, n)
	}
}

// BenchmarkIngestChain: one video packet through the engine's interceptor
// chain. reused: the session owns the stream (attributes and header
// reused), as in the gateway; fresh: Pion's interceptors make them per
// packet (before reuse.go); pion-twcc: fresh, and Pion's TWCC interceptor,
// which hands each packet to its goroutine (before twcc.go).
func BenchmarkIngestChain(b *testing.B) {
	for _, bc := range []struct {
		name          string
		own, pionTWCC bool
	}{{"reused", true, false}, {"fresh", false, false}, {"pion-twcc", false, true}} {
		b.Run(bc.name, func(b *testing.B) {
			src := newPacketSource(b)
			reader, tap, _ := ingestChain(b, src, bc.pionTWCC)
			if bc.own {
				tap.ownReads(chainSSRC)
			}
			buf := make([]byte, rtpReadBuffer)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := reader.Read(buf, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTWCCMalformedExtension: a transport-cc extension too short to hold a
// sequence number costs the packet its feedback, not the track (Pion's
// interceptor returned an error, which ends the track's reader).
func TestTWCCMalformedExtension(t *testing.T) {
	src := newPacketSource(t)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SSRC: chainSSRC}, Payload: make([]byte, 100)}
	if err := p.SetExtension(chainTWCC, []byte{0x01}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	src.raw = raw
	src.twccAt = -1 // the one byte stays as it is
	reader, tap, log := ingestChain(t, src, false)
	tap.ownReads(chainSSRC)
	buf := make([]byte, rtpReadBuffer)
	for range 50 {
		n, _, err := reader.Read(buf, nil)
		if err != nil || n != len(raw) {
			t.Fatalf("read %d bytes, %v: a bad extension must not fail the packet", n, err)
		}
	}
	time.Sleep(3 * twccInterval)
	if _, reports, _ := log.counts(); reports != 0 {
		t.Errorf("%d feedback packets for packets without a readable sequence number", reports)
	}
}
