package peer

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// twccInterval is how often transport-wide congestion-control feedback
// goes to a publisher (as Pion's and browsers' receivers do).
const twccInterval = 100 * time.Millisecond

// twccFactory makes the TWCC feedback interceptor of each PeerConnection.
//
// It replaces Pion's twcc.SenderInterceptor, which hands every packet to
// its feedback goroutine over an unbuffered channel: a goroutine wake-up
// per packet on the track reader's path (a third of the gateway's ingest
// CPU with browsers, which stamp every packet; docs/BENCHMARKS.md). Here
// the track reader records a packet's arrival itself, under a lock held
// for a few instructions, and the goroutine only builds and sends the
// feedback every 100 ms, with the same recorder (twcc.Recorder) and so
// the same packets on the wire.
type twccFactory struct {
	log logging.LoggerFactory
}

func (f twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccFeedback{
		recorder: twcc.NewRecorder(rand.Uint32()),
		start:    time.Now(),
		first:    make(chan struct{}),
		closed:   make(chan struct{}),
		log:      f.log.NewLogger("twcc"),
	}, nil
}

// twccFeedback records the arrival of one connection's packets and sends
// their feedback.
type twccFeedback struct {
	interceptor.NoOp
	start time.Time
	log   logging.LeveledLogger

	mu       sync.Mutex
	recorder *twcc.Recorder
	started  bool          // first is closed
	first    chan struct{} // closed at the first packet recorded: no ticker for a connection without media

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// BindRTCPWriter is called once, when the PeerConnection is made: the
// feedback goroutine starts here and ends with Close.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	select {
	case <-t.closed:
		return w
	default:
	}
	t.wg.Add(1)
	go t.send(w)
	return w
}

func (t *twccFeedback) send(w interceptor.RTCPWriter) {
	defer t.wg.Done()
	select {
	case <-t.first:
	case <-t.closed:
		return
	}
	tick := time.NewTicker(twccInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.closed:
			return
		case <-tick.C:
		}
		t.mu.Lock()
		pkts := t.recorder.BuildFeedbackPacket()
		t.mu.Unlock()
		if len(pkts) == 0 {
			continue
		}
		if _, err := w.Write(pkts, nil); err != nil {
			t.log.Debugf("twcc feedback: %v", err)
		}
	}
}

// BindRemoteStream records, for every packet that carries a transport-wide
// sequence number, when it arrived.
func (t *twccFeedback) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	var extID uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			extID = uint8(e.ID)
			break
		}
	}
	if extID == 0 {
		return reader
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		hdr, err := attr.GetRTPHeader(b[:n])
		if err != nil {
			return 0, nil, err
		}
		t.record(hdr, extID, ssrc)
		return n, attr, nil
	})
}

func (t *twccFeedback) record(hdr *rtp.Header, extID uint8, ssrc uint32) {
	ext := hdr.GetExtension(extID)
	if ext == nil {
		return
	}
	var tcc rtp.TransportCCExtension
	if tcc.Unmarshal(ext) != nil {
		return // a bad extension costs its feedback, not the packet
	}
	arrival := time.Since(t.start).Microseconds()
	t.mu.Lock()
	t.recorder.Record(ssrc, tcc.TransportSequence, arrival)
	if !t.started {
		t.started = true
		close(t.first)
	}
	t.mu.Unlock()
}

// Close stops the feedback goroutine and waits for it.
func (t *twccFeedback) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	t.wg.Wait()
	return nil
}
