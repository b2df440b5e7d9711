package guard

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/mseway/mseway/httpapi"
)

// Listener wraps ln so that each accepted connection takes a slot: one of
// MaxConns, and one of MaxConnsPerIP of its TCP peer's address (trusted
// proxies take none of those: everyone behind them shares their address).
// A connection over either cap is closed at once (with a reset, so the
// refusal costs no TIME_WAIT) and counted, and Accept goes on to the next.
// The slot is released when the connection is closed, whoever closes it: a
// connection hijacked by net/http (a WebSocket) is the wrapped one too.
//
// A connection that is a socket (syscall.Conn, as *net.TCPConn) stays one
// through the wrapper: SyscallConn gives the raw socket for non-blocking
// writes, ReadFrom keeps sendfile and splice.
func (g *Guard) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if wc := l.g.admit(c); wc != nil {
			return wc, nil
		}
	}
}

// admit takes the slots of c and returns it wrapped, or closes it and
// returns nil when it is over a cap.
func (g *Guard) admit(c net.Conn) net.Conn {
	peer := peerAddr(c.RemoteAddr())
	countIP := peer.IsValid() && !g.isTrusted(peer)
	if peer.IsValid() {
		peer = httpapi.AddrGroup(peer) // an IPv6 client counts by its /64
	}
	reason, limit := "", 0
	g.mu.Lock()
	perIP := countIP && g.maxPerIP > 0
	switch {
	case g.maxConns > 0 && g.open >= g.maxConns:
		reason, limit = "max_conns", g.maxConns
	case perIP && g.perIP[peer] >= g.maxPerIP:
		reason, limit = "max_conns_per_ip", g.maxPerIP
	default:
		g.open++
		if perIP {
			g.perIP[peer]++
		}
	}
	g.mu.Unlock()
	if reason != "" {
		g.refuse(c, peer, reason, limit)
		return nil
	}
	base := &conn{Conn: c, g: g}
	if perIP {
		base.ip = peer
	}
	if sc, ok := c.(syscall.Conn); ok {
		return &sysConn{conn: base, sc: sc}
	}
	return base
}

func (g *Guard) refuse(c net.Conn, peer netip.Addr, reason string, limit int) {
	if reason == "max_conns" {
		g.refusedMax.Add(1)
	} else {
		g.refusedPerIP.Add(1)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	g.connLog.log(g, "guard: connection refused", "reason", reason, "limit", limit, "peer", peer.String())
}

// release gives back the slots of a closed connection (ip: the per-address
// one, when it took one).
func (g *Guard) release(ip netip.Addr) {
	g.mu.Lock()
	g.open--
	if ip.IsValid() {
		if n := g.perIP[ip] - 1; n > 0 {
			g.perIP[ip] = n
		} else {
			delete(g.perIP, ip)
		}
	}
	g.mu.Unlock()
}

// peerAddr is the unmapped IP address of a connection's remote address, or
// the zero Addr when it has none (a Unix socket, a pipe).
func peerAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().WithZone("")
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// conn is an accepted connection holding its slots until closed.
type conn struct {
	net.Conn
	g    *Guard
	ip   netip.Addr // the per-address slot taken, if valid
	once sync.Once
}

// Close closes the connection and, the first time, releases its slots.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.g.release(c.ip) })
	return err
}

// NetConn returns the connection under the wrapper, for writing to it.
// Close the wrapper, never it: that releases the slots.
func (c *conn) NetConn() net.Conn { return c.Conn }

// sysConn is a conn over a socket: it keeps the socket reachable.
type sysConn struct {
	*conn
	sc syscall.Conn
}

// SyscallConn returns the raw socket of the connection.
func (c *sysConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// ReadFrom lets net/http send files and splice through the socket.
func (c *sysConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
