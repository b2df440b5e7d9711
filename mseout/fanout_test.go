package mseout_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/promtext"
	"github.com/mseway/mseway/mseout"
)

// metric returns a sample of r's metrics (with per-stream series).
func metric(t testing.TB, r *mseout.Registry, name string) int64 {
	t.Helper()
	v, ok := promtext.Value(promtext.Text(t, r.Collector(true)), name)
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return int64(v)
}

// The gateway frames messages itself; a standard client must read every
// payload length form (7-bit, 16-bit, 64-bit) exactly.
func TestFramesOfEverySize(t *testing.T) { eachMode(t, testFramesOfEverySize) }

func testFramesOfEverySize(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	pub, err := r.Publish("sizes", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	c := dial(t, base+"sizes")
	// Live but no init yet: nothing is sent until the init and a keyframe.
	pub.WriteInit(testInit("init"))
	sizes := []int{1, 125, 126, 127, 65535, 65536, 300000}
	for i, n := range sizes {
		data := bytes.Repeat([]byte{byte('a' + i)}, n)
		pub.WriteSegment(segment(string(data), i == 0))
	}
	expectText(t, c, "init")
	expectBinary(t, c, "init")
	for i, n := range sizes {
		m := next(t, c)
		if len(m.Binary) != n || (n > 0 && (m.Binary[0] != byte('a'+i) || m.Binary[n-1] != byte('a'+i))) {
			t.Fatalf("segment %d: got %d bytes, want %d", i, len(m.Binary), n)
		}
	}
}

// A viewer that joins gets init + the GOP cache in one write; messages are
// still separate on the wire.
func TestJoinBurstIsOneWrite(t *testing.T) { eachMode(t, testJoinBurstIsOneWrite) }

func testJoinBurstIsOneWrite(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, nil)
	pub, err := r.Publish("burst", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.WriteInit(testInit("init"))
	const gop = 40
	for i := range gop {
		pub.WriteSegment(segment(fmt.Sprintf("s%d", i), i == 0))
	}
	c := dial(t, base+"burst")
	expectText(t, c, "init")
	expectBinary(t, c, "init")
	for i := range gop {
		expectBinary(t, c, fmt.Sprintf("s%d", i))
	}
	// The writer counts a write after it returns, which can be after the
	// viewer has read it all: wait for the count, then check it.
	var w, m int64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w, m = metric(t, r, "gateway_viewer_writes_total"), metric(t, r, "gateway_viewer_messages_total")
		if m >= 2+gop || time.Now().After(deadline) {
			break
		}
	}
	if w != 1 || m != 2+gop {
		t.Fatalf("writes %d, messages %d: want the join burst (%d messages) in 1 write", w, m, 2+gop)
	}
}

// Keep-alive pings reach the viewer, and a viewer's ping gets its pong, both
// through the writer.
func TestPingPong(t *testing.T) { eachMode(t, testPingPong) }

func testPingPong(t *testing.T, mode netMode) {
	cfg := configs.Default()
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits, KeepAlive: 50 * time.Millisecond})
	base := serveRegistry(t, mode, r)
	ws, _, err := wsDialer(base).Dial(base+"pp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pings, pongs := make(chan struct{}, 100), make(chan string, 1)
	ws.SetPingHandler(func(string) error { pings <- struct{}{}; return nil })
	ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
	go func() {
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	if err := ws.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-pongs:
		if s != "hello" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	for range 2 {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no keep-alive ping")
		}
	}
}

// BenchmarkFanout measures the gateway side of one media segment (10 KB)
// reaching N viewers over loopback TCP: WriteSegment, the queues and one
// write per viewer. Viewers are raw sockets drained with io.Copy, so the
// client's WebSocket parsing is not in the figure. ns/op is per segment;
// ns/write is per viewer.
//
// Over wss (TLS 1.3 through DirectWriteListener, as the gateway serves it)
// the readers take the ciphertext off the socket without decrypting it, so
// the figure is the gateway's sealing and sending; each 10004-byte frame is
// one record, 22 bytes longer (header, content type, AES-GCM tag).
func BenchmarkFanout(b *testing.B) {
	for _, mode := range []netMode{plainTCP, tlsDirect} {
		for _, n := range []int{10, 100, 500} {
			b.Run(fmt.Sprintf("%s/viewers=%d", mode, n), func(b *testing.B) { benchFanout(b, mode, n, 0) })
		}
	}
}

