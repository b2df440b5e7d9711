// Package ratelog keeps what a client can make the gateway log to a few
// lines: one line per interval passes, the others are counted and the count
// rides on the next line that passes. A flood of refusals costs a line a
// second, not a disk.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets one line through per Every (one second when zero). The zero
// value is ready to use; it is safe for concurrent use.
type Limiter struct {
	Every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// Allow reports whether a line may be logged now, and how many were held
// back since the last one that was (log it with the line).
func (l *Limiter) Allow() (ok bool, suppressed int) {
	return l.allowAt(time.Now())
}

func (l *Limiter) allowAt(now time.Time) (bool, int) {
	every := l.Every
	if every <= 0 {
		every = time.Second
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(every)
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
