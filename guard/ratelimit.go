package guard

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mseway/mseway/httpapi"
)

// Middleware resolves the client's address (ClientIP), records it for the
// handlers (httpapi.WithClientIP) and applies its request rate: a request
// over it is answered 429 with Retry-After (whole seconds, at least 1) and a
// JSON error, counted and logged (at most one line per 10 s). Requests that
// come through a trusted proxy count against the address it names, not its
// own.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := g.clientAddr(r)
		ip := addrString(a, r)
		if lims := g.lims.Load(); a.IsValid() && lims != nil {
			if ok, wait := lims.allow(a, g.now()); !ok {
				g.limited.Add(1)
				secs := retryAfter(wait)
				g.reqLog.log(g, "guard: request rate limited", "client", ip, "method", r.Method, "path", r.URL.Path, "retry_after_s", secs)
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				httpapi.WriteError(w, http.StatusTooManyRequests, "too many requests from "+ip+": retry after "+strconv.Itoa(secs)+" s")
				return
			}
		}
		next.ServeHTTP(w, httpapi.WithClientIP(r, ip))
	})
}

// retryAfter is wait in whole seconds, rounded up, at least 1.
func retryAfter(wait time.Duration) int {
	s := math.Ceil(wait.Seconds())
	if !(s >= 1) { // NaN too
		return 1
	}
	return int(min(s, 86400))
}

const (
	// maxLimiters bounds the addresses with a limiter of their own; past
	// it, new addresses share one (overflow), so that a spray of addresses
	// cannot grow the map without end.
	maxLimiters = 100_000
	// limiterIdle is how long an address goes without a request before
	// its limiter is forgotten (if it is full again by then).
	limiterIdle = time.Minute
)

// sweepEvery is how often the sweeper looks for idle limiters (a variable
// for tests).
var sweepEvery = 15 * time.Second

// limiters hold a token bucket per client address.
type limiters struct {
	limit rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	m        map[netip.Addr]*limiter
	overflow *limiter
}

type limiter struct {
	*rate.Limiter
	last time.Time // the last request's; under limiters.mu
}

func newLimiters(perSec float64, burst, max int) *limiters {
	l := &limiters{limit: rate.Limit(perSec), burst: burst, max: max, m: make(map[netip.Addr]*limiter)}
	l.overflow = &limiter{Limiter: rate.NewLimiter(l.limit, burst)}
	return l
}

// allow takes a token of a's bucket at now; when there is none, it says so
// and how long until there is one.
func (l *limiters) allow(a netip.Addr, now time.Time) (bool, time.Duration) {
	a = httpapi.AddrGroup(a) // an IPv6 client counts by its /64
	l.mu.Lock()
	e := l.m[a]
	if e == nil {
		if len(l.m) >= l.max {
			e = l.overflow
		} else {
			e = &limiter{Limiter: rate.NewLimiter(l.limit, l.burst)}
			l.m[a] = e
		}
	}
	e.last = now
	l.mu.Unlock()
	if e.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - e.TokensAt(now)
	return false, time.Duration(need / float64(l.limit) * float64(time.Second))
}

// size is the number of addresses with a limiter of their own.
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// sweep forgets the limiters idle for more than limiterIdle whose bucket is
// full again (forgetting them changes nothing).
func (l *limiters) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, e := range l.m {
		if now.Sub(e.last) > limiterIdle && e.TokensAt(now) >= float64(l.burst) {
			delete(l.m, a)
		}
	}
}

// sweeper sweeps the limiters every every until Close.
func (g *Guard) sweeper(every time.Duration) {
	defer close(g.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			if lims := g.lims.Load(); lims != nil {
				lims.sweep(g.now())
			}
		}
	}
}
