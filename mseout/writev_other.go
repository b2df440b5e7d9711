//go:build !unix

package mseout

import (
	"errors"
	"net"
	"syscall"
)

// iovec is unused where there is no writev: viewers are written to by their
// writer goroutine only.
type iovec struct{}

// directConn disables direct writes on this platform.
func directConn(net.Conn) syscall.RawConn { return nil }

func (v *viewer) writevNonblock(net.Buffers) (int, error) {
	return 0, errors.New("mseout: direct writes are not supported on this platform")
}

func (v *viewer) writev(uintptr) bool { return true }
