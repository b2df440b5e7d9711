package mseout

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// transport is the path a viewer's WebSocket frames take to its connection.
// Every viewer has one, whatever its connection is: a raw TCP socket
// (non-blocking writev from the fan-out), TLS over a socket accepted by a
// DirectWriteListener (records sealed by the fan-out, written without
// blocking), or anything else (a TLS connection from another listener, a
// platform without writev, a proxy's pipe): then every write goes through
// the viewer's writer goroutine.
type transport interface {
	// direct reports whether tryWrite may be used.
	direct() bool
	// tryWrite writes bufs without waiting and returns how many of their
	// bytes it took; what it took may still wait in the transport (backlog).
	tryWrite(bufs net.Buffers) (int, error)
	// write writes the backlog, then bufs, waiting for the connection
	// (bounded by its write deadline).
	write(bufs net.Buffers) error
	// backlog reports whether bytes taken by tryWrite wait to be written.
	backlog() bool
}

// newTransport picks the fastest path nc allows.
func newTransport(nc net.Conn) transport {
	if tc, ok := nc.(*tls.Conn); ok {
		if dc, ok := tc.NetConn().(*deferConn); ok && dc.rc != nil {
			dc.becomeViewer()
			return &tlsTransport{tc: tc, dc: dc}
		}
		return streamTransport{nc}
	}
	if rt := newRawTransport(nc); rt != nil {
		return rt
	}
	return streamTransport{nc}
}

var errNoDirectWrite = errors.New("mseout: no direct writes on this connection")

// streamTransport writes through the connection's own Write, from the
// writer goroutine only.
type streamTransport struct{ nc net.Conn }

func (streamTransport) direct() bool                        { return false }
func (streamTransport) backlog() bool                       { return false }
func (t streamTransport) tryWrite(net.Buffers) (int, error) { return 0, errNoDirectWrite }
func (t streamTransport) write(bufs net.Buffers) error {
	_, err := bufs.WriteTo(t.nc) // consumes a copy of the slice header only
	return err
}

// maxRecord is the largest TLS record payload (RFC 8446 5.1).
const maxRecord = 16 << 10

// stagePool holds the buffers that coalesce small frames into full records.
var stagePool = sync.Pool{New: func() any { b := make([]byte, 0, maxRecord); return &b }}

// tlsTransport seals a viewer's frames into TLS records over a deferConn,
// which never blocks: a record the socket does not take whole waits in it.
// Frames of one batch are coalesced into full 16 KiB records (each Write of
// a tls.Conn is at least one record: one seal and one send). The fan-out
// (tryWrite) stops sealing at the first record the socket did not take: at
// most one record waits in the deferConn, and the rest of the batch stays
// plaintext in the viewer's queue, as with a raw socket. The writer
// goroutine (write) sends each such record before it seals the next.
type tlsTransport struct {
	tc *tls.Conn
	dc *deferConn
}

func (t *tlsTransport) direct() bool  { return true }
func (t *tlsTransport) backlog() bool { return t.dc.pending() }

func (t *tlsTransport) tryWrite(bufs net.Buffers) (int, error) {
	return t.seal(bufs, false)
}

func (t *tlsTransport) write(bufs net.Buffers) error {
	if err := t.dc.flush(); err != nil {
		return err
	}
	_, err := t.seal(bufs, true)
	return err
}