// benchFanout measures the fan-out to n viewers; with scrapeEvery, a
// goroutine gathers the registry's metrics that often meanwhile (as a
// Prometheus scrape does).
func benchFanout(b *testing.B, mode netMode, n int, scrapeEvery time.Duration) {
	cfg := configs.Default()
	cfg.Limits.MaxViewersPerStream = 100000
	cfg.Limits.MaxViewers = 100000
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits, Logger: quiet})
	url := serveRegistry(b, mode, r) + "bench"
	perWrite := int64(10004)
	if mode == tlsDirect {
		perWrite += 22
	}
	pub := goLive(b, r, "bench", "key")
	var wg sync.WaitGroup
	var conns []net.Conn
	var got, target atomic.Int64 // bytes all viewers received; the goal of the op
	target.Store(1 << 62)
	reached := make(chan struct{}, 1)
	for range n {
		ws, _, err := wsDialer(url).DialContext(context.Background(), url, nil)
		if err != nil {
			b.Fatal(err)
		}
		nc := ws.NetConn()
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn() // the ciphertext, not decrypted
		}
		conns = append(conns, nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := nc.Read(buf)
				if got.Add(int64(n)) >= target.Load() {
					select {
					case reached <- struct{}{}:
					default:
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	wait := func(want int64) {
		target.Store(want)
		for got.Load() < want {
			select {
			case <-reached:
			case <-time.After(10 * time.Second):
				b.Fatalf("viewers got %d bytes, want %d", got.Load(), want)
			}
		}
	}
	// The first messages (init, keyframe) go out; then each op is one
	// 10 KB delta segment, a 10004-byte frame to every viewer.
	deadline := time.Now().Add(10 * time.Second)
	for metric(b, r, "gateway_viewer_messages_total") < int64(3*n) {
		if time.Now().After(deadline) {
			b.Fatal("viewers did not get the init")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	if scrapeEvery > 0 {
		stop := make(chan struct{})
		scraped := make(chan struct{})
		go func() {
			defer close(scraped)
			tick := time.NewTicker(scrapeEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := promtext.Format(r.Collector(true)); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
		defer func() { close(stop); <-scraped }()
	}
	data := string(bytes.Repeat([]byte{'x'}, 10000))
	base := got.Load()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		pub.WriteSegment(segment(data, false))
		wait(base + int64(n)*perWrite*int64(i+1))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/write")
	// CPU time of the process (gateway side and the raw readers) per viewer
	// write: steadier than wall time on a machine shared with other work.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/float64(n), "cpu-ns/write")
}

// A viewer that reads slowly while big segments stream makes the direct
// writes partial (the socket is full) and its queue overflow: what it gets
// must still be whole messages, in order, each gap ending at a keyframe.
func TestSlowReaderGetsWholeMessagesInOrder(t *testing.T) {
	eachMode(t, testSlowReaderGetsWholeMessagesInOrder)
}

func testSlowReaderGetsWholeMessagesInOrder(t *testing.T, mode netMode) {
	r, base := newServerOn(t, mode, func(c *configs.Config) {
		c.StreamDefaults.ViewerQueueMessages = 20
		c.StreamDefaults.ViewerMaxSkips = 1000
	})
	pub, err := r.Publish("slow", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.WriteInit(testInit("init"))
	pub.WriteSegment(segment("k", true))
	// A small receive buffer: the server's socket fills after ~100 KB.
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10) })
	}}
	d := wsDialer(base)
	d.NetDialContext = nd.DialContext
	ws, _, err := d.Dial(base+"slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadLimit(1 << 20)
	read := func() (int, []byte) {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		mt, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return mt, data
	}
	for _, want := range []string{"init", "init", "k"} {
		if _, data := read(); !bytes.Contains(data, []byte(want)) {
			t.Fatalf("got %.40q, want %q", data, want)
		}
	}
	const n, size, gop = 300, 60000, 10
	body := bytes.Repeat([]byte{'z'}, size)
	go func() {
		for i := range n {
			pub.WriteSegment(segment(fmt.Sprintf("%05d", i)+string(body), i%gop == 0))
			time.Sleep(200 * time.Microsecond)
		}
		pub.WriteSegment(segment("end", true))
	}()
	last, got := -1, 0
	for {
		time.Sleep(2 * time.Millisecond) // a slow viewer
		mt, data := read()
		if mt != websocket.BinaryMessage {
			t.Fatalf("unexpected %s", data)
		}
		if string(data) == "end" {
			break
		}
		if len(data) != 5+size || !bytes.Equal(data[5:], body) {
			t.Fatalf("message after %d: %d bytes, corrupted or cut", last, len(data))
		}
		i, err := strconv.Atoi(string(data[:5]))
		if err != nil {
			t.Fatalf("bad index %q", data[:5])
		}
		if i <= last || (i != last+1 && i%gop != 0) {
			t.Fatalf("segment %d after %d: out of order or resumed without a keyframe", i, last)
		}
		last = i
		got++
	}
	skips := metric(t, r, "gateway_viewer_skips_total")
	if got == 0 || got == n || skips == 0 {
		t.Fatalf("got %d of %d segments, %d skips: the viewer was not slow enough to test anything", got, n, skips)
	}
	t.Logf("got %d of %d segments; writes %d, messages %d, skips %d", got, n, metric(t, r, "gateway_viewer_writes_total"),
		metric(t, r, "gateway_viewer_messages_total"), metric(t, r, "gateway_viewer_skips_total"))
}

// The writer goroutine's write deadline must not outlive its write: direct
// writes after it (long after WriteTimeout) still go through.
func TestDirectWritesOutliveWriteDeadline(t *testing.T) {
	eachMode(t, testDirectWritesOutliveWriteDeadline)
}

func testDirectWritesOutliveWriteDeadline(t *testing.T, mode netMode) {
	cfg := configs.Default()
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits, WriteTimeout: 50 * time.Millisecond})
	base := serveRegistry(t, mode, r)
	pub := goLive(t, r, "dl", "k")
	c := join(t, base+"dl", "k") // the join burst: written by the writer goroutine
	for i := range 15 {
		time.Sleep(20 * time.Millisecond) // 300 ms in all: 6 write timeouts
		pub.WriteSegment(segment(fmt.Sprint(i), false))
		expectBinary(t, c, fmt.Sprint(i))
	}
}

// cpuTime returns the user+system CPU time of this process, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// A viewer that closes gets the close echoed (a clean close for browsers).
func TestCloseIsEchoed(t *testing.T) { eachMode(t, testCloseIsEchoed) }

func testCloseIsEchoed(t *testing.T, mode netMode) {
	_, base := newServerOn(t, mode, nil)
	ws, _, err := wsDialer(base).Dial(base+"echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue // "waiting"
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Fatalf("got %v, want the close echoed with code 1000", err)
		}
		return
	}
}

