//go:build linux && (amd64 || arm64)

package peer

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"
)

// mmsghdr is struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// batchReader reads datagrams with recvmmsg(2) into fixed buffers, and
// hands them out one by one. Nothing is allocated per datagram.
type batchReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
	slab  []byte
	zones map[uint32]string // IPv6 scope id -> interface name

	n, next int // datagrams in the batch, next to hand out

	recv  func(fd uintptr) bool // bound once: no closure per read
	got   int
	errno syscall.Errno
	batchCounts
}

func (r *batchReader) init(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer: batch reader: %w", err)
	}
	r.rc = rc
	r.hdrs = make([]mmsghdr, readBatch)
	r.iovs = make([]syscall.Iovec, readBatch)
	r.names = make([]syscall.RawSockaddrInet6, readBatch)
	r.slab = make([]byte, readBatch*batchSlot)
	r.zones = map[uint32]string{}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.slab[i*batchSlot]
		r.iovs[i].SetLen(batchSlot)
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.Iovlen = 1
	}
	r.recv = func(fd uintptr) bool {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
		switch e {
		case syscall.EAGAIN, syscall.EINTR:
			return false // wait until the socket is readable (again)
		}
		r.got, r.errno = int(n), e
		return true
	}
	return nil
}

// empty reports whether the next read reads the socket.
func (r *batchReader) empty() bool { return r.next >= r.n }

// full reports whether the last read of the socket filled the batch.
func (r *batchReader) full() bool { return r.n == len(r.hdrs) }

func (r *batchReader) read(p []byte) (int, netip.AddrPort, error) {
	for r.next >= r.n {
		for i := range r.hdrs {
			r.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
			r.hdrs[i].hdr.Flags = 0
			r.hdrs[i].n = 0
		}
		r.got, r.errno = 0, 0
		if err := r.rc.Read(r.recv); err != nil {
			return 0, netip.AddrPort{}, err
		}
		if r.errno != 0 {
			return 0, netip.AddrPort{}, os.NewSyscallError("recvmmsg", r.errno)
		}
		r.n, r.next = r.got, 0
		r.reads.Add(1)
		r.datagrams.Add(uint64(r.got))
	}
	i := r.next
	r.next++
	n := copy(p, r.slab[i*batchSlot:i*batchSlot+int(r.hdrs[i].n)])
	return n, r.addr(i), nil
}

// addr decodes the sender of datagram i.
func (r *batchReader) addr(i int) netip.AddrPort {
	sa := &r.names[i]
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		pb := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(pb[0])<<8|uint16(pb[1]))
	case syscall.AF_INET6:
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(r.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, uint16(pb[0])<<8|uint16(pb[1]))
	}
	return netip.AddrPort{}
}

// zone names an interface index, as the net package does, remembered.
func (r *batchReader) zone(idx uint32) string {
	if z, ok := r.zones[idx]; ok {
		return z
	}
	z := fmt.Sprint(idx)
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		z = ifi.Name
	}
	r.zones[idx] = z
	return z
}
