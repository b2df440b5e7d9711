package whipclient

import (
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Impairment makes the publisher's network lossy: outgoing RTP packets
// (media and retransmissions alike, after the NACK responder has kept its
// copy) are dropped or held back and sent later, at random with a seeded
// generator, so a test sees the same kind of trouble on every run.
type Impairment struct {
	Loss    float64 // probability that a packet is dropped, e.g. 0.01
	Reorder float64 // probability that a packet is held back
	// ReorderBy is how many later packets of the same stream overtake a held
	// packet (at most; 1..ReorderBy at random). 0 = 3.
	ReorderBy int
	// MaxHold bounds how long a packet is held when its stream goes quiet;
	// 0 = 30 ms.
	MaxHold time.Duration
	Seed    int64
	// NoRepair drops every retransmission (RTX): losses then cannot be
	// repaired by NACK and the receiver must wait for a keyframe.
	NoRepair bool
	// VideoNTPShift, when not zero, is added to the NTP time of the sender
	// reports of the video stream: the reports then say video was captured
	// that much earlier (negative) or later than it was sent, as with an
	// encoder pipeline delay the receiver must undo.
	VideoNTPShift time.Duration
}

// ImpairStats counts what an impairment did.
type ImpairStats struct {
	Packets, Dropped, Reordered int64
}

type impairInterceptor struct {
	interceptor.NoOp
	cfg Impairment

	mu  sync.Mutex
	rng *rand.Rand

	videoSSRC atomic.Uint32
	packets   atomic.Int64
	dropped   atomic.Int64
	reordered atomic.Int64
}

type impairFactory struct{ i *impairInterceptor }

func (f impairFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.i, nil }

func newImpairInterceptor(cfg Impairment) *impairInterceptor {
	if cfg.ReorderBy <= 0 {
		cfg.ReorderBy = 3
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 30 * time.Millisecond
	}
	return &impairInterceptor{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
}

func (i *impairInterceptor) stats() ImpairStats {
	return ImpairStats{Packets: i.packets.Load(), Dropped: i.dropped.Load(), Reordered: i.reordered.Load()}
}

// held is a packet waiting for others to overtake it.
type held struct {
	hdr     rtp.Header
	payload []byte
	after   int // send once this many later packets went out
}

type impairWriter struct {
	i     *impairInterceptor
	rtx   uint32 // SSRC of the stream's retransmissions
	next  interceptor.RTPWriter
	mu    sync.Mutex
	held  []held
	timer *time.Timer
}

func (i *impairInterceptor) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if strings.HasPrefix(strings.ToLower(info.MimeType), "video/") && !strings.EqualFold(info.MimeType, "video/rtx") {
		i.videoSSRC.CompareAndSwap(0, info.SSRC)
	}
	return &impairWriter{i: i, rtx: info.SSRCRetransmission, next: writer}
}

func (i *impairInterceptor) roll() (drop, hold bool, by int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	r := i.rng.Float64()
	switch {
	case r < i.cfg.Loss:
		return true, false, 0
	case r < i.cfg.Loss+i.cfg.Reorder:
		return false, true, 1 + i.rng.Intn(i.cfg.ReorderBy)
	}
	return false, false, 0
}

func (w *impairWriter) Write(h *rtp.Header, payload []byte, attr interceptor.Attributes) (int, error) {
	w.i.packets.Add(1)
	if w.i.cfg.NoRepair && w.rtx != 0 && h.SSRC == w.rtx {
		w.i.dropped.Add(1)
		return len(payload), nil
	}
	drop, hold, by := w.i.roll()
	w.mu.Lock()
	defer w.mu.Unlock()
	if drop {
		w.i.dropped.Add(1)
		return len(payload), nil
	}
	if hold {
		w.i.reordered.Add(1)
		w.held = append(w.held, held{hdr: h.Clone(), payload: append([]byte(nil), payload...), after: by})
		if w.timer == nil {
			w.timer = time.AfterFunc(w.i.cfg.MaxHold, w.flush)
		} else {
			w.timer.Reset(w.i.cfg.MaxHold)
		}
		return len(payload), nil
	}
	n, err := w.next.Write(h, payload, attr)
	// Packets held back go out once enough later ones overtook them.
	kept := w.held[:0]
	for _, p := range w.held {
		p.after--
		if p.after <= 0 {
			_, _ = w.next.Write(&p.hdr, p.payload, nil)
			continue
		}
		kept = append(kept, p)
	}
	w.held = kept
	return n, err
}

// flush sends what is still held when the stream went quiet.
func (w *impairWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.held {
		_, _ = w.next.Write(&p.hdr, p.payload, nil)
	}
	w.held = nil
}

// BindRTCPWriter shifts the NTP time of video sender reports when asked.
func (i *impairInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	if i.cfg.VideoNTPShift == 0 {
		return writer
	}
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attr interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC != 0 && sr.SSRC == i.videoSSRC.Load() {
				sr.NTPTime = shiftNTP(sr.NTPTime, i.cfg.VideoNTPShift)
			}
		}
		return writer.Write(pkts, attr)
	})
}

// shiftNTP adds d to a 32.32 fixed-point NTP timestamp.
func shiftNTP(ntp uint64, d time.Duration) uint64 {
	sec := int64(d / time.Second)
	frac := int64(d%time.Second) << 32 / int64(time.Second)
	return ntp + uint64(sec<<32+frac)
}
