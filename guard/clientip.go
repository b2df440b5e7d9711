package guard

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the client's address of r, canonical
// (netip.Addr.String, IPv4-mapped IPv6 unmapped): the TCP peer's, or, when
// the peer is a trusted proxy, the one its headers name. X-Forwarded-For is
// read when present, else Forwarded (RFC 7239): from the right, skipping
// trusted proxies, the first untrusted address is the client (all trusted:
// the leftmost). An entry that is no address (garbage, an obfuscated
// identifier such as "unknown" or "_hidden") ends the walk: the last
// address before it, or the peer, is the client. Headers from a peer that
// is not trusted are ignored. A remote address with no IP (a Unix socket)
// is returned as it is.
//
// A trusted proxy must set (or append to) X-Forwarded-For, or, if it speaks
// Forwarded only, remove any X-Forwarded-For the client sent: that one
// would be believed first.
func (g *Guard) ClientIP(r *http.Request) string { return addrString(g.clientAddr(r), r) }

// addrString is a as a string, or r's remote host when a is the zero Addr.
func addrString(a netip.Addr, r *http.Request) string {
	if a.IsValid() {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// clientAddr is ClientIP's address; the zero Addr when the peer has none.
func (g *Guard) clientAddr(r *http.Request) netip.Addr {
	peer := parsePeer(r.RemoteAddr)
	if !peer.IsValid() || len(g.trusted) == 0 || !g.isTrusted(peer) {
		return peer
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		return g.walkXFF(xff, peer)
	}
	if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		return g.walkForwarded(fwd, peer)
	}
	return peer
}

func parsePeer(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// walkXFF walks the X-Forwarded-For lists (the header's lines in order:
// together one list) from the right. last is the address of the hop that
// added the rightmost entry (the peer).
func (g *Guard) walkXFF(lines []string, last netip.Addr) netip.Addr {
	for i := len(lines) - 1; i >= 0; i-- {
		s := lines[i]
		for {
			j := strings.LastIndexByte(s, ',')
			a, ok := parseNode(strings.Trim(s[j+1:], " \t"))
			if !ok {
				return last
			}
			if !g.isTrusted(a) {
				return a
			}
			last = a
			if j < 0 {
				break
			}
			s = s[:j]
		}
	}
	return last
}

// walkForwarded walks the Forwarded elements' for= values from the right,
// like walkXFF.
func (g *Guard) walkForwarded(lines []string, last netip.Addr) netip.Addr {
	for i := len(lines) - 1; i >= 0; i-- {
		fors := forwardedFors(lines[i])
		for j := len(fors) - 1; j >= 0; j-- {
			a, ok := parseNode(fors[j])
			if !ok {
				return last
			}
			if !g.isTrusted(a) {
				return a
			}
			last = a
		}
	}
	return last
}

// maxForwardedElements bounds the elements of one Forwarded line that are
// looked at (the rightmost ones are what matter; the rest are dropped).
const maxForwardedElements = 64

// forwardedFors returns the for= value of each element of one Forwarded
// header line (RFC 7239: elements separated by commas, pairs by semicolons,
// values tokens or quoted strings), unquoted; "" for an element without
// one. A syntax error makes its element "" and ends the line: what follows
// cannot be told apart from what the broken element swallowed.
func forwardedFors(s string) []string {
	var fors []string
	add := func(v string) {
		if len(fors) == maxForwardedElements {
			copy(fors, fors[1:])
			fors = fors[:len(fors)-1]
		}
		fors = append(fors, v)
	}
	i := 0
	for {
		forVal, ok := "", true
	pairs:
		for {
			i = skipOWS(s, i)
			if i < len(s) && (s[i] == ',' || s[i] == ';') { // empty pair or element
				if s[i] == ',' {
					break pairs
				}
				i++
				continue
			}
			if i == len(s) {
				break pairs
			}
			k := i
			for i < len(s) && isTchar(s[i]) {
				i++
			}
			key := s[k:i]
			if key == "" || i == len(s) || s[i] != '=' {
				ok = false
				break pairs
			}
			i++
			var val string
			if i < len(s) && s[i] == '"' {
				var b strings.Builder
				i++
				closed := false
				for i < len(s) {
					c := s[i]
					i++
					if c == '"' {
						closed = true
						break
					}
					if c == '\\' && i < len(s) {
						c = s[i]
						i++
					}
					b.WriteByte(c)
				}
				if !closed {
					ok = false
					break pairs
				}
				val = b.String()
			} else {
				v := i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				val = s[v:i]
			}
			if strings.EqualFold(key, "for") {
				forVal = val
			}
			i = skipOWS(s, i)
			if i < len(s) && s[i] == ';' {
				i++
				continue
			}
			if i < len(s) && s[i] != ',' {
				ok = false
			}
			break pairs
		}
		if !ok {
			add("")
			return fors
		}
		add(forVal)
		if i >= len(s) {
			return fors
		}
		i++ // the comma
	}
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether c may be in an RFC 9110 token.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode parses one hop's address: an IP address, optionally with a
// port ("192.0.2.1:80", "[2001:db8::1]:4711"; the port may be an obfuscated
// "_x" in Forwarded), IPv6 optionally bracketed without one. It returns it
// unmapped and without a zone.
func parseNode(s string) (netip.Addr, bool) {
	var host, port string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.Addr{}, false
			}
			port = port[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
	case strings.Count(s, ":") == 1: // IPv4 with a port
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return netip.Addr{}, false
		}
	default:
		host = s
	}
	if port != "" && !validPort(port) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	if s[0] == '[' && !a.Is6() {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// validPort reports whether p is a port number or an RFC 7239 obfuscated
// port ("_" and [A-Za-z0-9._-]).
func validPort(p string) bool {
	if p[0] == '_' {
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return len(p) > 1
	}
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
