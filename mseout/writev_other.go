//go:build !unix

package mseout

import (
	"net"
	"syscall"
)

// Without writev (and non-blocking writes through syscall.RawConn) every
// viewer is written to by its writer goroutine.

func rawConn(net.Conn) syscall.RawConn { return nil }

func newRawTransport(net.Conn) transport { return nil }

type nbWriter struct{}

func (*nbWriter) init() {}

func (*nbWriter) write(syscall.RawConn, []byte) (int, error) { return 0, errNoDirectWrite }
