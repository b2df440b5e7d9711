package ratelog

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	t0 := time.Unix(1000, 0)
	if ok, n := l.allowAt(t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.allowAt(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("line %d within the second passed", i)
		}
	}
	if ok, n := l.allowAt(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after a second: %v, %d held back, want true, 5", ok, n)
	}
	if ok, n := l.allowAt(t0.Add(3 * time.Second)); !ok || n != 0 {
		t.Fatalf("later: %v %d", ok, n)
	}
}
