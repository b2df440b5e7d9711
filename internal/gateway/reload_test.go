package gateway_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// dialViewer opens a viewer socket with token (none when empty); it returns
// the HTTP status of a refused upgrade, or the open viewer.
func dialViewer(t *testing.T, gw *testGateway, stream, token string) (*viewer, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := gw.ws + "/ws/watch/" + stream
	if token != "" {
		u += "?token=" + token
	}
	c, resp, err := viewerclient.DialTLS(ctx, u, gw.tls)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial viewer %s: %v", stream, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { c.Close() })
	return &viewer{t: t, name: stream, c: c}, http.StatusSwitchingProtocols
}

// TestReload: a config reload applies a new view token (the old one is
// refused after it, the new one accepted), new limits and new stream
// defaults, while a viewer that joined before keeps playing; keys that need
// a restart are logged and kept; a bad config is refused with the reason
// and changes nothing (the token in effect still works).
func TestReload(t *testing.T) {
	const (
		publishToken = "publish-token-0123456789abcdef"
		oldView      = "view-token-old-0123456789"
		newView      = "view-token-new-0123456789"
	)
	var logs syncBuffer
	cfg := loopbackConfig()
	cfg.Auth.PublishToken, cfg.Auth.ViewToken = publishToken, oldView
	gw := startGatewayLogged(t, cfg, &logs)

	video, audio := testMedia(t)
	publish(t, gw, "live", video, audio)
	v, code := dialViewer(t, gw, "live", oldView)
	if v == nil {
		t.Fatalf("viewer with the view token: %d", code)
	}
	v.expectInit(10 * time.Second)
	if segs, stop := v.collect(500 * time.Millisecond); len(segs) == 0 || stop != nil {
		t.Fatalf("viewer before the reload: %d segments, %+v", len(segs), stop)
	}

	next := *cfg
	next.Auth.ViewToken = newView
	next.Limits.MaxViewersPerStream = 2
	next.StreamDefaults.WaitForPublisher = false
	next.WebRTC.UDPPort = 9 // needs a restart
	changed, err := gw.g.Reload(&next)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, want := range []string{"auth.view_token", "limits.max_viewers_per_stream", "stream_defaults"} {
		if !slices.Contains(changed, want) {
			t.Errorf("changed %v lacks %s", changed, want)
		}
	}
	if slices.Contains(changed, "webrtc") || !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "keys=webrtc") {
		t.Errorf("changed %v; a changed webrtc.udp_port should be logged as needing a restart:\n%s", changed, logs.String())
	}
	if strings.Contains(logs.String(), newView) || strings.Contains(logs.String(), oldView) {
		t.Error("a token reached the log")
	}

	if _, code := dialViewer(t, gw, "live", oldView); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Fatalf("old view token after the reload: %d, want 401 or 403", code)
	}
	nv, code := dialViewer(t, gw, "live", newView)
	if nv == nil {
		t.Fatalf("new view token after the reload: %d", code)
	}
	nv.expectInit(10 * time.Second)
	// limits.max_viewers_per_stream 2: a third viewer is refused.
	third, code := dialViewer(t, gw, "live", newView)
	if third == nil {
		t.Fatalf("third viewer: %d", code)
	}
	if ctl, _ := third.expectControl("error", 5*time.Second); !strings.Contains(ctl.Message, "too many viewers") {
		t.Fatalf("third viewer: %+v", ctl)
	}
	// stream_defaults.wait_for_publisher off: a viewer of a stream that is
	// not live is told so instead of waiting.
	idle, code := dialViewer(t, gw, "idle", newView)
	if idle == nil {
		t.Fatalf("viewer of an idle stream: %d", code)
	}
	if ctl, _ := idle.expectControl("error", 5*time.Second); !strings.Contains(ctl.Message, "not found") {
		t.Fatalf("viewer of an idle stream: %+v", ctl)
	}
	// The viewer from before the reload plays on.
	if segs, stop := v.collect(time.Second); len(segs) < 10 || stop != nil {
		t.Fatalf("viewer across the reload: %d segments in 1 s, %+v", len(segs), stop)
	}

	// A bad config: nothing changes.
	bad := next
	bad.Auth.ViewToken = "view-token-bad-0123456789"
	bad.Auth.JWT.HS256 = []configs.HMACKey{{Secret: "short"}}
	if _, err := gw.g.Reload(&bad); err == nil || !strings.Contains(err.Error(), "auth.jwt.hs256[0].secret") {
		t.Fatalf("bad reload: %v, want the hs256 secret named", err)
	}
	if _, code := dialViewer(t, gw, "live", bad.Auth.ViewToken); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Fatalf("the refused config's token: %d, want 401 or 403", code)
	}
	if ok, code := dialViewer(t, gw, "live", newView); ok == nil {
		t.Fatalf("the token in effect after a refused reload: %d", code)
	}
	if segs, stop := v.collect(500 * time.Millisecond); len(segs) == 0 || stop != nil {
		t.Fatalf("viewer after the refused reload: %d segments, %+v", len(segs), stop)
	}
}
