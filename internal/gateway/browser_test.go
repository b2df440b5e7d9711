package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath returns the browser for browser tests. In CI a missing browser
// fails the test; elsewhere it skips.
func chromiumPath(t *testing.T) string {
	t.Helper()
	return requireBinary(t, "Chromium", "apt-get install chromium", os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
}

// requireBinary returns the first of names on PATH; without one it fails in
// CI (what must be installed is required there) and skips elsewhere.
func requireBinary(t *testing.T, what, install string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (%s)", what, install)
	}
	t.Skipf("%s not installed", what)
	return ""
}

// newBrowser starts headless Chromium with fake camera and microphone and
// returns a context for its first tab. Navigation must happen on contexts
// without a deadline; derive timeouts per step.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return newBrowserWith(t)
}

// newBrowserWith is newBrowser with extra or overriding Chromium options.
func newBrowserWith(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// The gateway under test offers loopback ICE candidates only.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Background tabs must keep rendering and decoding.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// newTab opens a tab in the same browser and navigates it to url.
func newTab(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	return tab
}

// waitJS polls expression until it is truthy or timeout passes.
func waitJS(t *testing.T, tab context.Context, what, expr string, timeout time.Duration, debugExpr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(200*time.Millisecond),
		// Poll's own timeout (30 s by default) would cut longer waits short: ctx bounds it.
		chromedp.WithPollingTimeout(0))); err != nil {
		state, _ := chromedp.Run(tab, chromedp.Evaluate[string](debugExpr))
		t.Fatalf("%s: %v; page state: %s", what, err, state)
	}
}

func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

type playback struct {
	CurrentTime float64 `json:"currentTime"`
	Width       int     `json:"width"`
	Height      int     `json:"height"`
	Total       int     `json:"total"`
	Dropped     int     `json:"dropped"`
	AudioBytes  int     `json:"audioBytes"`
	State       string  `json:"state"`
	Latency     float64 `json:"latency"`
}

const playbackJS = `(() => {
  const v = document.querySelector('video');
  const q = v.getVideoPlaybackQuality();
  const b = v.buffered;
  return {currentTime: v.currentTime, width: v.videoWidth, height: v.videoHeight,
    total: q.totalVideoFrames, dropped: q.droppedVideoFrames,
    audioBytes: v.webkitAudioDecodedByteCount || 0,
    state: document.body.dataset.state || '',
    latency: b.length ? b.end(b.length - 1) - v.currentTime : -1};
})()`

// TestBrowserPublishWatch: one Chromium tab publishes its fake camera and
// microphone through publish.html over WHIP, another plays watch.html. Both
// pages come from an https:// origin (a gateway with tls_cert/tls_key, the
// test certificate trusted by its key), so WHIP goes over https and the
// player's socket over wss, as in every public deployment.
func TestBrowserPublishWatch(t *testing.T) {
	gw := startGatewayOn(t, true, nil)
	browser := newBrowserWith(t, chromedp.Flag("ignore-certificate-errors-spki-list", testCert.SPKIHash))

	pubTab := newTab(t, browser, gw.base+"/publish.html?stream=e2e&autostart=1&width=640&height=360")
	waitJS(t, pubTab, "publisher connected", `document.body.dataset.state === 'connected'`, 45*time.Second,
		`JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error)})`)

	watchTab := newTab(t, browser, gw.base+"/watch.html?stream=e2e&muted=0") // with sound: audio decoded too
	start, end := playFor(t, watchTab, 3, 45*time.Second)

	if end.Width <= 0 || end.Height <= 0 {
		t.Errorf("videoWidth x videoHeight = %dx%d", end.Width, end.Height)
	}
	// Progress, not speed: the fake camera sends 20 fps (60 frames in 3 s),
	// but a loaded 2-core machine can encode far fewer.
	decoded := end.Total - start.Total
	if decoded < 15 {
		t.Errorf("only %d frames decoded over 3 s of playback", decoded)
	}
	if end.Total > 0 && float64(end.Dropped) > 0.2*float64(end.Total) {
		t.Errorf("dropped %d of %d frames", end.Dropped, end.Total)
	}
	if end.AudioBytes <= start.AudioBytes {
		t.Errorf("no audio decoded: webkitAudioDecodedByteCount %d -> %d", start.AudioBytes, end.AudioBytes)
	}
	if end.State != "playing" {
		t.Errorf("player state %q", end.State)
	}
	// The gateway listens for TLS only: what played came over wss.
	if got := evalJS[string](t, watchTab, `location.protocol`); got != "https:" {
		t.Errorf("watch page protocol %q", got)
	}
	var streams []struct {
		Viewers int `json:"viewers"`
	}
	getJSON(t, gw.base+"/api/streams", &streams)
	if len(streams) != 1 || streams[0].Viewers != 1 {
		t.Errorf("/api/streams over https: %+v", streams)
	}
	if kind := publisherKindOf(t, gw, "e2e"); kind != "browser" {
		t.Errorf("/api/streams: the publish page's publisher kind is %q", kind)
	}
	// The watch page's reports reach the metrics (once a second).
	eventually(t, "the player's stats in the metrics", 20*time.Second, func() bool {
		m, _ := scrape(t, gw.base+"/metrics", nil)
		return m["gateway_viewer_latency_seconds_count"] > 0 && m[`gateway_publishers_by_kind{kind="browser"}`] == 1
	})
	screenshot(t, pubTab, "publish.png")
	screenshot(t, watchTab, "watch.png")
}

// playFor waits until the tab's video plays, then for secs more of
// playback (each wait bounded by timeout), and returns the playback state
// at both ends.
func playFor(t *testing.T, tab context.Context, secs float64, timeout time.Duration) (start, end playback) {
	t.Helper()
	dbg := `JSON.stringify(` + playbackJS + `)`
	waitJS(t, tab, "playback started", `document.querySelector('video').currentTime > 0.2`, timeout, dbg)
	start = evalJS[playback](t, tab, playbackJS)
	waitJS(t, tab, ftoa(secs)+" s of playback", `document.querySelector('video').currentTime >= `+ftoa(start.CurrentTime+secs), timeout, dbg)
	end = evalJS[playback](t, tab, playbackJS)
	t.Logf("playback: start %+v end %+v", start, end)
	return start, end
}

// screenshot saves a PNG of the tab into $SCREENSHOT_DIR, when set, for a
// person to look at.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png := evalScreenshot(t, tab)
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
	}
}

func evalScreenshot(t *testing.T, tab context.Context) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot: %v", err)
	}
	return png
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
