package guard

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func trustedGuard(t testing.TB) *Guard {
	var ps []netip.Prefix
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1/32", "2001:db8:ffff::/48", "::ffff:192.168.0.0/112"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	g := New(Options{TrustedProxies: ps})
	t.Cleanup(g.Close)
	return g
}

func TestClientIP(t *testing.T) {
	g := trustedGuard(t)
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		fwd    []string
		want   string
	}{
		{"no headers", "203.0.113.5:1234", nil, nil, "203.0.113.5"},
		{"no headers, trusted peer", "10.0.0.1:1234", nil, nil, "10.0.0.1"},
		{"IPv6 peer", "[2001:DB8::5]:443", nil, nil, "2001:db8::5"},
		{"XFF from untrusted peer ignored", "203.0.113.5:1", []string{"198.51.100.7"}, nil, "203.0.113.5"},
		{"Forwarded from untrusted peer ignored", "203.0.113.5:1", nil, []string{"for=198.51.100.7"}, "203.0.113.5"},
		{"XFF one hop", "10.0.0.1:1", []string{"198.51.100.7"}, nil, "198.51.100.7"},
		{"XFF chain with trusted hops", "10.0.0.1:1", []string{"198.51.100.7, 10.0.0.2,10.9.9.9"}, nil, "198.51.100.7"},
		{"XFF spoofed left of the client", "10.0.0.1:1", []string{"1.1.1.1, 198.51.100.7, 10.0.0.2"}, nil, "198.51.100.7"},
		{"XFF all trusted: leftmost", "10.0.0.1:1", []string{"10.0.0.3, 127.0.0.1, 10.0.0.2"}, nil, "10.0.0.3"},
		{"XFF over several lines", "10.0.0.1:1", []string{"1.1.1.1", "198.51.100.7, 10.0.0.2"}, nil, "198.51.100.7"},
		{"XFF last line trusted", "10.0.0.1:1", []string{"198.51.100.7", "10.0.0.2"}, nil, "198.51.100.7"},
		{"XFF garbage", "10.0.0.1:1", []string{"not an address"}, nil, "10.0.0.1"},
		{"XFF empty", "10.0.0.1:1", []string{""}, nil, "10.0.0.1"},
		{"XFF commas only", "10.0.0.1:1", []string{",,,"}, nil, "10.0.0.1"},
		{"XFF garbage behind a trusted hop", "10.0.0.1:1", []string{"198.51.100.7, bogus, 10.0.0.2"}, nil, "10.0.0.2"},
		{"XFF unknown", "10.0.0.1:1", []string{"unknown"}, nil, "10.0.0.1"},
		{"XFF IPv4 with port", "10.0.0.1:1", []string{"198.51.100.7:5555"}, nil, "198.51.100.7"},
		{"XFF bracketed IPv6 with port", "10.0.0.1:1", []string{"[2001:db8::1]:443"}, nil, "2001:db8::1"},
		{"XFF bracketed IPv6", "10.0.0.1:1", []string{"[2001:db8::1]"}, nil, "2001:db8::1"},
		{"XFF bare IPv6, not canonical", "10.0.0.1:1", []string{"2001:DB8:0:0::1"}, nil, "2001:db8::1"},
		{"XFF bracketed IPv4", "10.0.0.1:1", []string{"[198.51.100.7]"}, nil, "10.0.0.1"},
		{"XFF bad port", "10.0.0.1:1", []string{"198.51.100.7:http"}, nil, "10.0.0.1"},
		{"XFF zone dropped", "10.0.0.1:1", []string{"fe80::1%eth0"}, nil, "fe80::1"},
		{"XFF trusted IPv6 hop", "[2001:db8:ffff::5]:443", []string{"198.51.100.7, 2001:db8:ffff::6"}, nil, "198.51.100.7"},
		{"XFF before Forwarded", "10.0.0.1:1", []string{"198.51.100.7"}, []string{"for=203.0.113.9"}, "198.51.100.7"},
		{"Forwarded", "10.0.0.1:1", nil, []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, "192.0.2.60"},
		{"Forwarded key case and spaces", "10.0.0.1:1", nil, []string{" proto=https ; For=192.0.2.60 "}, "192.0.2.60"},
		{"Forwarded quoted IPv6 with port", "10.0.0.1:1", nil, []string{`for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"Forwarded quoted IPv6", "10.0.0.1:1", nil, []string{`for="[2001:db8:cafe::17]"`}, "2001:db8:cafe::17"},
		{"Forwarded quoted IPv4 with port", "10.0.0.1:1", nil, []string{`for="192.0.2.60:8080"`}, "192.0.2.60"},
		{"Forwarded obfuscated port", "10.0.0.1:1", nil, []string{`for="[2001:db8::9]:_p0rt"`}, "2001:db8::9"},
		{"Forwarded quoted with escapes", "10.0.0.1:1", nil, []string{`for="192.0.2.\60"`}, "192.0.2.60"},
		{"Forwarded unknown", "10.0.0.1:1", nil, []string{"for=unknown"}, "10.0.0.1"},
		{"Forwarded _hidden", "10.0.0.1:1", nil, []string{"for=_hidden"}, "10.0.0.1"},
		{"Forwarded unknown on the right", "10.0.0.1:1", nil, []string{"for=198.51.100.7, for=unknown"}, "10.0.0.1"},
		{"Forwarded unknown behind a trusted hop", "10.0.0.1:1", nil, []string{"for=unknown, for=10.0.0.2"}, "10.0.0.2"},
		{"Forwarded hidden left of the client", "10.0.0.1:1", nil, []string{"for=_x, for=198.51.100.7;proto=https, for=10.0.0.2"}, "198.51.100.7"},
		{"Forwarded several elements", "10.0.0.1:1", nil, []string{`for=198.51.100.7;proto=https, for="[2001:db8:ffff::1]:80";by=x`}, "198.51.100.7"},
		{"Forwarded several lines", "10.0.0.1:1", nil, []string{"for=1.1.1.1", "for=198.51.100.7", "for=10.0.0.2"}, "198.51.100.7"},
		{"Forwarded all trusted", "10.0.0.1:1", nil, []string{"for=10.0.0.7, for=10.0.0.2"}, "10.0.0.7"},
		{"Forwarded element without for", "10.0.0.1:1", nil, []string{"for=198.51.100.7, proto=https"}, "10.0.0.1"},
		{"Forwarded quoted string with separators", "10.0.0.1:1", nil, []string{`by="a,b;c", for=198.51.100.7`}, "198.51.100.7"},
		{"Forwarded unquoted IPv6 (invalid)", "10.0.0.1:1", nil, []string{"for=[2001:db8::1]"}, "10.0.0.1"},
		{"Forwarded unterminated quote", "10.0.0.1:1", nil, []string{`for="198.51.100.7`}, "10.0.0.1"},
		{"Forwarded key only", "10.0.0.1:1", nil, []string{"for"}, "10.0.0.1"},
		{"Forwarded empty value", "10.0.0.1:1", nil, []string{"for="}, "10.0.0.1"},
		{"Forwarded junk after value", "10.0.0.1:1", nil, []string{"for=198.51.100.7 junk"}, "10.0.0.1"},
		{"Forwarded separators only", "10.0.0.1:1", nil, []string{";;,,="}, "10.0.0.1"},
		{"mapped peer unmapped", "[::ffff:203.0.113.9]:1", nil, nil, "203.0.113.9"},
		{"mapped trusted peer", "[::ffff:10.0.0.1]:1", []string{"198.51.100.7"}, nil, "198.51.100.7"},
		{"mapped address in XFF", "10.0.0.1:1", []string{"::ffff:198.51.100.7"}, nil, "198.51.100.7"},
		{"mapped trusted hop in XFF", "10.0.0.1:1", []string{"198.51.100.7, ::ffff:10.0.0.2"}, nil, "198.51.100.7"},
		{"mapped address in Forwarded", "10.0.0.1:1", nil, []string{`for="[::ffff:198.51.100.7]:1"`}, "198.51.100.7"},
		{"mapped trusted prefix", "192.168.3.4:1", []string{"198.51.100.7"}, nil, "198.51.100.7"},
		{"peer without a port", "10.0.0.1", []string{"198.51.100.7"}, nil, "198.51.100.7"},
		{"peer that is no IP", "@", []string{"198.51.100.7"}, nil, "@"},
		{"peer host that is no IP", "example.com:80", []string{"198.51.100.7"}, nil, "example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tc.fwd {
				r.Header.Add("Forwarded", v)
			}
			if got := g.ClientIP(r); got != tc.want {
				t.Errorf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClientIPNoTrustedProxies(t *testing.T) {
	g := New(Options{})
	defer g.Close()
	r := &http.Request{RemoteAddr: "127.0.0.1:5", Header: http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=198.51.100.8"}}}
	if got := g.ClientIP(r); got != "127.0.0.1" {
		t.Errorf("ClientIP = %q with no trusted proxies", got)
	}
}

func TestForwardedElementsBounded(t *testing.T) {
	s := strings.Repeat("for=1.1.1.1, ", 10000) + "for=198.51.100.7"
	fors := forwardedFors(s)
	if len(fors) != maxForwardedElements || fors[len(fors)-1] != "198.51.100.7" {
		t.Fatalf("%d elements, last %q", len(fors), fors[len(fors)-1])
	}
	g := trustedGuard(t)
	r := &http.Request{RemoteAddr: "10.0.0.1:1", Header: http.Header{"Forwarded": {s}}}
	if got := g.ClientIP(r); got != "198.51.100.7" {
		t.Errorf("ClientIP = %q", got)
	}
}

// FuzzClientIP: no header makes ClientIP panic, and what it returns is the
// peer or a canonical, unmapped address. The seeds run with go test.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{
		"", ",", "[", "]", "[]", "[::1", "[::1]:", "[::1]x", ":", "1.2.3.4:", "1.2.3.4:99999", `"`, `for="`, `for="\`,
		"for=;", "for=_", "for=\"[::ffff:1.2.3.4]:_a\"", "unknown, 10.0.0.2", "\x00\xff", "for=\"\\\"\"", "%", "fe80::1%", "::ffff:10.0.0.1%x",
	} {
		f.Add(s, s)
	}
	g := trustedGuard(f)
	f.Fuzz(func(t *testing.T, xff, fwd string) {
		for _, h := range []http.Header{{"X-Forwarded-For": {xff}}, {"Forwarded": {fwd}}, {"X-Forwarded-For": {fwd, xff}}, {"Forwarded": {xff, fwd}}} {
			r := &http.Request{RemoteAddr: "10.0.0.1:1", Header: h}
			got := g.ClientIP(r)
			if got == "10.0.0.1" {
				continue
			}
			a, err := netip.ParseAddr(got)
			if err != nil || a.String() != got || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("ClientIP = %q for %q", got, h)
			}
		}
	})
}
