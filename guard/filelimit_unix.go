//go:build unix

package guard

import "syscall"

// FileLimit returns the process's RLIMIT_NOFILE soft and hard limits.
//
// It does not raise the soft limit: Go does at start (since Go 1.19,
// go.dev/issue/46279). The init function in $GOROOT/src/syscall/rlimit.go
// reads RLIMIT_NOFILE and, when the soft limit is below hard-1, sets it to
// hard-1 (hard-1 rather than hard so that os/exec can tell whether someone
// else changed it since; on macOS capped at kern.maxfilesperproc). So the
// soft limit seen here is already hard-1 (or hard, when it was hard at exec),
// unless the program lowered it itself.
func FileLimit() (soft, hard uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0
	}
	return uint64(lim.Cur), uint64(lim.Max) // int64 on some BSDs
}
