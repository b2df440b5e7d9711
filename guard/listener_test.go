package guard

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/promtext"
)

// hijackServer serves the hijacking handler over g's listener on loopback:
// each request's connection is hijacked, answered "hi\n", and held until
// the client closes it, then closed by the handler (so its slot is released
// by the Close of the hijacked connection).
type hijackServer struct {
	g    *Guard
	addr string
	srv  *http.Server
	wg   sync.WaitGroup
	// notSyscall counts hijacked connections that were no syscall.Conn.
	mu         sync.Mutex
	notSyscall int
}

func startHijackServer(t *testing.T, opts Options) *hijackServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &hijackServer{g: New(opts), addr: ln.Addr().String()}
	hs.srv = &http.Server{
		Handler:  hs.g.Middleware(http.HandlerFunc(hs.hijack)),
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	hs.wg.Add(1)
	go func() {
		defer hs.wg.Done()
		_ = hs.srv.Serve(hs.g.Listener(ln))
	}()
	t.Cleanup(func() {
		hs.srv.Close()
		hs.wg.Wait()
		hs.g.Close()
	})
	return hs
}

func (hs *hijackServer) hijack(w http.ResponseWriter, r *http.Request) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if _, ok := c.(syscall.Conn); !ok {
		hs.mu.Lock()
		hs.notSyscall++
		hs.mu.Unlock()
	}
	_, _ = c.Write([]byte("hi\n"))
	_, _ = io.Copy(io.Discard, brw) // until the client closes
	_ = c.Close()
}

