package peer

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// readBatch is how many datagrams one read of the ICE socket may take.
const readBatch = 32

// batchSlot is the size of each datagram buffer of a batch: Pion's own
// receive buffer size (ice's receiveMTU), so nothing Pion would take whole
// is cut.
const batchSlot = 8192

// BatchConn is a UDP socket whose reads are batched: on Linux one
// recvmmsg(2) takes every datagram waiting (up to 32) and ReadFromAddrPort
// hands them out one at a time from memory, so a socket carrying many
// publishers costs one system call per batch instead of one per packet.
// Writes go straight to the socket. It is what the engine hands Pion's UDP
// mux (ice.UDPMuxParams.UDPConn; it implements ice.AddrPortReaderWriter, so
// the mux reads without allocating), and the load tool's ingest floor reads
// with it too. Elsewhere than Linux it reads one datagram per call.
//
// Reads are meant for one goroutine at a time (they are serialized).
type BatchConn struct {
	conn *net.UDPConn
	mu   sync.Mutex // one reader at a time
	r    batchReader

	coalesce time.Duration
	last     time.Time // when the last batch was read
	lastFull bool
}

// batchCounts are a reader's counters, read without its lock.
type batchCounts struct {
	datagrams, reads atomic.Uint64
}

// DefaultReadCoalesce is how long the engine's socket reads wait, at most,
// for more datagrams when a batch was not full (Config.ReadCoalesce).
const DefaultReadCoalesce = time.Millisecond

// SetCoalesce makes a read of the socket that follows a batch that was not
// full wait until d has passed since that batch was read, so that the
// datagrams arriving meanwhile come in one batch: fewer reads, and fewer
// wake-ups of the goroutines the datagrams go to, for at most d of added
// latency. A full batch is followed by a read at once, so a busy socket
// is never held back. 0 (the default) reads as soon as the batch is used up.
// Call it before the first read.
func (b *BatchConn) SetCoalesce(d time.Duration) { b.coalesce = max(d, 0) }

// NewBatchConn wraps c; c is closed by Close.
func NewBatchConn(c *net.UDPConn) (*BatchConn, error) {
	b := &BatchConn{conn: c}
	if err := b.r.init(c); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadFromAddrPort reads one datagram into p (cut to len(p), as a UDP
// socket does) and returns its length and sender.
func (b *BatchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.coalesce > 0 && b.r.empty() {
		if !b.lastFull && !b.last.IsZero() {
			if w := b.coalesce - time.Since(b.last); w > 0 {
				time.Sleep(w)
			}
		}
		n, ap, err := b.r.read(p)
		b.last, b.lastFull = time.Now(), b.r.full()
		return n, ap, err
	}
	return b.r.read(p)
}

// ReadFrom is ReadFromAddrPort with a *net.UDPAddr (net.PacketConn).
func (b *BatchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, ap, err := b.ReadFromAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// Stats returns how many datagrams were read and in how many reads (system
// calls, on Linux).
func (b *BatchConn) Stats() (datagrams, reads uint64) {
	return b.r.datagrams.Load(), b.r.reads.Load()
}

// WriteToAddrPort sends p to addr.
func (b *BatchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	return b.conn.WriteToUDPAddrPort(p, addr)
}

// WriteTo sends p to addr.
func (b *BatchConn) WriteTo(p []byte, addr net.Addr) (int, error) { return b.conn.WriteTo(p, addr) }

// Close closes the socket; a blocked read returns.
func (b *BatchConn) Close() error { return b.conn.Close() }

// LocalAddr is the socket's address (a *net.UDPAddr).
func (b *BatchConn) LocalAddr() net.Addr { return b.conn.LocalAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (b *BatchConn) SetDeadline(t time.Time) error { return b.conn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (b *BatchConn) SetReadDeadline(t time.Time) error { return b.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (b *BatchConn) SetWriteDeadline(t time.Time) error { return b.conn.SetWriteDeadline(t) }
