//go:build unix

package mseout

import (
	"net"
	"syscall"
	"unsafe"
)

// rawConn returns c's socket for non-blocking writes, or nil.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// maxIOV is the most iovecs one writev takes (IOV_MAX on Linux).
const maxIOV = 1024

// rawTransport writes to a plain TCP socket: the fan-out with one
// non-blocking writev per batch (what the socket does not take is left to
// the writer goroutine by the viewer), the writer goroutine through the
// connection (writev too, waiting).
type rawTransport struct {
	nc    net.Conn
	rc    syscall.RawConn
	iov   []syscall.Iovec
	fn    func(fd uintptr) bool // writev of iov, made once so a write allocates nothing
	n     int
	err   error
	wbufs net.Buffers // WriteTo consumes its receiver; a field, so it does not escape
}

func newRawTransport(nc net.Conn) *rawTransport {
	rc := rawConn(nc)
	if rc == nil {
		return nil
	}
	// Write to the socket itself: net.Buffers.WriteTo uses writev only on
	// the net package's own types, not through a wrapper (the connection
	// limits' one); closing still goes through the wrapper.
	w := nc
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		if inner := u.NetConn(); inner != nil {
			w = inner
		}
	}
	t := &rawTransport{nc: w, rc: rc}
	t.fn = t.writev
	return t
}

func (t *rawTransport) direct() bool  { return true }
func (t *rawTransport) backlog() bool { return false }

func (t *rawTransport) write(bufs net.Buffers) error {
	t.wbufs = bufs
	_, err := t.wbufs.WriteTo(t.nc)
	t.wbufs = nil
	return err
}

// tryWrite writes as much of bufs as the socket takes now; it never waits.
// A full socket is not an error (n < total).
func (t *rawTransport) tryWrite(bufs net.Buffers) (int, error) {
	iov := t.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if len(iov) == maxIOV {
			break
		}
		iov = append(iov, syscall.Iovec{Base: &b[0]})
		iov[len(iov)-1].SetLen(len(b))
	}
	t.iov = iov
	if len(iov) == 0 {
		return 0, nil
	}
	t.n, t.err = 0, nil
	err := t.rc.Write(t.fn)
	clear(iov)
	if err == nil {
		err = t.err
	}
	return t.n, err
}

func (t *rawTransport) writev(fd uintptr) bool {
	for {
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(len(t.iov)))
		switch e {
		case 0:
			t.n = int(r)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			t.err = e
		}
		return true // never wait for the socket here
	}
}

// nbWriter is a non-blocking write(2) of one buffer, for deferConn.
type nbWriter struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func (w *nbWriter) init() { w.fn = w.writeFD }

// write sends what the socket takes of b now.
func (w *nbWriter) write(rc syscall.RawConn, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w.b, w.n, w.err = b, 0, nil
	err := rc.Write(w.fn)
	w.b = nil
	if err == nil {
		err = w.err
	}
	return w.n, err
}

func (w *nbWriter) writeFD(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), w.b)
		switch err {
		case nil:
			w.n = n
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			w.err = err
		}
		return true
	}
}
