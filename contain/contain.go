// Package contain keeps a panic in one viewer's, publisher's or stream's
// goroutine from taking the process down: the goroutine's deferred Recover
// logs the panic with its stack, counts it, and lets the caller close what
// failed. Every long-lived goroutine of the gateway defers it.
package contain

import (
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"
)

var (
	mu     sync.Mutex
	counts = map[string]int64{}
)

// Recover must be deferred directly (defer contain.Recover(...)): it stops a
// panic of the deferring goroutine, logs it with the stack as an error
// naming where it happened, counts it under where, then calls cleanup (which
// closes the viewer or stream that failed; it may be nil).
func Recover(log *slog.Logger, where string, cleanup func()) {
	p := recover()
	if p == nil {
		return
	}
	mu.Lock()
	counts[where]++
	mu.Unlock()
	if log == nil {
		log = slog.Default()
	}
	log.Error("panic contained", "where", where, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	if cleanup != nil {
		cleanup()
	}
}

// Counts returns the panics contained so far, by where.
func Counts() map[string]int64 {
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(counts)
}
