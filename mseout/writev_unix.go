//go:build unix

package mseout

import (
	"net"
	"syscall"
	"unsafe"
)

type iovec = syscall.Iovec

// directConn returns the raw socket for non-blocking direct writes, or nil.
func directConn(c net.Conn) syscall.RawConn {
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

// writevNonblock writes as much of bufs as the socket takes now; it never
// waits. A full socket is not an error (n < total).
func (v *viewer) writevNonblock(bufs net.Buffers) (int, error) {
	iov := v.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if len(iov) == maxIOV {
			break
		}
		iov = append(iov, syscall.Iovec{Base: &b[0], Len: uint64(len(b))})
	}
	v.iov = iov
	if len(iov) == 0 {
		return 0, nil
	}
	v.wn, v.werr = 0, nil
	err := v.rc.Write(v.writevFn)
	clear(iov)
	if err == nil {
		err = v.werr
	}
	return v.wn, err
}

// writev is the body of a non-blocking writev of v.iov, made into a func
// value once per viewer (v.writevFn) so that a write allocates nothing.
func (v *viewer) writev(fd uintptr) bool {
	for {
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v.iov[0])), uintptr(len(v.iov)))
		switch e {
		case 0:
			v.wn = int(r)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			v.werr = e
		}
		return true // never wait for the socket here
	}
}
