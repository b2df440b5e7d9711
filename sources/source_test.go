package sources

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
	"github.com/mseway/mseway/mseout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newRegistry returns a registry closed at the end of the test.
func newRegistry(t *testing.T) *mseout.Registry {
	reg := mseout.NewRegistry(mseout.Options{Limits: configs.Default().Limits, Logger: quietLogger()})
	t.Cleanup(reg.Close)
	return reg
}

// watch serves reg's viewer socket and opens a viewer of stream.
func watch(t *testing.T, reg *mseout.Registry, stream string) *viewerclient.Conn {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeViewer(w, r, strings.TrimPrefix(r.URL.Path, "/ws/watch/"))
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, err := viewerclient.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/watch/"+stream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestLocalSourceOnDemand: an on-demand local source is not live until a
// viewer waits; then it captures and the viewer gets an init and media; when
// the last viewer leaves it stops after the linger time, and a new viewer
// starts it again.
func TestLocalSourceOnDemand(t *testing.T) {
	reg := newRegistry(t)
	src, err := Start(Config{
		Stream:   "pattern",
		Capture:  devices.Config{Video: devices.VideoTest, Audio: devices.AudioTest, Width: 160, Height: 120, FPS: 15},
		Registry: reg, OnDemand: true, Linger: 200 * time.Millisecond,
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	live := func() bool {
		for _, s := range reg.Streams() {
			if s.Name == "pattern" {
				return s.Live
			}
		}
		return false
	}
	time.Sleep(200 * time.Millisecond)
	if live() || src.Captures() != 0 {
		t.Fatalf("on-demand source live (%v) or capturing (%d) with no viewer", live(), src.Captures())
	}
	for round := 1; round <= 2; round++ {
		v := watch(t, reg, "pattern")
		gotInit, media := false, 0
		for media < 5 {
			m, err := v.Next(20 * time.Second)
			if err != nil {
				t.Fatalf("round %d: %v (init %v, media %d)", round, err, gotInit, media)
			}
			switch {
			case m.Control != nil && m.Control.Type == "init":
				if len(m.Control.Tracks) != 2 {
					t.Fatalf("init tracks %+v", m.Control.Tracks)
				}
				gotInit = true
			case m.Control != nil && m.Control.Type != "waiting":
				t.Fatalf("round %d: unexpected %+v", round, m.Control)
			case m.Binary != nil && gotInit:
				media++
			}
		}
		if src.Captures() != int64(round) || !live() {
			t.Fatalf("round %d: captures %d, live %v", round, src.Captures(), live())
		}
		v.Close()
		deadline := time.Now().Add(20 * time.Second)
		for live() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: source still live after its viewer left", round)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestLocalSourceTakeover: an always-on local source publishes at start; a
// publisher that takes the stream over ends the source's publication; when
// that publisher leaves, the source publishes again.
func TestLocalSourceTakeover(t *testing.T) {
	reg := newRegistry(t)
	src, err := Start(Config{
		Stream:   "pattern",
		Capture:  devices.Config{Video: devices.VideoTest, Audio: devices.None, Width: 160, Height: 120, FPS: 10},
		Registry: reg, Retry: 100 * time.Millisecond, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	publisher := func() string {
		for _, s := range reg.Streams() {
			if s.Name == "pattern" && s.Publisher != nil {
				return s.Publisher.Protocol
			}
		}
		return ""
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for publisher() != want {
			if time.Now().After(deadline) {
				t.Fatalf("publisher %q, want %q", publisher(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("local")
	other, err := reg.Publish("pattern", mseout.PublisherInfo{Protocol: "whip", RemoteAddr: "test", TakeOver: true}) // a publisher with a credential
	if err != nil {
		t.Fatal(err)
	}
	waitFor("whip")
	time.Sleep(300 * time.Millisecond) // a few retry periods: the source must not take it back
	if p := publisher(); p != "whip" {
		t.Fatalf("the local source took the stream back from a live publisher: %q", p)
	}
	other.Close()
	waitFor("local")
	deadline := time.Now().Add(20 * time.Second)
	for src.Captures() != 2 { // the devices were closed while taken over, reopened now
		if time.Now().After(deadline) {
			t.Fatalf("captures = %d, want 2", src.Captures())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
