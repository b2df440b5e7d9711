package whipclient

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	mediaSSRC = 1111
	rtxSSRC   = 2222
)

// sentPacket is one packet as it reached the fake network.
type sentPacket struct {
	ssrc    uint32
	seq     uint16
	payload byte
	at      time.Time
}

// fakeNet is the writer behind the impairment: it records what went out
// and when.
type fakeNet struct {
	mu   sync.Mutex
	sent []sentPacket
	more chan struct{} // signalled on every packet
}

func newFakeNet() *fakeNet { return &fakeNet{more: make(chan struct{}, 1)} }

func (f *fakeNet) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	f.mu.Lock()
	f.sent = append(f.sent, sentPacket{ssrc: h.SSRC, seq: h.SequenceNumber, payload: payload[0], at: time.Now()})
	f.mu.Unlock()
	select {
	case f.more <- struct{}{}:
	default:
	}
	return len(payload), nil
}

func (f *fakeNet) packets() []sentPacket {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentPacket(nil), f.sent...)
}

// waitFor waits until n packets went out, failing the test after within.
func (f *fakeNet) waitFor(t *testing.T, n int, within time.Duration) []sentPacket {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if got := f.packets(); len(got) >= n {
			return got
		}
		select {
		case <-f.more:
		case <-deadline.C:
			t.Fatalf("%d packets went out within %v, want %d", len(f.packets()), within, n)
		}
	}
}

// bindStream binds a video stream with retransmissions to a fake network.
func bindStream(i *impairInterceptor) (*fakeNet, *impairWriter) {
	f := newFakeNet()
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: mediaSSRC, SSRCRetransmission: rtxSSRC, MimeType: "video/H264"}, f)
	return f, w.(*impairWriter)
}

// write sends one packet from a buffer that is overwritten afterwards, as
// Pion's packetizer does: the impairment must keep copies.
func write(t *testing.T, w interceptor.RTPWriter, ssrc uint32, seq uint16) {
	t.Helper()
	buf := []byte{byte(seq), 0xee}
	h := &rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq}
	if _, err := w.Write(h, buf, nil); err != nil {
		t.Fatal(err)
	}
	buf[0], h.SequenceNumber = 0xff, 0xffff
}

// checkOrder checks that every packet arrived intact and in order per SSRC.
func checkOrder(t *testing.T, got []sentPacket) {
	t.Helper()
	next := map[uint32]uint16{}
	for k, p := range got {
		if p.seq != next[p.ssrc] || p.payload != byte(p.seq) {
			t.Fatalf("packet %d: SSRC %d seq %d payload %#x, want seq %d payload %#x", k, p.ssrc, p.seq, p.payload, next[p.ssrc], byte(next[p.ssrc]))
		}
		next[p.ssrc]++
	}
}

func TestJitterDelaysInOrder(t *testing.T) {
	const (
		jitter = 30 * time.Millisecond
		seed   = 42
		n      = 150
	)
	i := newImpairInterceptor()
	i.set(Impairment{Jitter: jitter, Seed: seed})
	f, w := bindStream(i)
	defer i.Close()

	// The delays the impairment draws, one per packet: the generator is
	// seeded and only jitter draws from it.
	rng := rand.New(rand.NewSource(seed))
	var spread [2]int // draws at most and above jitter/2
	written := map[[2]uint32]time.Time{}
	earliest := map[[2]uint32]time.Time{}
	for k := range n {
		// Media with a retransmission now and then, one every 2 ms.
		for _, ssrc := range []uint32{mediaSSRC, rtxSSRC} {
			if ssrc == rtxSSRC && k%5 != 0 {
				continue
			}
			seq := uint16(k)
			if ssrc == rtxSSRC {
				seq = uint16(k / 5)
			}
			d := time.Duration(rng.Int63n(int64(jitter) + 1))
			if d > jitter/2 {
				spread[1]++
			} else {
				spread[0]++
			}
			key := [2]uint32{ssrc, uint32(seq)}
			written[key] = time.Now()
			earliest[key] = written[key].Add(d)
			write(t, w, ssrc, seq)
		}
		time.Sleep(2 * time.Millisecond)
	}
	want := n + n/5
	got := f.waitFor(t, want, 10*time.Second)
	checkOrder(t, got)
	if spread[0] < want/4 || spread[1] < want/4 {
		t.Errorf("delays drawn: %d up to %v, %d above: not spread over [0, %v]", spread[0], jitter/2, spread[1], jitter)
	}
	var above, worst time.Duration
	var nAbove int
	for _, p := range got {
		key := [2]uint32{p.ssrc, uint32(p.seq)}
		if p.at.Before(earliest[key]) {
			t.Errorf("SSRC %d seq %d went out %v before its delay ended", p.ssrc, p.seq, earliest[key].Sub(p.at))
		}
		d := p.at.Sub(written[key])
		if d > jitter/2 {
			nAbove++
			above = d
		}
		worst = max(worst, d)
	}
	// Scheduling only adds to a delay: the bound is generous for a busy
	// machine, but a packet kept far longer than the jitter is a bug.
	if nAbove < want/10 {
		t.Errorf("%d of %d packets delayed more than %v (e.g. %v), want many", nAbove, want, jitter/2, above)
	}
	if worst > jitter+time.Second {
		t.Errorf("a packet was delayed %v with a jitter of %v", worst, jitter)
	}
	st := i.stats()
	if st.Packets != int64(want) || st.Delayed != int64(want) || st.Dropped != 0 {
		t.Errorf("stats %+v, want %d packets, all delayed", st, want)
	}
}