// dial connects (from local, if set), sends a request and waits for the
// hijacked connection's greeting. A refused connection returns the read's
// error, which must not be the deadline's.
func (hs *hijackServer) dial(t *testing.T, local string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", hs.addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, err // refused so fast that connect saw the reset
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n") // a refused one may fail here already
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection neither served nor refused within 5 s: %v", err)
		}
		return nil, err
	}
	if line != "hi\n" {
		c.Close()
		t.Fatalf("served %q, want the hijacked greeting", line)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func (hs *hijackServer) mustServe(t *testing.T, local, what string) net.Conn {
	t.Helper()
	c, err := hs.dial(t, local)
	if err != nil {
		t.Fatalf("%s: refused (%v), want served", what, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (hs *hijackServer) mustRefuse(t *testing.T, local, what string) {
	t.Helper()
	c, err := hs.dial(t, local)
	if err == nil {
		c.Close()
		t.Fatalf("%s: served, want refused", what)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Logf("%s: refused with %v", what, err)
	}
}

// waitOpen waits until the guard counts n open connections.
func waitOpen(t *testing.T, g *Guard, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.OpenConns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("open connections: %d, want %d", g.OpenConns(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func metric(t *testing.T, g *Guard, line string) {
	t.Helper()
	text := promtext.Text(t, g.Collector())
	for l := range strings.SplitSeq(text, "\n") {
		if l == line {
			return
		}
	}
	t.Errorf("metrics lack %q:\n%s", line, text)
}

func TestPerIPCap(t *testing.T) {
	hs := startHijackServer(t, Options{MaxConns: 100, MaxConnsPerIP: 3})
	var cs []net.Conn
	for i := range 3 {
		cs = append(cs, hs.mustServe(t, "", "connection "+string(rune('1'+i))))
	}
	hs.mustRefuse(t, "", "4th connection from one address")
	waitOpen(t, hs.g, 3)
	metric(t, hs.g, `gateway_connections_refused_total{reason="max_conns_per_ip"} 1`)
	metric(t, hs.g, `gateway_connections_refused_total{reason="max_conns"} 0`)

	cs[0].Close() // the handler sees EOF and closes the hijacked connection
	waitOpen(t, hs.g, 2)
	cs[0] = hs.mustServe(t, "", "connection after one closed")
	hs.mustRefuse(t, "", "4th connection again")

	// Another address has slots of its own (Linux routes 127/8 to lo).
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err == nil {
		l.Close()
		hs.mustServe(t, "127.0.0.2", "connection from another address")
		hs.mustServe(t, "127.0.0.2", "2nd connection from another address")
	} else {
		t.Logf("no 127.0.0.2 here (%v): not dialling from a second address", err)
	}

	for _, c := range cs {
		c.Close()
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.notSyscall != 0 {
		t.Errorf("%d hijacked connections were no syscall.Conn", hs.notSyscall)
	}
}

func TestGlobalCap(t *testing.T) {
	hs := startHijackServer(t, Options{MaxConns: 2})
	a := hs.mustServe(t, "", "1st")
	hs.mustServe(t, "", "2nd")
	hs.mustRefuse(t, "", "3rd over max_conns")
	metric(t, hs.g, `gateway_connections_refused_total{reason="max_conns"} 1`)
	a.Close()
	waitOpen(t, hs.g, 1)
	hs.mustServe(t, "", "after one closed")
}

func TestTrustedProxyExemptFromPerIPCapOnly(t *testing.T) {
	hs := startHijackServer(t, Options{
		MaxConns: 3, MaxConnsPerIP: 1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	for range 3 {
		hs.mustServe(t, "", "trusted proxy's connection")
	}
	hs.mustRefuse(t, "", "4th: over max_conns even for a proxy")
	metric(t, hs.g, `gateway_connections_refused_total{reason="max_conns"} 1`)
	metric(t, hs.g, `gateway_connections_refused_total{reason="max_conns_per_ip"} 0`)
}

func TestOpenGaugeReturnsToZero(t *testing.T) {
	hs := startHijackServer(t, Options{MaxConns: 50, MaxConnsPerIP: 10})
	var cs []net.Conn
	for range 10 {
		cs = append(cs, hs.mustServe(t, "", "connection"))
	}
	hs.mustRefuse(t, "", "11th")
	metric(t, hs.g, "gateway_connections_open 10")
	for _, c := range cs {
		c.Close()
	}
	waitOpen(t, hs.g, 0)
	metric(t, hs.g, "gateway_connections_open 0")
	hs.g.mu.Lock()
	n := len(hs.g.perIP)
	hs.g.mu.Unlock()
	if n != 0 {
		t.Errorf("per-address map holds %d addresses with nothing open", n)
	}
}

// A non-hijacked connection closed by the server (keep-alive off) releases
// its slot too.
func TestServerClosedConnReleases(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := New(Options{MaxConns: 10, MaxConnsPerIP: 1})
	defer g.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	srv.SetKeepAlivesEnabled(false)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(g.Listener(ln)) }()
	defer func() { srv.Close(); <-done }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 { // with a cap of 1, each must have released the last one's slot
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		waitOpen(t, g, 0)
	}
}

func TestWrappedConnIsSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := New(Options{MaxConnsPerIP: 5})
	defer g.Close()
	wl := g.Listener(ln)
	defer wl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is no syscall.Conn: the fan-out's direct writes would be lost", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	if fd == 0 || fd == ^uintptr(0) {
		t.Fatalf("fd %d", fd)
	}
	rawWrite(t, rc, client) // unix: a write(2) on the fd reaches the client
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Errorf("%T is no io.ReaderFrom: net/http would lose sendfile", c)
	}
	if nc, ok := c.(interface{ NetConn() net.Conn }); !ok {
		t.Errorf("%T has no NetConn", c)
	} else if _, ok := nc.NetConn().(*net.TCPConn); !ok {
		t.Errorf("NetConn is %T, want *net.TCPConn", nc.NetConn())
	}

	// ReadFrom goes to the socket.
	go func() { _, _ = c.(io.ReaderFrom).ReadFrom(strings.NewReader("via ReadFrom\n")) }()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || line != "via ReadFrom\n" {
		t.Fatalf("read %q, %v", line, err)
	}

	if g.OpenConns() != 1 {
		t.Fatalf("open %d", g.OpenConns())
	}
	c.Close()
	c.Close() // idempotent: released once
	if g.OpenConns() != 0 {
		t.Fatalf("open %d after closing twice, want 0", g.OpenConns())
	}
}

// fakeConn is a connection with a given remote address and no socket.
type fakeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

func TestNonSocketConn(t *testing.T) {
	g := New(Options{MaxConnsPerIP: 1})
	defer g.Close()
	fc := &fakeConn{remote: tcpAddr("192.0.2.1:1")}
	c := g.admit(fc)
	if c == nil {
		t.Fatal("refused")
	}
	if _, ok := c.(syscall.Conn); ok {
		t.Error("a connection with no socket claims to be a syscall.Conn")
	}
	if g.admit(&fakeConn{remote: tcpAddr("[::ffff:192.0.2.1]:2")}) != nil {
		t.Error("the IPv4-mapped form of an address got a slot of its own")
	}
	c.Close()
	if !fc.closed || g.OpenConns() != 0 {
		t.Errorf("closed %v, open %d", fc.closed, g.OpenConns())
	}
	// No IP (a Unix socket): counted, no per-address cap.
	for range 3 {
		if g.admit(&fakeConn{remote: &net.UnixAddr{Name: "@", Net: "unix"}}) == nil {
			t.Fatal("connection without an IP refused by the per-address cap")
		}
	}
}

func TestRefusalsLoggedRateLimited(t *testing.T) {
	clk := newClock()
	h := &records{}
	g := New(Options{MaxConns: 1, Logger: slog.New(h), Now: clk.Now})
	defer g.Close()
	if g.admit(&fakeConn{remote: tcpAddr("192.0.2.1:1")}) == nil {
		t.Fatal("first refused")
	}
	var refused []*fakeConn
	for range 5 {
		fc := &fakeConn{remote: tcpAddr("192.0.2.2:1")}
		if g.admit(fc) != nil {
			t.Fatal("admitted over max_conns")
		}
		refused = append(refused, fc)
		clk.Add(time.Second)
	}
	for _, fc := range refused {
		if !fc.closed {
			t.Error("refused connection not closed")
		}
	}
	if n := len(h.all()); n != 1 {
		t.Fatalf("%d log lines for 5 refusals within 10 s, want 1", n)
	}
	clk.Add(10 * time.Second)
	g.admit(&fakeConn{remote: tcpAddr("192.0.2.2:1")})
	recs := h.all()
	if len(recs) != 2 {
		t.Fatalf("%d log lines, want 2", len(recs))
	}
	if got := attr(recs[1], "suppressed").Int64(); got != 4 {
		t.Errorf("suppressed = %d, want 4", got)
	}
	if got := attr(recs[1], "reason").String(); got != "max_conns" {
		t.Errorf("reason = %q", got)
	}
	metric(t, g, `gateway_connections_refused_total{reason="max_conns"} 6`)
}
