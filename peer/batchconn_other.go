//go:build !(linux && (amd64 || arm64))

package peer

import (
	"net"
	"net/netip"
)

// batchReader reads one datagram per call where recvmmsg is not used.
type batchReader struct {
	c *net.UDPConn
	batchCounts
}

func (r *batchReader) init(c *net.UDPConn) error {
	r.c = c
	return nil
}

func (r *batchReader) empty() bool { return true }
func (r *batchReader) full() bool  { return false }

func (r *batchReader) read(p []byte) (int, netip.AddrPort, error) {
	n, ap, err := r.c.ReadFromUDPAddrPort(p)
	if err == nil {
		r.reads.Add(1)
		r.datagrams.Add(1)
	}
	return n, ap, err
}
