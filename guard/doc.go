// Package guard owns the limits at the gateway's TCP/HTTP door, applied
// before any handler runs:
//
//   - who the client is: the TCP peer, or, when the peer is one of the
//     trusted reverse proxies, the address it reports in X-Forwarded-For or
//     Forwarded (RFC 7239) (ClientIP, Middleware);
//   - how many connections everyone and one address may hold open
//     (Listener: limits.max_conns, limits.max_conns_per_ip; a connection
//     over either is closed as soon as it is accepted);
//   - how fast one address may send requests (Middleware: a token bucket
//     per client address of limits.requests_per_second_per_ip and
//     limits.request_burst_per_ip; over it, 429 with Retry-After).
//
// It also says how many connections the process can afford when none is
// configured (FileLimit, DefaultMaxConns), and exports its counters as
// a Prometheus collector (Collector).
//
// The connections the Listener hands out keep the socket reachable
// (syscall.Conn), so the viewer fan-out's non-blocking writes and the TLS
// direct-write listener (package mseout) work through it.
package guard
