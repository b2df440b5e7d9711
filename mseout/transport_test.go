package mseout_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/internal/testkit/testcert"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/mseout"
)

// The viewer tests run over every path a viewer's bytes can take.
type netMode string

const (
	plainTCP  netMode = "ws"         // raw socket: non-blocking writev from the fan-out
	tlsDirect netMode = "wss"        // TLS over DirectWriteListener: sealed and sent by the fan-out
	tlsWriter netMode = "wss-writer" // TLS from a listener of its own: writer goroutine only
	wrapped   netMode = "ws-wrapped" // a connection that is no socket (a proxy's): writer goroutine only
	panicky   netMode = "ws-panicky" // raw sockets whose writes panic while armed (not in allModes)
)

var allModes = []netMode{plainTCP, tlsDirect, tlsWriter, wrapped}

// testCert serves the TLS modes; made in TestMain.
var testCert *testcert.Cert

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mseout-test-cert")
	if err != nil {
		panic(err)
	}
	if testCert, err = testcert.Write(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// eachMode runs fn as a subtest per mode.
func eachMode(t *testing.T, fn func(t *testing.T, m netMode)) {
	for _, m := range allModes {
		t.Run(string(m), func(t *testing.T) { fn(t, m) })
	}
}

// serveRegistry serves r's viewer socket at /ws/watch/{name} over mode and
// returns the base URL (ws://.../ws/watch/ or wss://...).
func serveRegistry(t testing.TB, m netMode, r *mseout.Registry) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.ServeViewer(w, req, strings.TrimPrefix(req.URL.Path, "/ws/watch/"))
	}))
	cert, err := tls.LoadX509KeyPair(testCert.CertFile, testCert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	switch m {
	case plainTCP:
		srv.Start()
	case wrapped:
		srv.Listener = notSocketListener{srv.Listener}
		srv.Start()
	case panicky:
		srv.Listener = panickyListener{srv.Listener}
		srv.Start()
	case tlsDirect:
		srv.Listener = mseout.DirectWriteListener(srv.Listener)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
	case tlsWriter:
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
	}
	t.Cleanup(func() {
		r.Close()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/watch/"
}

// clientTLS is the TLS config for url (nil for ws://).
func clientTLS(url string) *tls.Config {
	if strings.HasPrefix(url, "wss://") {
		return testCert.ClientConfig()
	}
	return nil
}

// wsDialer is a gorilla dialer for url's scheme.
func wsDialer(url string) *websocket.Dialer {
	d := *websocket.DefaultDialer
	d.TLSClientConfig = clientTLS(url)
	return &d
}

// notSocketListener hides the socket under its connections (as a proxy's
// in-process pipe would): no syscall.Conn, so no direct writes.
type notSocketListener struct{ net.Listener }

type notSocketConn struct{ net.Conn }

func (l notSocketListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return notSocketConn{c}, nil
}

// Segments after the join burst are written by the fan-out itself where the
// connection allows it (a raw socket, TLS over DirectWriteListener) and by
// the writer goroutine elsewhere; every path delivers them whole, in order.
func TestDirectWritesWhereTheTransportAllows(t *testing.T) {
	eachMode(t, func(t *testing.T, mode netMode) {
		r, base := newServerOn(t, mode, nil)
		pub := goLive(t, r, "d", "k")
		c := join(t, base+"d", "k")
		for i := range 50 {
			pub.WriteSegment(segment(fmt.Sprint("seg", i), false))
			expectBinary(t, c, fmt.Sprint("seg", i))
		}
		// Which path a given segment takes depends on timing (a segment
		// queued while the previous write is in flight goes through the
		// writer goroutine): count, do not insist on a share.
		direct := metric(t, r, "gateway_viewer_direct_writes_total")
		switch mode {
		case plainTCP, tlsDirect:
			if direct == 0 {
				t.Fatal("no segment written directly by the fan-out")
			}
		default:
			if direct != 0 {
				t.Fatalf("%d direct writes on a connection that allows none", direct)
			}
		}
	})
}

// armed makes every write of a panickyConn panic.
var armed atomic.Bool

// panickyListener's connections panic on write while armed: through the
// raw socket's non-blocking write (the fan-out's direct path) and through
// Write (the writer goroutine's path).
type panickyListener struct{ net.Listener }

type panickyConn struct {
	net.Conn // an interface: writes of net.Buffers come through Write
	tcp      *net.TCPConn
}

type panickyRaw struct{ syscall.RawConn }

func (l panickyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return panickyConn{c, c.(*net.TCPConn)}, nil
}

func (c panickyConn) Write(b []byte) (int, error) {
	if armed.Load() {
		panic("test: write on a broken connection")
	}
	return c.Conn.Write(b)
}

func (c panickyConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.tcp.SyscallConn()
	return panickyRaw{rc}, err
}

func (r panickyRaw) Write(f func(uintptr) bool) error {
	if armed.Load() {
		panic("test: direct write on a broken connection")
	}
	return r.RawConn.Write(f)
}

// A panic while writing to one viewer, on either write path, closes that
// viewer only: it is logged and counted, the stream goes on for the other
// viewers, and the registry still closes cleanly (no goroutine is leaked).
func TestViewerPanicIsContained(t *testing.T) {
	cfg := configs.Default()
	r := mseout.NewRegistry(mseout.Options{Settings: cfg.StreamSettings, Limits: cfg.Limits,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	base := serveRegistry(t, panicky, r)
	pub := goLive(t, r, "p", "k0")

	t.Cleanup(func() { armed.Store(false) })
	before := contain.Counts()
	key := "k0"
	for _, path := range []string{"viewer direct write", "viewer writer"} {
		c := join(t, base+"p", key)
		armed.Store(true)
		if path == "viewer direct write" {
			pub.WriteSegment(segment("boom", false)) // the sweep writes it directly
		} else {
			if err := c.SendText("not json"); err != nil { // the error reply goes through the writer
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for contain.Counts()[path] == before[path] {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no panic contained", path)
			}
			time.Sleep(5 * time.Millisecond)
		}
		armed.Store(false)
		for {
			_, err := c.Next(5 * time.Second)
			if errors.Is(err, viewerclient.ErrTimeout) {
				t.Fatalf("%s: the viewer whose write panicked is still connected", path)
			}
			if err != nil {
				break
			}
		}
		// The stream goes on: a new viewer plays.
		key = "k-after-" + path
		pub.WriteSegment(segment(key, true))
		join(t, base+"p", key).Close()
	}
}
