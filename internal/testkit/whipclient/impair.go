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
// copy) are dropped, held back and sent later, or delayed, at random with a
// seeded generator, so a test sees the same kind of trouble on every run.
// Publisher.SetImpairment changes it during a publish; the zero Impairment
// is a clean network.
type Impairment struct {
	Loss    float64 // probability that a packet is dropped, e.g. 0.01
	Reorder float64 // probability that a packet is held back
	// ReorderBy is how many later packets of the same stream overtake a held
	// packet (at most; 1..ReorderBy at random). 0 = 3.
	ReorderBy int
	// MaxHold bounds how long a packet is held when its stream goes quiet;
	// 0 = 30 ms.
	MaxHold time.Duration
	// Jitter delays every packet that goes out (after Loss and Reorder) by
	// a random delay, uniform in [0, Jitter], as a queueing network path
	// would: a packet never overtakes an earlier one of its stream (its send
	// time is the later of now + its delay and the previous packet's send
	// time), so the delay varies but the order holds. 0 = no delay.
	Jitter time.Duration
	// Seed seeds the generator; SetImpairment restarts it from the new Seed.
	Seed int64
	// NoRepair drops every retransmission (RTX): losses then cannot be
	// repaired by NACK and the receiver must wait for a keyframe.
	NoRepair bool
	// VideoNTPShift, when not zero, is added to the NTP time of the sender
	// reports of the video stream: the reports then say video was captured
	// that much earlier (negative) or later than it was sent, as with an
	// encoder pipeline delay the receiver must undo.
	VideoNTPShift time.Duration
}

// ImpairStats counts what an impairment did, since one was first set.
type ImpairStats struct {
	Packets, Dropped, Reordered int64
	// Delayed counts packets that went through the jitter delay.
	Delayed int64
	// Overflow counts the packets (also in Dropped) dropped because a
	// stream's jitter queue was full (maxJitterQueue packets waiting).
	Overflow int64
}

// maxJitterQueue bounds the packets one stream may have waiting in its
// jitter queue; more are dropped and counted (ImpairStats.Overflow).
const maxJitterQueue = 4096

// impairState is one impairment as set, with the defaults filled in.
type impairState struct {
	cfg Impairment
	// clean: nothing happens to RTP (no loss, reordering, jitter or
	// dropped repairs); packets pass straight through once the stream's
	// jitter queue is empty.
	clean bool
}

// impairInterceptor is installed in every publisher, impaired or not. Until
// an impairment is set, its state is nil and a packet costs one atomic load
// (Write); a clean impairment set later (SetImpairment(Impairment{})) costs
// two more (the counter and the stream's jitter backlog).
type impairInterceptor struct {
	interceptor.NoOp
	state atomic.Pointer[impairState] // nil: never impaired

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	wmu     sync.Mutex // guards writers and closed
	writers map[uint32]*impairWriter
	closed  bool

	videoSSRC atomic.Uint32
	packets   atomic.Int64
	dropped   atomic.Int64
	reordered atomic.Int64
	delayed   atomic.Int64
	overflow  atomic.Int64
}

// impairFactory hands Pion the one interceptor of a publisher (Pion asks
// once per PeerConnection).
type impairFactory struct{ i *impairInterceptor }

func (f impairFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.i, nil }

// newImpairInterceptor returns an interceptor that impairs nothing until
// set is called.
func newImpairInterceptor() *impairInterceptor {
	return &impairInterceptor{writers: map[uint32]*impairWriter{}}
}

// set replaces the impairment. Packets held back for reordering go out at
// once when reordering stops, and packets waiting in a jitter queue go out
// at once (in order) when jitter stops.
func (i *impairInterceptor) set(cfg Impairment) {
	if cfg.ReorderBy <= 0 {
		cfg.ReorderBy = 3
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 30 * time.Millisecond
	}
	cfg.Jitter = max(cfg.Jitter, 0)
	s := &impairState{cfg: cfg, clean: cfg.Loss <= 0 && cfg.Reorder <= 0 && !cfg.NoRepair && cfg.Jitter == 0}
	i.mu.Lock()
	i.rng = rand.New(rand.NewSource(cfg.Seed))
	i.state.Store(s)
	i.mu.Unlock()

	i.wmu.Lock()
	ws := make([]*impairWriter, 0, len(i.writers))
	for _, w := range i.writers {
		ws = append(ws, w)
	}
	i.wmu.Unlock()
	for _, w := range ws {
		if cfg.Reorder <= 0 {
			w.flush()
		}
		if cfg.Jitter == 0 {
			w.wakeUp()
		}
	}
}

