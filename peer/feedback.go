package peer

import (
	"cmp"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// connTapFactory makes one connTap per PeerConnection. It is the
// first interceptor of the chain, so the writer it wraps is the one every
// other interceptor writes to: it sees all the RTCP the gateway sends to a
// publisher (TWCC feedback every 100 ms, the NACK generator's NACKs, the
// report interceptor's receiver reports, PLIs), a few tens of packets a
// second. On the read side it sits next
// to the SRTP streams, below every other interceptor (reuse.go).
type connTapFactory struct {
	mu    sync.Mutex
	byPC  map[string]*connTap // made and not yet taken by their session
	limit int
}

func newConnTapFactory() *connTapFactory {
	return &connTapFactory{byPC: map[string]*connTap{}, limit: 4096}
}

// NewInterceptor is called by Pion while it builds a PeerConnection whose
// ID is id.
func (f *connTapFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	c := &connTap{}
	f.mu.Lock()
	// A connection whose making failed after this call is never taken:
	// bounded, so such failures cannot grow the map.
	if len(f.byPC) >= f.limit {
		clear(f.byPC)
	}
	f.byPC[id] = c
	f.mu.Unlock()
	return c, nil
}

// take returns the tap of the PeerConnection id (nil when unknown) and
// forgets it.
func (f *connTapFactory) take(id string) *connTap {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byPC[id]
	delete(f.byPC, id)
	return c
}

// connTap is one connection's innermost interceptor: it counts the
// feedback the gateway sends, and reuses the attributes of the streams the
// session reads (reuse.go).
type connTap struct {
	interceptor.NoOp
	nacked atomic.Uint64 // RTP packets asked for again (each sequence number of a NACK)
	reads  streamReads

	mu     sync.Mutex
	jitter [4]ssrcJitter // the last few media sources reported on
}

type ssrcJitter struct {
	ssrc   uint32
	jitter uint32 // RFC 3550 interarrival jitter, in RTP timestamp units
}

func (c *connTap) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attrs interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				var n uint64
				for _, pair := range p.Nacks {
					n += 1 + uint64(bits.OnesCount16(uint16(pair.LostPackets)))
				}
				c.nacked.Add(n)
			case *rtcp.ReceiverReport:
				c.noteReports(p.Reports)
			}
		}
		return w.Write(pkts, attrs)
	})
}

func (c *connTap) noteReports(reports []rtcp.ReceptionReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range reports {
		slot := -1
		for i, j := range c.jitter {
			if j.ssrc == r.SSRC || (slot < 0 && j.ssrc == 0) {
				slot = i
				if j.ssrc == r.SSRC {
					break
				}
			}
		}
		if slot < 0 { // more sources than slots (simulcast): the oldest goes
			copy(c.jitter[:], c.jitter[1:])
			slot = len(c.jitter) - 1
		}
		c.jitter[slot] = ssrcJitter{ssrc: r.SSRC, jitter: r.Jitter}
	}
}

// jitterOf returns the last jitter reported for ssrc, in RTP timestamp units.
func (c *connTap) jitterOf(ssrc uint32) (uint32, bool) {
	if c == nil || ssrc == 0 {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range c.jitter {
		if j.ssrc == ssrc {
			return j.jitter, true
		}
	}
	return 0, false
}

// Feedback is what the gateway measured of a publisher's connection and
// asked of it, beyond the remuxer's counters.
type Feedback struct {
	// NACKed counts RTP packets the gateway asked the publisher to resend.
	NACKed uint64
	// VideoJitter and AudioJitter are the interarrival jitter (RFC 3550) of
	// the remuxed tracks in seconds, as in the gateway's last receiver
	// report; negative when not known yet.
	VideoJitter, AudioJitter float64
	// RTT is the round-trip time of the selected ICE candidate pair, from
	// its STUN checks, in seconds; negative when not measured yet.
	RTT float64
}

// Feedback returns the session's feedback figures.
func (s *Session) Feedback() Feedback {
	f := Feedback{VideoJitter: -1, AudioJitter: -1, RTT: -1}
	if s.tap != nil {
		f.NACKed = s.tap.nacked.Load()
	}
	if j, ok := s.tap.jitterOf(s.videoSSRC.Load()); ok && s.conf.Video != nil {
		f.VideoJitter = float64(j) / float64(cmp.Or(s.conf.Video.ClockRate, 90000))
	}
	if j, ok := s.tap.jitterOf(s.audioSSRC.Load()); ok && s.conf.Audio != nil {
		f.AudioJitter = float64(j) / float64(cmp.Or(s.conf.Audio.ClockRate, 48000))
	}
	// Only on a live connection: Pion logs an error for a closed one.
	select {
	case <-s.done:
		return f
	default:
	}
	if !s.connected.Load() {
		return f
	}
	if sctp := s.pc.SCTP(); sctp != nil {
		if dtls := sctp.Transport(); dtls != nil {
			if ice := dtls.ICETransport(); ice != nil {
				if st, ok := ice.GetSelectedCandidatePairStats(); ok && st.CurrentRoundTripTime > 0 {
					f.RTT = st.CurrentRoundTripTime
				}
			}
		}
	}
	return f
}
