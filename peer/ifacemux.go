package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
)

// errNoSocket: a candidate's address has no socket (it was not bound).
var errNoSocket = errors.New("peer: no ICE socket on that address")

// interfaceMux is the ICE UDP port on every usable interface address, one
// socket per address, as Pion's multi mux, but it starts on any network
// state: an address that cannot be bound yet (an IPv6 address still
// tentative during duplicate address detection, in containers, at boot, on
// a new veth) is skipped and logged, and the interfaces are scanned again
// every rescan, so that it and addresses that appear later are picked up
// without a restart. A port that is taken (EADDRINUSE) or not allowed
// (EACCES) is a configuration error: it fails the start.
type interfaceMux struct {
	port            int
	includeLoopback bool
	filter          func(net.IP) bool
	log             *slog.Logger
	newMux          func(*net.UDPConn) (ice.UDPMux, error)

	mu      sync.RWMutex
	byAddr  map[string]ice.UDPMux // "ip:port" as Pion's candidates name it
	bound   map[netip.Addr]bool   // addresses with a socket
	skipped map[netip.Addr]string // address -> why it was not bound (logged once per reason)
	closed  bool

	stop chan struct{}
	done chan struct{} // closed when the rescan loop ends; nil before it starts
}

func newInterfaceMux(port int, includeLoopback bool, filter func(net.IP) bool, rescan time.Duration, log *slog.Logger, newMux func(*net.UDPConn) (ice.UDPMux, error)) (*interfaceMux, error) {
	m := &interfaceMux{
		port: port, includeLoopback: includeLoopback, filter: filter, log: log, newMux: newMux,
		byAddr: map[string]ice.UDPMux{}, bound: map[netip.Addr]bool{}, skipped: map[netip.Addr]string{},
		stop: make(chan struct{}),
	}
	if err := m.scan(); err != nil {
		_ = m.Close() // no rescan loop yet
		return nil, err
	}
	m.done = make(chan struct{})
	if len(m.byAddr) == 0 {
		log.Warn("no interface address could be bound for ICE yet; publishers cannot connect until one can (rescanning)", "every", rescan)
	}
	go m.rescanLoop(rescan)
	return m, nil
}

func (m *interfaceMux) rescanLoop(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if err := m.scan(); err != nil {
				m.log.Warn("ICE interface rescan", "err", err)
			}
		}
	}
}

// scan binds every usable address that has no socket yet.
func (m *interfaceMux) scan() error {
	addrs, err := usableAddrs(m.includeLoopback, m.filter)
	if err != nil {
		return fmt.Errorf("peer: listing interfaces: %w", err)
	}
	for _, a := range addrs {
		m.mu.RLock()
		skip := m.bound[a] || m.closed
		m.mu.RUnlock()
		if skip {
			continue
		}
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: a.AsSlice(), Port: m.port, Zone: a.Zone()})
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) {
				return fmt.Errorf("peer: ICE UDP port %d on %s: %w", m.port, a, err)
			}
			m.mu.Lock()
			if m.skipped[a] != err.Error() {
				m.skipped[a] = err.Error()
				m.log.Warn("ICE address not bound yet (will retry)", "addr", a.String(), "err", err)
			}
			m.mu.Unlock()
			continue
		}
		_ = conn.SetReadBuffer(udpSocketBuffer)
		_ = conn.SetWriteBuffer(udpSocketBuffer)
		mux, err := m.newMux(conn)
		if err != nil {
			conn.Close()
			return fmt.Errorf("peer: ICE UDP port on %s: %w", a, err)
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			_ = mux.Close()
			return nil
		}
		for _, la := range mux.GetListenAddresses() {
			m.byAddr[la.String()] = mux
		}
		m.bound[a] = true
		_, wasSkipped := m.skipped[a]
		delete(m.skipped, a)
		m.mu.Unlock()
		if wasSkipped {
			m.log.Info("ICE address bound", "addr", conn.LocalAddr().String())
		}
	}
	return nil
}

// usableAddrs lists the interface addresses ICE may use, as Pion does: up
// interfaces, loopback only when asked, no IPv4-compatible or site-local
// IPv6, then the filter.
func usableAddrs(includeLoopback bool, filter func(net.IP) bool) ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || (iface.Flags&net.FlagLoopback != 0 && !includeLoopback) {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr()
			if ip.IsLoopback() && !includeLoopback {
				continue
			}
			if ip.Is6() {
				b := ip.As16()
				ipv4Compatible := [12]byte(b[:12]) == [12]byte{}
				siteLocal := b[0] == 0xfe && b[1]&0xc0 == 0xc0
				if ip.Is4In6() || ipv4Compatible || siteLocal {
					continue
				}
				if ip.IsLinkLocalUnicast() {
					ip = ip.WithZone(iface.Name)
				}
			}
			if filter != nil && !filter(ip.AsSlice()) {
				continue
			}
			out = append(out, ip)
		}
	}
	return out, nil
}

func (m *interfaceMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	m.mu.RLock()
	mux := m.byAddr[addr.String()]
	m.mu.RUnlock()
	if mux == nil {
		return nil, errNoSocket
	}
	return mux.GetConn(ufrag, addr)
}

func (m *interfaceMux) RemoveConnByUfrag(ufrag string) {
	for _, mux := range m.muxes() {
		mux.RemoveConnByUfrag(ufrag)
	}
}

func (m *interfaceMux) GetListenAddresses() []net.Addr {
	var out []net.Addr
	for _, mux := range m.muxes() {
		out = append(out, mux.GetListenAddresses()...)
	}
	return out
}

// muxes returns each socket's mux once.
func (m *interfaceMux) muxes() []ice.UDPMux {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := map[ice.UDPMux]bool{}
	var out []ice.UDPMux
	for _, mux := range m.byAddr {
		if !seen[mux] {
			seen[mux] = true
			out = append(out, mux)
		}
	}
	return out
}

func (m *interfaceMux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	if m.done != nil {
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
		}
	}
	var err error
	for _, mux := range m.muxes() {
		if e := mux.Close(); e != nil {
			err = e
		}
	}
	return err
}