// BenchmarkTLSSealFloor is the cipher's own cost of what a wss viewer costs
// over a ws one: sealing one 10004-byte frame into a TLS 1.3 record with
// AES-128-GCM (the suite Go picks where the CPU has AES instructions), with
// nothing else. Compare its ns/op with the difference of BenchmarkFanout's
// wss and ws cpu-ns/write.
func BenchmarkTLSSealFloor(b *testing.B) {
	for _, keyLen := range []int{16, 32} {
		b.Run(fmt.Sprintf("AES-%d-GCM", keyLen*8), func(b *testing.B) {
			block, err := aes.NewCipher(make([]byte, keyLen))
			if err != nil {
				b.Fatal(err)
			}
			aead, err := cipher.NewGCM(block)
			if err != nil {
				b.Fatal(err)
			}
			frame := bytes.Repeat([]byte{'x'}, 10004+1) // + the inner content type
			hdr := []byte{23, 3, 3, 0, 0}
			out := make([]byte, 0, len(frame)+aead.Overhead())
			nonce := make([]byte, aead.NonceSize())
			b.SetBytes(int64(len(frame) - 1))
			b.ReportAllocs()
			for i := range b.N {
				nonce[len(nonce)-1] = byte(i)
				out = aead.Seal(out[:0], nonce, frame, hdr)
			}
		})
	}
}