// current is the impairment in force (the zero one when none was set).
func (i *impairInterceptor) current() *Impairment {
	if s := i.state.Load(); s != nil {
		return &s.cfg
	}
	return &Impairment{}
}

func (i *impairInterceptor) stats() ImpairStats {
	return ImpairStats{
		Packets: i.packets.Load(), Dropped: i.dropped.Load(), Reordered: i.reordered.Load(),
		Delayed: i.delayed.Load(), Overflow: i.overflow.Load(),
	}
}

// held is a packet waiting for others to overtake it.
type held struct {
	hdr     rtp.Header
	payload []byte
	after   int // send once this many later packets went out
}

// delayed is a packet in a jitter queue: a copy, since the caller reuses
// its buffers.
type delayed struct {
	hdr     rtp.Header
	payload []byte
	at      time.Time // when it may go out
}

// impairWriter impairs one bound local stream (its media SSRC and its
// retransmissions). Its jitter queue is drained by one goroutine, started
// by the first delayed packet and stopped by stop (the interceptor's
// UnbindLocalStream or Close).
type impairWriter struct {
	i    *impairInterceptor
	rtx  uint32 // SSRC of the stream's retransmissions
	next interceptor.RTPWriter

	// queued counts packets in the jitter queue not yet written: while it
	// is not zero, every packet goes through the queue, lest it overtake.
	// It is raised before a packet enters the queue and lowered after the
	// packet was written.
	queued atomic.Int64

	mu      sync.Mutex
	held    []held
	timer   *time.Timer
	last    time.Time // send time of the newest packet in the jitter queue
	queue   chan *delayed
	wake    chan struct{} // the impairment changed (capacity 1)
	quit    chan struct{} // closed by stop
	done    chan struct{} // closed when the queue's goroutine returned
	stopped bool
}

func (i *impairInterceptor) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if strings.HasPrefix(strings.ToLower(info.MimeType), "video/") && !strings.EqualFold(info.MimeType, "video/rtx") {
		i.videoSSRC.CompareAndSwap(0, info.SSRC)
	}
	w := &impairWriter{i: i, rtx: info.SSRCRetransmission, next: writer}
	i.wmu.Lock()
	old := i.writers[info.SSRC]
	if i.closed {
		w.stopped = true // nothing would stop its goroutine: never start one
	} else {
		i.writers[info.SSRC] = w
	}
	i.wmu.Unlock()
	if old != nil {
		old.stop()
	}
	return w
}

// UnbindLocalStream stops the stream's jitter queue; packets still waiting
// in it are dropped (the stream is gone).
func (i *impairInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	i.wmu.Lock()
	w := i.writers[info.SSRC]
	delete(i.writers, info.SSRC)
	i.wmu.Unlock()
	if w != nil {
		w.stop()
	}
}

// Close stops every stream's jitter queue and waits for their goroutines.
func (i *impairInterceptor) Close() error {
	i.wmu.Lock()
	i.closed = true
	ws := i.writers
	i.writers = map[uint32]*impairWriter{}
	i.wmu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	return nil
}

func (i *impairInterceptor) roll(cfg *Impairment) (drop, hold bool, by int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	r := i.rng.Float64()
	switch {
	case r < cfg.Loss:
		return true, false, 0
	case r < cfg.Loss+cfg.Reorder:
		return false, true, 1 + i.rng.Intn(cfg.ReorderBy)
	}
	return false, false, 0
}

// delay draws a jitter delay, uniform in [0, jitter].
func (i *impairInterceptor) delay(jitter time.Duration) time.Duration {
	i.mu.Lock()
	defer i.mu.Unlock()
	return time.Duration(i.rng.Int63n(int64(jitter) + 1))
}

