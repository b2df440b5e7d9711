package guard

import (
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Guard. Zero values mean "no limit", except MaxConns
// (0 = DefaultMaxConns of the process's file limit; negative = no cap).
type Options struct {
	// MaxConns bounds the open connections accepted by Listener, in all.
	MaxConns int
	// MaxConnsPerIP bounds those of one TCP peer address (trusted proxies
	// are exempt); 0 = no cap.
	MaxConnsPerIP int
	// RequestsPerSecondPerIP and RequestBurstPerIP are the token bucket of
	// one client address (as resolved by ClientIP); a rate of 0 = no limit.
	// A burst below 1 is taken as the rate rounded up (at least 1).
	RequestsPerSecondPerIP float64
	RequestBurstPerIP      int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// Forwarded headers are believed (configs.ParsePrefix parses them).
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Guard applies the door limits. Its methods are safe for concurrent use.
type Guard struct {
	log     *slog.Logger
	now     func() time.Time
	trusted []netip.Prefix

	mu       sync.Mutex
	maxConns int // <= 0: no cap
	maxPerIP int // <= 0: no cap
	open     int
	perIP    map[netip.Addr]int // untrusted peers with connections open

	lims atomic.Pointer[limiters] // nil: no request rate limit

	refusedMax, refusedPerIP, limited atomic.Int64
	connLog, reqLog                   throttledLog

	goMu      sync.Mutex // guards stop, done and closed
	stop      chan struct{}
	done      chan struct{}
	closed    bool
	closeOnce sync.Once
}

// logEvery is the least time between two log lines of one kind (refused
// connections, limited requests); the lines in between are counted.
const logEvery = 10 * time.Second

// New returns a Guard. With a request rate set it starts the goroutine that
// forgets idle addresses; Close stops it.
func New(opts Options) *Guard {
	g := &Guard{
		log:      opts.Logger,
		now:      opts.Now,
		maxConns: opts.MaxConns,
		maxPerIP: opts.MaxConnsPerIP,
		perIP:    make(map[netip.Addr]int),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.maxConns == 0 {
		soft, _ := FileLimit()
		g.maxConns = DefaultMaxConns(soft)
	}
	for _, p := range opts.TrustedProxies {
		if !p.IsValid() {
			continue
		}
		// An IPv4-mapped prefix (::ffff:10.0.0.0/104) is the IPv4 one: the
		// addresses it is compared with are unmapped.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		g.trusted = append(g.trusted, p.Masked())
	}
	g.setRate(opts.RequestsPerSecondPerIP, opts.RequestBurstPerIP)
	return g
}

// SetLimits replaces the connection caps and the request rate with those
// of opts (a config reload; its other fields are ignored, and MaxConns 0
// is DefaultMaxConns as in New). Connections already open stay when they
// are over the new caps. A new rate starts every address with a full
// bucket.
func (g *Guard) SetLimits(opts Options) {
	maxConns := opts.MaxConns
	if maxConns == 0 {
		soft, _ := FileLimit()
		maxConns = DefaultMaxConns(soft)
	}
	g.mu.Lock()
	g.maxConns, g.maxPerIP = maxConns, opts.MaxConnsPerIP
	g.mu.Unlock()
	g.setRate(opts.RequestsPerSecondPerIP, opts.RequestBurstPerIP)
}

// setRate sets the request rate (0 = none) and starts the sweeper when a
// rate needs it and it is not running.
func (g *Guard) setRate(perSec float64, burst int) {
	if perSec <= 0 {
		g.lims.Store(nil)
		return
	}
	if burst < 1 {
		burst = int(min(math.Ceil(perSec), math.MaxInt32))
	}
	g.lims.Store(newLimiters(perSec, burst, maxLimiters))
	g.goMu.Lock()
	defer g.goMu.Unlock()
	if g.stop == nil && !g.closed {
		g.stop = make(chan struct{})
		g.done = make(chan struct{})
		go g.sweeper(sweepEvery)
	}
}

// MaxConns is the cap on open connections in effect (0 = none): the
// configured one, or DefaultMaxConns when it was 0.
func (g *Guard) MaxConns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.maxConns, 0)
}

// Close stops the goroutine that forgets idle addresses. The Guard still
// works after it (the limiter map stays bounded).
func (g *Guard) Close() {
	g.closeOnce.Do(func() {
		g.goMu.Lock()
		g.closed = true
		stop, done := g.stop, g.done
		g.goMu.Unlock()
		if stop != nil {
			close(stop)
			<-done
		}
	})
}

// isTrusted reports whether a (unmapped) is a trusted proxy's address.
func (g *Guard) isTrusted(a netip.Addr) bool {
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// OpenConns is the number of connections accepted by Listener and not yet
// closed.
func (g *Guard) OpenConns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

var (
	descConnsOpen    = prometheus.NewDesc("gateway_connections_open", "Client TCP connections open (accepted and not refused).", nil, nil)
	descConnsRefused = prometheus.NewDesc("gateway_connections_refused_total", "Connections closed as soon as accepted, by the limit they were over.", []string{"reason"}, nil)
	descLimited      = prometheus.NewDesc("gateway_requests_limited_total", "Requests answered 429 for being over their address's request rate.", nil, nil)
)

// Collector returns the guard's Prometheus collector (read when scraped).
func (g *Guard) Collector() prometheus.Collector { return guardCollector{g} }

type guardCollector struct{ g *Guard }

func (c guardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConnsOpen
	ch <- descConnsRefused
	ch <- descLimited
}

func (c guardCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(g.OpenConns()))
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(g.refusedMax.Load()), "max_conns")
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(g.refusedPerIP.Load()), "max_conns_per_ip")
	ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(g.limited.Load()))
}

// DefaultMaxConns is the cap on open connections when none is configured:
// the soft file limit less a reserve (a tenth of it, at least 256) for what
// else the gateway opens (UDP sockets, log files, JWKS and hook requests,
// webhooks), so that it still has descriptors, and /healthz still answers on
// a connection it holds, when clients hold every slot. A small limit gives
// clients at least half of it; 0 (unknown) gives 0: no cap.
func DefaultMaxConns(soft uint64) int {
	if soft == 0 {
		return 0
	}
	soft = min(soft, math.MaxInt32) // RLIM_INFINITY and other huge limits
	reserve := max(soft/10, 256)
	n := soft / 2
	if reserve < soft-n {
		n = soft - reserve
	}
	return int(max(n, 1))
}

// throttledLog lets through at most one line per logEvery and counts the
// others, reported with the next line that gets through.
type throttledLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttledLog) log(g *Guard, msg string, args ...any) {
	now := g.now()
	t.mu.Lock()
	if !t.last.IsZero() && now.Sub(t.last) < logEvery {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	n := t.suppressed
	t.suppressed = 0
	t.last = now
	t.mu.Unlock()
	g.log.Warn(msg, append(args, "suppressed", n)...)
}
