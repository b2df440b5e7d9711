package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
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
	// time-shift (TestFirefoxTimeshift)
	Timeshifted bool    `json:"timeshifted"`
	Behind      float64 `json:"behind"` // ms between now and the wall-clock time shown
	Latency     float64 `json:"latency"`
	Phase       string  `json:"phase"`
	// the player's running counters (they survive a MediaSource rebuild)
	Inits     int     `json:"inits"`
	Decoded   int     `json:"decoded"`
	Stalls    int     `json:"stalls"`
	StallTime float64 `json:"stallTime"`
	Rebuilds  int     `json:"rebuilds"`
	// RVFC: the browser has HTMLVideoElement.requestVideoFrameCallback.
	RVFC bool `json:"rvfc"`
	// Gaps: what frameGapJS recorded, once the page installed it.
	Gaps *firefoxGaps `json:"gaps"`
}

// firefoxGaps are frameGapJS's figures (ms between presented frames).
type firefoxGaps struct {
	Max      float64 `json:"max"`
	AtSwitch float64 `json:"atSwitch"`
	Steady   float64 `json:"steady"`
	Switches int     `json:"switches"`
	Frames   int     `json:"frames"`
	At       string  `json:"at"`
}

// firefoxPrologueJS runs before the page's own scripts: it records the page's
// errors and counts the WebSockets it opens.
const firefoxPrologueJS = `
  window.__errors = []; window.__sockets = 0; window.__phase = '';
  addEventListener('error', (e) => __errors.push(String(e.message)));
  addEventListener('unhandledrejection', (e) => __errors.push('unhandled: ' + String(e.reason)));
  const WS = window.WebSocket;
  window.WebSocket = class extends WS { constructor(...a) { super(...a); window.__sockets++; } };
`

// firefoxReportJS posts a firefoxReport to /report every second; el is the
// <mse-player> (or anything with its video, player and state).
const firefoxReportJS = `
  setInterval(() => {
    const v = el.video, q = v && v.getVideoPlaybackQuality(), p = el.player, st = (p && p.stats) || {};
    fetch('/report', { method: 'POST', body: JSON.stringify({
      state: el.state, mode: (p && p.mode) || '', currentTime: v ? v.currentTime : 0,
      width: v ? v.videoWidth : 0, height: v ? v.videoHeight : 0,
      total: q ? q.totalVideoFrames : 0, dropped: q ? q.droppedVideoFrames : 0,
      sockets: window.__sockets, errors: window.__errors,
      timeshifted: !!(p && p.timeshifted), behind: Number.isFinite(st.position) ? Date.now() - st.position : -1,
      latency: st.latency == null ? -1 : st.latency, phase: window.__phase,
      inits: (p && p.inits) || 0, decoded: st.decodedFrames || 0, stalls: st.stalls || 0,
      stallTime: st.stallTime || 0, rebuilds: st.rebuilds || 0,
      rvfc: typeof HTMLVideoElement.prototype.requestVideoFrameCallback === 'function',
      gaps: window.__frames === undefined ? null : { max: window.__maxGap, atSwitch: window.__switchGap,
        steady: window.__steadyGap, switches: window.__switches, frames: window.__frames, at: window.__gapAt } }) }).catch(() => {});
  }, 1000);
`

