package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// firefoxReport is what the harness page posts every second.
type firefoxReport struct {
	State       string   `json:"state"`
	Mode        string   `json:"mode"`
	CurrentTime float64  `json:"currentTime"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	Total       int      `json:"total"`
	Dropped     int      `json:"dropped"`
	Sockets     int      `json:"sockets"`
	Errors      []string `json:"errors"`
}

// TestFirefoxPlays: headless Firefox (no MSE in workers there) plays a stream
// through <mse-player> embedded from another origin, on the main-thread
// path that auto mode must pick. Firefox cannot be driven by chromedp, so
// the page reports to the test over HTTP.
func TestFirefoxPlays(t *testing.T) {
	firefox := requireBinary(t, "Firefox", "apt-get install firefox-esr", os.Getenv("FIREFOX"), "firefox-esr", "firefox")
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	publish(t, gw, "fx", video, audio)

	reports := make(chan firefoxReport, 100)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report" {
			var rep firefoxReport
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&rep); err == nil {
				select {
				case reports <- rep:
				default:
				}
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Firefox check</title>
<script>
  window.__errors = []; window.__sockets = 0;
  addEventListener('error', (e) => __errors.push(String(e.message)));
  addEventListener('unhandledrejection', (e) => __errors.push('unhandled: ' + String(e.reason)));
  const WS = window.WebSocket;
  window.WebSocket = class extends WS { constructor(...a) { super(...a); window.__sockets++; } };
</script>
<script type="module" src="%s/mse-player.js"></script>
<mse-player id="p" stream="fx" style="width: 640px"></mse-player>
<script type="module">
  setInterval(() => {
    const el = document.getElementById('p'), v = el.video, q = v && v.getVideoPlaybackQuality();
    fetch('/report', { method: 'POST', body: JSON.stringify({
      state: el.state, mode: (el.player && el.player.mode) || '', currentTime: v ? v.currentTime : 0,
      width: v ? v.videoWidth : 0, height: v ? v.videoHeight : 0,
      total: q ? q.totalVideoFrames : 0, dropped: q ? q.droppedVideoFrames : 0,
      sockets: window.__sockets, errors: window.__errors }) }).catch(() => {});
  }, 1000);
</script>`, gw.base)
	}))
	defer site.Close()

	profile := t.TempDir()
	prefs := `user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
`
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(prefs), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, firefox, "--headless", "--no-remote", "--profile", profile, site.URL+"/")
	cmd.Env = append(os.Environ(), "MOZ_HEADLESS=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Firefox: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		cancel()
		<-done
	}()

	// Wait until it plays, then for 3 s more of media.
	var first, last firefoxReport
	deadline := time.After(90 * time.Second)
	for {
		select {
		case r := <-reports:
			last = r
			if first.State == "" && r.State == "playing" && r.CurrentTime > 0.5 {
				first = r
			}
		case <-done:
			t.Fatalf("Firefox exited early:\n%s", out.String())
		case <-deadline:
			t.Fatalf("no 3 s of playback in 90 s; last report %+v; Firefox output:\n%s", last, out.String())
		}
		if first.State != "" && last.CurrentTime >= first.CurrentTime+3 {
			break
		}
	}
	t.Logf("Firefox: %+v -> %+v", first, last)
	if last.Mode != "main" {
		t.Errorf("mode %q: auto must pick the main thread in Firefox", last.Mode)
	}
	if last.Width <= 0 || last.Height <= 0 || last.Total-first.Total < 30 {
		t.Errorf("video %dx%d, %d frames decoded over 3 s", last.Width, last.Height, last.Total-first.Total)
	}
	if last.Sockets != 1 {
		t.Errorf("%d viewer sockets opened, want 1", last.Sockets)
	}
	if len(last.Errors) > 0 {
		t.Errorf("page errors: %q", last.Errors)
	}
}
