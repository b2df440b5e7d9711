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
		if dc, ok := tc.NetConn().(*deferConn); ok {
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

// tlsTransport seals a viewer's frames into TLS records. Frames of one batch
// are coalesced into full 16 KiB records (each Write of a tls.Conn is at
// least one record: one seal and one send). Through tryWrite the fan-out
// seals and sends without blocking: the records the socket does not take
// wait in the deferConn, and the writer goroutine sends them.
type tlsTransport struct {
	tc *tls.Conn
	dc *deferConn
}

func (t *tlsTransport) direct() bool  { return t.dc.rc != nil }
func (t *tlsTransport) backlog() bool { return t.dc.pending() }

func (t *tlsTransport) tryWrite(bufs net.Buffers) (int, error) {
	t.dc.setNonblock(true)
	n, err := t.seal(bufs)
	t.dc.setNonblock(false)
	return n, err
}

func (t *tlsTransport) write(bufs net.Buffers) error {
	if err := t.dc.flush(); err != nil {
		return err
	}
	_, err := t.seal(bufs)
	return err
}

// seal writes bufs to the TLS connection, coalescing small ones.
func (t *tlsTransport) seal(bufs net.Buffers) (int, error) {
	if len(bufs) == 1 {
		return t.tc.Write(bufs[0])
	}
	sp := stagePool.Get().(*[]byte)
	defer stagePool.Put(sp)
	stage := (*sp)[:0]
	total := 0
	for _, b := range bufs {
		total += len(b)
		for len(b) > 0 {
			if len(stage) == 0 && len(b) >= maxRecord {
				// Whole records straight from the frame, without a copy.
				n := len(b) - len(b)%maxRecord
				if _, err := t.tc.Write(b[:n]); err != nil {
					return 0, err
				}
				b = b[n:]
				continue
			}
			c := copy(stage[len(stage):maxRecord], b)
			stage = stage[:len(stage)+c]
			b = b[c:]
			if len(stage) == maxRecord {
				if _, err := t.tc.Write(stage); err != nil {
					return 0, err
				}
				stage = stage[:0]
			}
		}
	}
	if len(stage) > 0 {
		if _, err := t.tc.Write(stage); err != nil {
			return 0, err
		}
	}
	return total, nil
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

// deferConn is the TCP connection under a TLS viewer. In non-blocking mode a
// Write sends what the socket takes now and keeps the rest, in order, for
// the next blocking Write or flush; it never waits. Out of that mode it is
// the connection itself (after the kept bytes).
type deferConn struct {
	net.Conn
	rc syscall.RawConn // nil: no non-blocking writes on this connection

	mu       sync.Mutex
	nonblock bool
	rest     []byte // bytes taken in non-blocking mode and not yet sent
	nb       nbWriter
	// restLen is len(rest), readable without mu: mu may be held for a whole
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

func (c *deferConn) setNonblock(on bool) {
	c.mu.Lock()
	c.nonblock = on
	c.mu.Unlock()
}

func (c *deferConn) pending() bool { return c.restLen.Load() > 0 }

func (c *deferConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nonblock && c.rc != nil {
		all := len(b)
		if len(c.rest) == 0 {
			n, err := c.nb.write(c.rc, b)
			if err != nil {
				return n, err
			}
			b = b[n:]
		}
		c.rest = append(c.rest, b...)
		c.restLen.Store(int64(len(c.rest)))
		return all, nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// flush sends the kept bytes, waiting (bounded by the write deadline).
func (c *deferConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *deferConn) flushLocked() error {
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
