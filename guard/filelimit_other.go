//go:build !unix

package guard

// FileLimit returns 0, 0: the file limit is known on unix only.
func FileLimit() (soft, hard uint64) { return 0, 0 }
