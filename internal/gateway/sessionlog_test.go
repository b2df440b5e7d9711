package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/logbuf"

	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// syncBuffer is a log sink for several goroutines (internal/testkit/logbuf).
type syncBuffer = logbuf.Buffer

// TestSessionLogLines: every log line about a publish session names the
// stream, the session (the first 8 hex digits of its id: the whole id is
// the WHIP resource's capability and never appears) and the remote
// address; every line about a viewer names the stream, the viewer and its
// address.
func TestSessionLogLines(t *testing.T) {
	var logs syncBuffer
	cfg := loopbackConfig()
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})), gateway.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	gw := &testGateway{g: g, base: "http://" + ln.Addr().String(), ws: "ws://" + ln.Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Close(ctx)
		<-done
	})
	video, audio := testMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := whipclient.Publish(ctx, whipclient.Options{URL: gw.base + "/whip/logged", Video: video, Audio: audio, FPS: 30, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	v := watch(t, gw, "logged")
	v.expectInit(20 * time.Second)
	v.c.Close()
	p.Close()
	waitFor(t, "the publish and the viewer logged their end", 10*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, `msg="publish closed"`) && strings.Contains(l, `msg="viewer left"`)
	})
	id := path.Base(p.Location())
	if len(id) != 32 {
		t.Fatalf("session id %q from Location %q", id, p.Location())
	}
	all := logs.String()
	if strings.Contains(all, id) {
		t.Errorf("the whole session id %s is in the log", id)
	}
	short := regexp.MustCompile(`session=` + id[:8] + `\b`)
	for _, line := range strings.Split(all, "\n") {
		switch {
		case strings.Contains(line, "msg=\"publisher connected\""), strings.Contains(line, "msg=\"publish closed\""), strings.Contains(line, "msg=track"),
			strings.Contains(line, "msg=\"publish started\""), strings.Contains(line, "msg=\"publish ended\""):
			if !short.MatchString(line) || !strings.Contains(line, "stream=logged") || !strings.Contains(line, "remote=127.0.0.1:") {
				t.Errorf("a session line without stream, session or remote: %s", line)
			}
		case strings.Contains(line, "msg=\"viewer joined\""), strings.Contains(line, "msg=\"viewer left\""):
			if !regexp.MustCompile(`viewer=\d+ `).MatchString(line) || !strings.Contains(line, "stream=logged") || !strings.Contains(line, "remote=127.0.0.1:") {
				t.Errorf("a viewer line without stream, viewer or remote: %s", line)
			}
		}
	}
	if !short.MatchString(all) {
		t.Errorf("no line names session %s:\n%s", id[:8], all)
	}
}
