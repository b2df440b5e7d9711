//go:build unix

package guard

import (
	"bufio"
	"net"
	"syscall"
	"testing"
	"time"
)

// rawWrite writes through rc as the fan-out does (a write(2) on the fd)
// and checks that peer reads it.
func rawWrite(t *testing.T, rc syscall.RawConn, peer net.Conn) {
	t.Helper()
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		_, werr = syscall.Write(int(fd), []byte("raw\n"))
		return werr != syscall.EAGAIN
	}); err != nil || werr != nil {
		t.Fatalf("raw write: %v, %v", err, werr)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(peer).ReadString('\n')
	if err != nil || line != "raw\n" {
		t.Fatalf("peer read %q, %v", line, err)
	}
	_ = peer.SetReadDeadline(time.Time{})
}