// firefoxReports serves /report: each firefoxReport posted goes to out (or
// is dropped when nobody reads).
func firefoxReports(out chan<- firefoxReport) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var rep firefoxReport
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&rep); err == nil {
			select {
			case out <- rep:
			default:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// firefoxHarness serves a page that embeds <mse-player stream=stream> from
// the gateway at base (another origin), runs script (a module; el is the
// element) and posts a firefoxReport every second to /report; the reports
// come out of the channel.
func firefoxHarness(t *testing.T, base, stream, script string) (url string, reports <-chan firefoxReport) {
	t.Helper()
	out := make(chan firefoxReport, 100)
	mux := http.NewServeMux()
	mux.Handle("/report", firefoxReports(out))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Firefox check</title>
<script>%[4]s</script>
<script type="module" src="%[1]s/mse-player.js"></script>
<mse-player id="p" stream="%[2]s" style="width: 640px"></mse-player>
<script type="module">
  const el = document.getElementById('p');
  %[5]s
  %[3]s
</script>`, base, stream, script, firefoxPrologueJS, firefoxReportJS)
	})
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	return site.URL + "/", out
}

// firefoxWatchHarness serves the gateway at base through a reverse proxy
// whose watch.html is the gateway's with one more script first in its head
// (/harness.js, from the proxy's origin, so the page's own CSP allows it): it
// records errors and sockets, posts a firefoxReport every second to /report
// like firefoxHarness's page, and runs script once the document is parsed
// (the page's <video> is there). The URL returned opens watch.html?query.
func firefoxWatchHarness(t *testing.T, base, query, script string) (pageURL string, reports <-chan firefoxReport) {
	t.Helper()
	gw, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan firefoxReport, 100)
	harness := firefoxPrologueJS + `
  const el = { get video() { return document.querySelector('video'); }, get player() { return window.player; },
    get state() { return window.player ? window.player.state : 'idle'; } };
` + firefoxReportJS + `
  addEventListener('DOMContentLoaded', () => {
` + script + `
  });
`
	mux := http.NewServeMux()
	mux.Handle("/", httputil.NewSingleHostReverseProxy(gw)) // the rest, WebSockets too
	mux.Handle("/report", firefoxReports(out))
	mux.HandleFunc("/harness.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, harness)
	})
	mux.HandleFunc("/watch.html", func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, base+"/watch.html", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		page, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<head>") {
			t.Errorf("watch.html from the gateway: %v, status %d, %d bytes", err, resp.StatusCode, len(page))
			http.Error(w, "no watch.html", http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			if k != "Content-Length" && k != "Etag" && k != "Last-Modified" {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, strings.Replace(string(page), "<head>", `<head><script src="/harness.js"></script>`, 1))
	})
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	return site.URL + "/watch.html?" + query, out
}

// startFirefox runs headless Firefox on url until the test ends; done is
// closed when it exits, output is what it printed.
func startFirefox(t *testing.T, url string) (done <-chan struct{}, output func() string) {
	t.Helper()
	firefox := requireBinary(t, "Firefox", "apt-get install firefox-esr", os.Getenv("FIREFOX"), "firefox-esr", "firefox")
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, firefox, "--headless", "--no-remote", "--profile", profile, url)
	cmd.Env = append(os.Environ(), "MOZ_HEADLESS=1")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start Firefox: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return exited, out.String
}

// TestFirefoxPlays: headless Firefox (no MSE in workers there) plays a stream
// through <mse-player> embedded from another origin, on the main-thread
// path that auto mode must pick. Firefox cannot be driven by chromedp, so
// the page reports to the test over HTTP.
func TestFirefoxPlays(t *testing.T) {
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	publish(t, gw, "fx", video, audio)
	url, reports := firefoxHarness(t, gw.base, "fx", "")
	done, output := startFirefox(t, url)

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
			t.Fatalf("Firefox exited early:\n%s", output())
		case <-deadline:
			t.Fatalf("no 3 s of playback in 90 s; last report %+v; Firefox output:\n%s", last, output())
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

// TestFirefoxTimeshift: in Firefox (main-thread MSE) the player goes 8 s
// back into a stream's recording and plays it (the wall-clock time it shows
// is 8 s old and moves on), then comes back live, on the same page.
func TestFirefoxTimeshift(t *testing.T) {
	dir := t.TempDir()
	gw := startGateway(t, func(c *configs.Config) {
		c.StreamDefaults.Record = true
		c.Record.Path = filepath.Join(dir, "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
		c.Record.SegmentDuration = 4 * time.Second
	})
	video, audio := testMedia(t)
	publish(t, gw, "fxdvr", video, audio)
	time.Sleep(12 * time.Second) // recorded before going back
	// Back 8 s once it plays; live again after 6 s of the recording.
	url, reports := firefoxHarness(t, gw.base, "fxdvr", `
  let phase = 'live', at = 0;
  setInterval(() => {
    const p = el.player;
    if (!p) return;
    if (phase === 'live' && p.state === 'playing' && el.video.currentTime > 1) { phase = 'back'; at = Date.now(); p.timeshift(Date.now() - 8000); }
    else if (phase === 'back' && Date.now() - at > 6000) { phase = 'live-again'; p.goLive(); }
    window.__phase = phase;
  }, 250);`)
	done, output := startFirefox(t, url)

	var back []firefoxReport
	var last firefoxReport
	deadline := time.After(120 * time.Second)
	for last.Phase != "live-again" || last.State != "playing" || last.Timeshifted || len(back) == 0 {
		select {
		case r := <-reports:
			last = r
			if r.Phase == "back" && r.Timeshifted && r.State == "playing" {
				back = append(back, r)
			}
		case <-done:
			t.Fatalf("Firefox exited early:\n%s", output())
		case <-deadline:
			t.Fatalf("no time-shift and back in 120 s; last report %+v, %d in the recording; Firefox output:\n%s", last, len(back), output())
		}
	}
	// A few more reports, live.
	for range 3 {
		select {
		case last = <-reports:
		case <-time.After(10 * time.Second):
			t.Fatal("no report")
		}
	}
	t.Logf("Firefox in the recording: %+v", back)
	t.Logf("Firefox live again: %+v", last)
	b := back[len(back)-1]
	if b.Behind < 7000 || b.Behind > 11000 {
		t.Errorf("in the recording the frame shown is %.0f ms old, want about 8 s", b.Behind)
	}
	if len(back) >= 2 && back[len(back)-1].Total <= back[0].Total {
		t.Errorf("no frame decoded while in the recording: %d -> %d", back[0].Total, back[len(back)-1].Total)
	}
	if last.Timeshifted || last.Latency < 0 || last.Latency > 1 || last.Behind > 1500 {
		t.Errorf("live again: %+v", last)
	}
	if last.Sockets > 2 {
		t.Errorf("%d viewer sockets opened, want 2 (live, live again)", last.Sockets)
	}
	if len(last.Errors) > 0 {
		t.Errorf("page errors: %q", last.Errors)
	}
}

// TestFirefoxSwitch: TestPlayerSwitch in Firefox. A live stream changes
// resolution (640x360 <-> 1280x720, a new init every 3 s); the watch page with
// its default settings (auto: main-thread MSE in Firefox) keeps presenting
// frames across three changes without a hole at a change: the longest gap
// between presented frames (requestVideoFrameCallback, frameGapJS) at a change
// stays under 200 ms, or under twice the longest gap away from the changes in
// the same run (a loaded machine: a ratio, not a speed figure).
func TestFirefoxSwitch(t *testing.T) {
	gw := startGateway(t, nil)
	publishSwitching(t, gw, "fxswitch")
	// The gap recorder goes in once the player plays (TestPlayerSwitch's
	// waitPlaying): the wait for the first frames is no gap.
	url, reports := firefoxWatchHarness(t, gw.base, "stream=fxswitch", `
    const playing = setInterval(() => {
      if (!(window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5)) return;
      clearInterval(playing);
      if (typeof HTMLVideoElement.prototype.requestVideoFrameCallback === 'function') `+frameGapJS+`;
    }, 100);`)
	done, output := startFirefox(t, url)

	// Three size changes on screen, then 2 s more of media.
	var installed, changed, last firefoxReport
	deadline := time.After(90 * time.Second)
	for {
		select {
		case r := <-reports:
			last = r
		case <-done:
			t.Fatalf("Firefox exited early:\n%s", output())
		case <-deadline:
			t.Fatalf("no three resolution changes and 2 s of playback after them in 90 s; last report %+v (gaps %+v); Firefox output:\n%s", last, last.Gaps, output())
		}
		if !last.RVFC {
			// Firefox has it since 132; without it there is nothing to measure.
			msg := fmt.Sprintf("this Firefox has no requestVideoFrameCallback (since Firefox 132): the gaps between presented frames cannot be measured; %s", firefoxVersion())
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		if installed.Gaps == nil && last.Gaps != nil {
			installed = last
		}
		if changed.Gaps == nil && last.Gaps != nil && last.Gaps.Switches >= 3 {
			changed = last
		}
		if changed.Gaps != nil && last.CurrentTime >= changed.CurrentTime+2 {
			break
		}
	}
	g := last.Gaps
	t.Logf("Firefox: %s; inits %d -> %d, %dx%d, %d size changes on screen; longest gap between presented frames %.0f ms at a change, %.0f ms elsewhere (longest %.0f ms at %s); %d frames presented; stalls %d -> %d (%.2f s in all), rebuilds %d",
		firefoxVersion(), installed.Inits, last.Inits, last.Width, last.Height, g.Switches, g.AtSwitch, g.Steady, g.Max, g.At, g.Frames,
		installed.Stalls, last.Stalls, last.StallTime, last.Rebuilds)
	if last.Mode != "main" {
		t.Errorf("mode %q: auto must pick the main thread in Firefox", last.Mode)
	}
	if last.State != "playing" {
		t.Errorf("player state %q after the changes", last.State)
	}
	// Progress over the 2 s after the changes: presented frames (rVFC) and the
	// player's running count of decoded frames (it survives a flush).
	if n := g.Frames - changed.Gaps.Frames; n < 20 {
		t.Errorf("after the changes: only %d frames presented (%d -> %d)", n, changed.Gaps.Frames, g.Frames)
	}
	if n := last.Decoded - changed.Decoded; n < 20 {
		t.Errorf("after the changes: only %d frames decoded (%d -> %d)", n, changed.Decoded, last.Decoded)
	}
	if bound := max(200, 2*g.Steady); g.AtSwitch >= bound {
		t.Errorf("a hole of %.0f ms at a resolution change (bound %.0f ms: 200 ms, or twice the %.0f ms seen away from changes)",
			g.AtSwitch, bound, g.Steady)
	}
	if len(last.Errors) > 0 {
		t.Errorf("page errors: %q", last.Errors)
	}
}

// firefoxVersion is what `firefox --version` says (for the logs).
func firefoxVersion() string {
	for _, name := range []string{os.Getenv("FIREFOX"), "firefox-esr", "firefox"} {
		if name == "" {
			continue
		}
		if out, err := exec.Command(name, "--version").Output(); err == nil {
			return strings.TrimSpace(string(out))
		}
	}
	return "Firefox version unknown"
}
