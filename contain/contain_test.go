package contain

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A panic in a goroutine that defers Recover is stopped there: logged with
// its stack, counted, and the cleanup runs.
func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	before := Counts()["test"]
	cleaned := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer Recover(log, "test", func() { close(cleaned) })
		var m map[string]int
		m["boom"]++ // a nil map write panics
	}()
	<-done
	select {
	case <-cleaned:
	default:
		t.Fatal("cleanup did not run")
	}
	if got := Counts()["test"]; got != before+1 {
		t.Fatalf("count %d, want %d", got, before+1)
	}
	out := logs.String()
	if !strings.Contains(out, "panic contained") || !strings.Contains(out, "where=test") || !strings.Contains(out, "contain_test.go") {
		t.Fatalf("log line without where or stack: %s", out)
	}
	// Without a panic, Recover does nothing.
	func() {
		defer Recover(log, "quiet", func() { t.Fatal("cleanup without a panic") })
	}()
	if Counts()["quiet"] != 0 {
		t.Fatal("counted a panic that did not happen")
	}
}