// seal writes bufs to the TLS connection, coalescing small frames, and
// returns how many plaintext bytes it sealed. After each record that did not
// go out whole it stops (fan-out) or waits for it (wait).
func (t *tlsTransport) seal(bufs net.Buffers, wait bool) (int, error) {
	sealed := 0
	send := func(p []byte) (more bool, err error) {
		if _, err := t.tc.Write(p); err != nil {
			return false, err
		}
		sealed += len(p)
		if !t.dc.pending() {
			return true, nil
		}
		if !wait {
			return false, nil
		}
		return true, t.dc.flush()
	}
	sp := stagePool.Get().(*[]byte)
	defer stagePool.Put(sp)
	stage := (*sp)[:0]
	for i, b := range bufs {
		last := i == len(bufs)-1
		for len(b) > 0 {
			if len(stage) == 0 && (len(b) >= maxRecord || last) {
				// A record straight from the frame, without a copy: a whole
				// one, or the rest of the batch (a lone frame is never copied).
				n := min(len(b), maxRecord)
				more, err := send(b[:n])
				if !more {
					return sealed, err
				}
				b = b[n:]
				continue
			}
			c := copy(stage[len(stage):maxRecord], b)
			stage = stage[:len(stage)+c]
			b = b[c:]
			if len(stage) == maxRecord {
				more, err := send(stage)
				if !more {
					return sealed, err
				}
				stage = stage[:0]
			}
		}
	}
	if len(stage) > 0 {
		if _, err := send(stage); err != nil {
			return sealed, err
		}
	}
	return sealed, nil
}

// DirectWriteListener wraps a listener whose connections will carry TLS
// (pass it to http.Server.ServeTLS or tls.NewListener): viewers over those
// connections are then written to by the fan-out without blocking, like
// viewers over plain TCP, instead of waking a goroutine per message. Other
// requests on those connections are not affected.
func DirectWriteListener(ln net.Listener) net.Listener { return deferListener{ln} }

type deferListener struct{ net.Listener }

func (l deferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newDeferConn(c), nil
}

// maxDeferred bounds what a viewer's deferConn holds: one record of the
// fan-out's, plus TLS's own messages (a KeyUpdate answer) written while the
// socket is full. A client that makes it hold more is cut off.
const maxDeferred = 1 << 20

var errDeferredFull = errors.New("mseout: TLS viewer's unsent records over the limit")

// deferConn is the TCP connection under a TLS connection. Until it carries
// a viewer it is the connection itself. Once it does (becomeViewer), a Write
// never waits, whichever goroutine makes it (the fan-out sealing frames, the
// TLS layer answering a KeyUpdate from the read loop): it sends what the
// socket takes now and keeps the rest, in order, for flush (the viewer's
// writer goroutine, with a write deadline).
type deferConn struct {
	net.Conn
	rc syscall.RawConn // nil: no non-blocking writes on this connection

	mu     sync.Mutex
	viewer bool
	rest   []byte // bytes taken and not yet sent
	nb     nbWriter
	// restLen is len(rest), readable without mu: flush holds mu for a whole
	// blocking write, and the fan-out asks under the viewer's lock.
	restLen atomic.Int64
}

func newDeferConn(c net.Conn) *deferConn {
	dc := &deferConn{Conn: c}
	if rc := rawConn(c); rc != nil {
		dc.rc = rc
		dc.nb.init()
	}
	return dc
}

func (c *deferConn) becomeViewer() {
	c.mu.Lock()
	c.viewer = true
	c.mu.Unlock()
}

func (c *deferConn) pending() bool { return c.restLen.Load() > 0 }

func (c *deferConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.viewer {
		return c.Conn.Write(b)
	}
	all := len(b)
	if len(c.rest) == 0 {
		n, err := c.nb.write(c.rc, b)
		if err != nil {
			return n, err
		}
		b = b[n:]
	}
	if len(c.rest)+len(b) > maxDeferred {
		return 0, errDeferredFull
	}
	c.rest = append(c.rest, b...)
	c.restLen.Store(int64(len(c.rest)))
	return all, nil
}

// flush sends the kept bytes, waiting (bounded by the write deadline).
func (c *deferConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rest) == 0 {
		return nil
	}
	n, err := c.Conn.Write(c.rest)
	if err != nil {
		c.rest = c.rest[n:]
	} else {
		c.rest = nil // drop the buffer: a viewer that keeps up holds none
	}
	c.restLen.Store(int64(len(c.rest)))
	return err
}