func (w *impairWriter) Write(h *rtp.Header, payload []byte, attr interceptor.Attributes) (int, error) {
	s := w.i.state.Load()
	if s == nil {
		return w.next.Write(h, payload, attr) // never impaired
	}
	w.i.packets.Add(1)
	if s.clean && w.queued.Load() == 0 {
		return w.next.Write(h, payload, attr)
	}
	cfg := &s.cfg
	if cfg.NoRepair && w.rtx != 0 && h.SSRC == w.rtx {
		w.i.dropped.Add(1)
		return len(payload), nil
	}
	var drop, hold bool
	var by int
	if cfg.Loss > 0 || cfg.Reorder > 0 {
		drop, hold, by = w.i.roll(cfg)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return w.next.Write(h, payload, attr)
	}
	if drop {
		w.i.dropped.Add(1)
		return len(payload), nil
	}
	if hold {
		w.i.reordered.Add(1)
		w.held = append(w.held, held{hdr: h.Clone(), payload: append([]byte(nil), payload...), after: by})
		if w.timer == nil {
			w.timer = time.AfterFunc(cfg.MaxHold, w.flush)
		} else {
			w.timer.Reset(cfg.MaxHold)
		}
		return len(payload), nil
	}
	n, err := w.emit(cfg, h, payload, attr)
	// Packets held back go out once enough later ones overtook them.
	kept := w.held[:0]
	for _, p := range w.held {
		p.after--
		if p.after <= 0 {
			_, _ = w.emit(cfg, &p.hdr, p.payload, nil)
			continue
		}
		kept = append(kept, p)
	}
	clear(w.held[len(kept):])
	w.held = kept
	return n, err
}

// emit sends a packet, through the jitter queue when there is jitter or
// the queue still holds packets. w.mu is held.
func (w *impairWriter) emit(cfg *Impairment, h *rtp.Header, payload []byte, attr interceptor.Attributes) (int, error) {
	if w.stopped || (cfg.Jitter == 0 && w.queued.Load() == 0) {
		return w.next.Write(h, payload, attr)
	}
	at := time.Now()
	if cfg.Jitter > 0 {
		at = at.Add(w.i.delay(cfg.Jitter))
	}
	at = later(at, w.last) // a queue: never before the packet ahead
	if w.queue == nil {
		w.queue = make(chan *delayed, maxJitterQueue)
		w.wake = make(chan struct{}, 1)
		w.quit = make(chan struct{})
		w.done = make(chan struct{})
		go w.run(w.queue, w.wake, w.quit, w.done)
	}
	// Only this writer (under w.mu) raises queued: a full queue stays full
	// until the send below, which therefore never blocks.
	if w.queued.Load() >= maxJitterQueue {
		w.i.dropped.Add(1)
		w.i.overflow.Add(1)
		return len(payload), nil
	}
	w.queued.Add(1)
	w.queue <- &delayed{hdr: h.Clone(), payload: append([]byte(nil), payload...), at: at}
	w.last = at
	if cfg.Jitter > 0 {
		w.i.delayed.Add(1)
	}
	return len(payload), nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// run writes the jitter queue's packets at their send times, or at once
// when jitter was switched off, until quit is closed.
func (w *impairWriter) run(queue <-chan *delayed, wake, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var p *delayed
		select {
		case <-quit:
			return
		case p = <-queue:
		}
		for d := time.Until(p.at); d > 0 && w.i.current().Jitter > 0; d = time.Until(p.at) {
			t.Reset(d)
			select {
			case <-quit:
				return
			case <-wake: // the impairment changed: look again
			case <-t.C:
			}
		}
		_, _ = w.next.Write(&p.hdr, p.payload, nil)
		w.queued.Add(-1)
	}
}

// wakeUp tells the queue's goroutine that the impairment changed.
func (w *impairWriter) wakeUp() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// stop ends the writer's timer and goroutine and waits for the goroutine;
// packets still held or queued are dropped. Later packets go straight
// through.
func (w *impairWriter) stop() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.held = nil
	done := w.done
	if w.quit != nil {
		close(w.quit)
	}
	w.mu.Unlock()
	if done != nil {
		<-done
	}
}

// flush sends what is still held when the stream went quiet or reordering
// was switched off.
func (w *impairWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	cfg := w.i.current()
	for _, p := range w.held {
		_, _ = w.emit(cfg, &p.hdr, p.payload, nil)
	}
	w.held = nil
}

// BindRTCPWriter shifts the NTP time of video sender reports when asked.
func (i *impairInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attr interceptor.Attributes) (int, error) {
		if s := i.state.Load(); s != nil && s.cfg.VideoNTPShift != 0 {
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC != 0 && sr.SSRC == i.videoSSRC.Load() {
					sr.NTPTime = shiftNTP(sr.NTPTime, s.cfg.VideoNTPShift)
				}
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
