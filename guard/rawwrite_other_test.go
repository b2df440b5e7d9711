//go:build !unix

package guard

import (
	"net"
	"syscall"
	"testing"
)

func rawWrite(*testing.T, syscall.RawConn, net.Conn) {}