func TestSetImpairmentCleansTheNetwork(t *testing.T) {
	for _, tc := range []struct {
		name string
		imp  Impairment
		// reordered: the first 50 packets may go out in another order
		// (held ones are overtaken by delayed ones when both are flushed).
		reordered bool
	}{
		// A delay and a hold far longer than the test: only switching the
		// impairment off lets these packets out in time.
		{"jitter", Impairment{Jitter: time.Hour, Seed: 1}, false},
		{"reorder", Impairment{Reorder: 1, ReorderBy: 1000, MaxHold: time.Hour, Seed: 1}, false},
		{"both", Impairment{Reorder: 0.5, ReorderBy: 1000, MaxHold: time.Hour, Jitter: time.Hour, Seed: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := newImpairInterceptor()
			p := &Publisher{impair: i}
			f, w := bindStream(i)
			defer i.Close()
			p.SetImpairment(tc.imp)
			for seq := range uint16(50) {
				write(t, w, mediaSSRC, seq)
			}
			if n := len(f.packets()); n != 0 {
				t.Fatalf("%d packets went out through an hour's impairment", n)
			}
			p.SetImpairment(Impairment{})
			// Packets right after the switch queue behind the waiting ones.
			for seq := range uint16(10) {
				write(t, w, mediaSSRC, 50+seq)
			}
			got := f.waitFor(t, 60, 10*time.Second)
			if !tc.reordered {
				checkOrder(t, got)
			}
			// The queue is empty: now a packet goes out within Write.
			for seq := range uint16(10) {
				write(t, w, mediaSSRC, 60+seq)
				if n := len(f.packets()); n != 61+int(seq) {
					t.Fatalf("after packet %d, %d went out: the clean network delays", 60+seq, n)
				}
			}
			got = f.packets()
			if tc.reordered {
				got = got[50:]
				for k := range got {
					got[k].seq -= 50
					got[k].payload -= 50
				}
			}
			checkOrder(t, got)
			st := p.ImpairStats()
			if st.Packets != 70 || st.Dropped != 0 {
				t.Errorf("stats %+v, want 70 packets, none dropped", st)
			}
			// Held packets flushed by the switch go out without a delay.
			if tc.imp.Jitter > 0 && st.Delayed+st.Reordered != 50 {
				t.Errorf("%d packets delayed and %d reordered, want 50 in all", st.Delayed, st.Reordered)
			}
		})
	}
}

func TestJitterQueueStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*impairInterceptor)
	}{
		{"Close", func(i *impairInterceptor) { _ = i.Close() }},
		{"UnbindLocalStream", func(i *impairInterceptor) {
			i.UnbindLocalStream(&interceptor.StreamInfo{SSRC: mediaSSRC})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			i := newImpairInterceptor()
			f, w := bindStream(i)
			i.set(Impairment{Loss: 0.2, Seed: 3})
			for seq := range uint16(20) {
				write(t, w, mediaSSRC, seq)
			}
			w.mu.Lock()
			started := w.done != nil
			w.mu.Unlock()
			if started {
				t.Fatal("a jitter goroutine without jitter")
			}
			i.set(Impairment{Jitter: time.Hour})
			for seq := range uint16(20) {
				write(t, w, mediaSSRC, 20+seq)
			}
			w.mu.Lock()
			done := w.done
			w.mu.Unlock()
			if done == nil {
				t.Fatal("no jitter goroutine")
			}
			tc.stop(i)
			select {
			case <-done:
			default:
				t.Fatal("the jitter goroutine still runs after stop")
			}
			// The stream is gone: a late packet goes straight out.
			before := len(f.packets())
			write(t, w, mediaSSRC, 99)
			if len(f.packets()) != before+1 {
				t.Error("a packet after stop did not go out")
			}
			_ = i.Close()
		})
	}
}

func TestJitterQueueBounded(t *testing.T) {
	i := newImpairInterceptor()
	i.set(Impairment{Jitter: time.Hour})
	f, w := bindStream(i)
	for seq := range uint16(maxJitterQueue + 10) {
		write(t, w, mediaSSRC, seq)
	}
	st := i.stats()
	if st.Delayed != maxJitterQueue || st.Overflow != 10 || st.Dropped != 10 {
		t.Errorf("stats %+v, want %d delayed and 10 dropped as overflow", st, maxJitterQueue)
	}
	_ = i.Close()
	if n := len(f.packets()); n != 0 {
		t.Errorf("%d packets went out", n)
	}
}

func TestNeverImpairedPassesThrough(t *testing.T) {
	i := newImpairInterceptor()
	f, w := bindStream(i)
	defer i.Close()
	for seq := range uint16(10) {
		write(t, w, mediaSSRC, seq)
	}
	checkOrder(t, f.packets())
	if len(f.packets()) != 10 || i.stats() != (ImpairStats{}) {
		t.Errorf("%d packets out, stats %+v: want 10, zero stats", len(f.packets()), i.stats())
	}
}

func TestSetImpairmentShiftsSenderReports(t *testing.T) {
	i := newImpairInterceptor()
	_, _ = bindStream(i)
	defer i.Close()
	var got uint64
	rw := i.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		got = pkts[0].(*rtcp.SenderReport).NTPTime
		return 0, nil
	}))
	send := func() uint64 {
		_, _ = rw.Write([]rtcp.Packet{&rtcp.SenderReport{SSRC: mediaSSRC, NTPTime: 10 << 32}}, nil)
		return got
	}
	if send() != 10<<32 {
		t.Error("a report shifted without an impairment")
	}
	i.set(Impairment{VideoNTPShift: -time.Second})
	if send() != 9<<32 {
		t.Errorf("NTP time %#x, want %#x", got, uint64(9)<<32)
	}
	i.set(Impairment{})
	if send() != 10<<32 {
		t.Error("a report shifted after the impairment was removed")
	}
}
