package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mseway/mseway/auth"
	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/mseout"
)

// With the auth hook down, listing streams costs one hook timeout and
// answers 503, not one timeout per stream.
func TestStreamListWithTheHookDown(t *testing.T) {
	var asked atomic.Int32
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hook.Close()
	defer close(release)
	cfg := configs.Default().Auth
	cfg.HTTPHook.URL = hook.URL
	cfg.HTTPHook.Timeout = 200 * time.Millisecond
	authz, err := auth.New(context.Background(), cfg, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer authz.Close()
	a := newAccess(authz, nil, slog.New(slog.DiscardHandler))
	all := []mseout.StreamInfo{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
	req := httptest.NewRequest("GET", "/api/streams", nil)
	req.Header.Set("Authorization", "Bearer whatever")
	_, err = a.streamsFor(req, all)
	if he, ok := err.(*httpapi.Error); !ok || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("streamsFor with the hook down: %v, want 503", err)
	}
	// The admin check's question only: nothing for the streams.
	if n := asked.Load(); n != 1 {
		t.Fatalf("the hook was asked %d times for 4 streams", n)
	}
}
