package guard

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestFileLimit(t *testing.T) {
	soft, hard := FileLimit()
	t.Logf("RLIMIT_NOFILE soft %d hard %d", soft, hard)
	if runtime.GOOS != "linux" {
		t.Skip("checked on Linux")
	}
	if soft == 0 || hard < soft {
		t.Fatalf("soft %d, hard %d", soft, hard)
	}
	// Go's syscall init raised the soft limit to hard-1 (left it alone if
	// it was hard-1 or hard already).
	if hard < math.MaxInt32 && soft < hard-1 {
		t.Errorf("soft %d < hard-1 (%d): Go did not raise it", soft, hard-1)
	}
}

// TestFileLimitRaisedAtStart runs this test binary with a low soft limit
// and checks that the child sees it raised (by Go, not by us).
func TestFileLimitRaisedAtStart(t *testing.T) {
	if os.Getenv("GUARD_FILELIMIT_CHILD") == "1" {
		soft, hard := FileLimit()
		fmt.Printf("FILELIMIT %d %d\n", soft, hard)
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("checked on Linux")
	}
	_, hard := FileLimit()
	if hard <= 600 || hard >= math.MaxInt32 {
		t.Skipf("hard limit %d", hard)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd := exec.Command(sh, "-c", `ulimit -S -n 512 && exec "$0" -test.run='^TestFileLimitRaisedAtStart$' -test.count=1`, os.Args[0])
	cmd.Env = append(os.Environ(), "GUARD_FILELIMIT_CHILD=1", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var soft, chard uint64
	for l := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "FILELIMIT" {
			soft, _ = strconv.ParseUint(f[1], 10, 64)
			chard, _ = strconv.ParseUint(f[2], 10, 64)
		}
	}
	if chard != hard || soft != hard-1 {
		t.Errorf("child started with soft 512 sees soft %d hard %d; want %d %d\n%s", soft, chard, hard-1, hard, out)
	}
}

func TestDefaultMaxConns(t *testing.T) {
	for _, tc := range []struct {
		soft uint64
		want int
	}{
		{0, 0}, {1, 1}, {2, 1}, {100, 50}, {400, 200}, {512, 256}, {1024, 768},
		{20000, 18000}, {1 << 20, 1<<20 - 1<<20/10},
	} {
		if got := DefaultMaxConns(tc.soft); got != tc.want {
			t.Errorf("DefaultMaxConns(%d) = %d, want %d", tc.soft, got, tc.want)
		}
	}
	for _, soft := range []uint64{math.MaxInt64, math.MaxUint64, math.MaxUint64 - 1} { // RLIM_INFINITY
		if got := DefaultMaxConns(soft); got <= 0 || got > math.MaxInt32 {
			t.Errorf("DefaultMaxConns(%d) = %d", soft, got)
		}
	}
	for soft := uint64(1); soft < 100_000; soft += 37 {
		n := uint64(DefaultMaxConns(soft))
		if n < 1 || n > soft || (soft >= 2 && n > soft-min(256, soft/2)) || n < soft/2 {
			t.Fatalf("DefaultMaxConns(%d) = %d: not between half the limit and the limit less its reserve", soft, n)
		}
	}
}

func TestNewDerivesMaxConns(t *testing.T) {
	soft, _ := FileLimit()
	g := New(Options{})
	defer g.Close()
	if got, want := g.MaxConns(), DefaultMaxConns(soft); got != want {
		t.Errorf("MaxConns() = %d, want DefaultMaxConns(%d) = %d", got, soft, want)
	}
	if g := New(Options{MaxConns: -1}); g.MaxConns() != 0 {
		t.Errorf("MaxConns -1: %d, want 0 (no cap)", g.MaxConns())
	}
}
