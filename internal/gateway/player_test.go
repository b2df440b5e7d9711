package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
)

// Browser tests of the player (web/static/player.js, engine.js, mse-worker.js) and of
// the publisher page. A Go WHIP publisher (the checked-in H.264 + Opus files, looped)
// feeds the player tests, so the browser only decodes; the publisher tests use
// Chromium's fake camera.

// playerState is what the tests read from watch.html.
type playerState struct {
	State       string  `json:"state"`
	Mode        string  `json:"mode"`
	CurrentTime float64 `json:"currentTime"`
	Latency     float64 `json:"latency"` // buffered end - currentTime
	Range       float64 `json:"range"`   // buffered end - buffered start
	Start       float64 `json:"start"`   // buffered start
	Target      float64 `json:"target"`
	Base        float64 `json:"base"`
	Width       int     `json:"width"`
	Height      int     `json:"height"`
	Total       int     `json:"total"`
	Dropped     int     `json:"dropped"`
	Inits       int     `json:"inits"`
	Stalls      int     `json:"stalls"`
	Jumps       int     `json:"jumps"`
	Reconnects  int     `json:"reconnects"`
	Rate        float64 `json:"rate"`
	SrcObject   bool    `json:"srcObject"`
	LastError   string  `json:"lastError"`
}

const playerStateJS = `(() => {
  const v = document.querySelector('video');
  const p = window.player || {};
  const b = v.buffered;
  const q = v.getVideoPlaybackQuality();
  return {state: p.state || '', mode: p.mode || '', currentTime: v.currentTime,
    latency: b.length ? b.end(b.length - 1) - v.currentTime : -1,
    range: b.length ? b.end(b.length - 1) - b.start(0) : 0,
    start: b.length ? b.start(0) : 0,
    target: p.targetLatency || 0, base: p.baseLatency || 0,
    width: v.videoWidth, height: v.videoHeight,
    total: q.totalVideoFrames, dropped: q.droppedVideoFrames,
    inits: p.inits || 0, stalls: p.stalls || 0, jumps: p.jumps || 0,
    reconnects: (p.stats && p.stats.reconnects) || 0, rate: v.playbackRate,
    srcObject: !!v.srcObject, lastError: String(p.lastError || '')};
})()`

const playerDebugJS = `JSON.stringify(` + playerStateJS + `)`

func readPlayer(t *testing.T, tab context.Context) playerState {
	t.Helper()
	return evalJS[playerState](t, tab, playerStateJS)
}

// waitAdvance waits until the video's currentTime moved d seconds past its
// current value and returns the states before and after.
func waitAdvance(t *testing.T, tab context.Context, what string, d float64, timeout time.Duration) (playerState, playerState) {
	t.Helper()
	before := readPlayer(t, tab)
	waitJS(t, tab, what, fmt.Sprintf(`document.querySelector('video').currentTime >= %s`, ftoa(before.CurrentTime+d)), timeout, playerDebugJS)
	return before, readPlayer(t, tab)
}

// waitPlaying waits until the player says playing and the video has advanced 0.5 s.
func waitPlaying(t *testing.T, tab context.Context, timeout time.Duration) {
	t.Helper()
	waitJS(t, tab, "player playing", `window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5`, timeout, playerDebugJS)
}

// checkProgress asserts frames were decoded between two states (progress, not speed).
func checkProgress(t *testing.T, what string, a, b playerState, minFrames int) {
	t.Helper()
	if n := b.Total - a.Total; n < minFrames {
		t.Errorf("%s: only %d frames decoded (%d -> %d)", what, n, a.Total, b.Total)
	}
	if b.Width <= 0 || b.Height <= 0 {
		t.Errorf("%s: video size %dx%d", what, b.Width, b.Height)
	}
}

// apiStream fetches /api/streams and returns the entry for name.
func apiStream(t *testing.T, base, name string) map[string]any {
	t.Helper()
	res, err := testHTTP.Get(base + "/api/streams")
	if err != nil {
		t.Fatalf("GET /api/streams: %v", err)
	}
	defer res.Body.Close()
	var list []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatalf("decode /api/streams: %v", err)
	}
	for _, s := range list {
		if s["name"] == name {
			return s
		}
	}
	return nil
}

// liveInBrowser starts a gateway where stream is live (the test media,
// published over WHIP) and a Chromium to watch it with.
func liveInBrowser(t *testing.T, stream string) (*testGateway, context.Context) {
	t.Helper()
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	publish(t, gw, stream, video, audio)
	return gw, newBrowser(t)
}

// inEachMode runs fn in a subtest per player path (worker, main), on a tab
// whose player (url with &mode=) has started playing.
func inEachMode(t *testing.T, browser context.Context, url string, fn func(t *testing.T, mode string, tab context.Context)) {
	for _, mode := range []string{"worker", "main"} {
		t.Run(mode, func(t *testing.T) {
			tab := newTab(t, browser, url+"&mode="+mode)
			waitPlaying(t, tab, 45*time.Second)
			fn(t, mode, tab)
		})
	}
}

// TestPlayerModes: the worker path (MediaSource in a dedicated worker, handle set
// as srcObject) and the main-thread path each play a stream, report stats to the
// server, and keep the latency near the target.
func TestPlayerModes(t *testing.T) {
	gw, browser := liveInBrowser(t, "modes")

	inEachMode(t, browser, gw.base+"/watch.html?stream=modes", func(t *testing.T, mode string, tab context.Context) {
		a, b := waitAdvance(t, tab, "3 s of playback", 3, 45*time.Second)
		t.Logf("%s: %+v -> %+v", mode, a, b)
		if b.Mode != mode {
			t.Errorf("player.mode = %q, want %q", b.Mode, mode)
		}
		if b.SrcObject != (mode == "worker") {
			t.Errorf("video.srcObject set = %v in mode %s (worker mode uses the MediaSourceHandle)", b.SrcObject, mode)
		}
		checkProgress(t, mode, a, b, 30)
		if b.State != "playing" {
			t.Errorf("state %q", b.State)
		}
		// The stats overlay shows the figures and the server got them.
		overlay := evalJS[string](t, tab, `document.getElementById('s-latency').textContent + ' | ' + document.getElementById('s-mode').textContent + ' | ' + document.getElementById('s-frames').textContent`)
		t.Logf("overlay: %s", overlay)
		if overlay == "" || overlay[0] == '-' {
			t.Errorf("overlay empty: %q", overlay)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := apiStream(t, gw.base, "modes")
			vs, _ := s["viewerStats"].(map[string]any)
			if vs != nil && vs["reporting"].(float64) >= 1 && vs["decodedFrames"].(float64) > 0 {
				t.Logf("viewerStats: %v", vs)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no viewer stats in /api/streams: %v", s)
			}
			time.Sleep(500 * time.Millisecond)
		}
		// A player's stats has every field from start(), not only after the first second.
		if fresh := evalJS[string](t, tab, `(() => {
		  const p = new window.player.constructor(document.createElement('video'), {stream: 'modes', mode: '`+mode+`'});
		  p.start(); const s = JSON.stringify(p.stats); p.stop(); return s; })()`); !strings.Contains(fresh, `"mediaSources":`) || !strings.Contains(fresh, `"latency":`) {
			t.Errorf("stats right after start(): %s", fresh)
		}
		evalJS[bool](t, tab, `window.player.stop(), true`)
	})
	// No mode forced: a browser with only ManagedMediaSource gets the managed path.
	t.Run("managed", func(t *testing.T) {
		tab := newTabWithScript(t, browser, gw.base+"/watch.html?stream=modes", managedOnlyJS)
		waitPlaying(t, tab, 45*time.Second)
		a, b := waitAdvance(t, tab, "3 s of playback", 3, 45*time.Second)
		t.Logf("managed: %+v -> %+v", a, b)
		if b.Mode != "managed" {
			t.Errorf("player.mode = %q, want managed (auto-detected)", b.Mode)
		}
		if !evalJS[bool](t, tab, `document.querySelector('video').disableRemotePlayback`) {
			t.Errorf("disableRemotePlayback not set on the managed path")
		}
		checkProgress(t, "managed", a, b, 30)
	})
}

// fixedGateway is a gateway on a fixed loopback address that a test can stop and
// start again (a gateway restart as the player sees it).
type fixedGateway struct {
	t    *testing.T
	addr string
	g    *gateway.Gateway
	done chan error
	base string
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startFixedGateway(t *testing.T, addr string) *fixedGateway {
	t.Helper()
	cfg := configs.Default()
	cfg.Listen = addr
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.UDPAddress = "127.0.0.1"
	cfg.WebRTC.IncludeLoopback = true
	level := slog.LevelError
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), gateway.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the previous gateway's socket may linger a moment
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("listen %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fg := &fixedGateway{t: t, addr: addr, g: g, done: make(chan error, 1), base: "http://" + addr}
	go func() { fg.done <- g.Serve(ln) }()
	t.Cleanup(fg.stop)
	return fg
}

func (fg *fixedGateway) stop() {
	if fg.g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fg.g.Close(ctx); err != nil {
		fg.t.Errorf("gateway close: %v", err)
	}
	if err := <-fg.done; err != nil {
		fg.t.Errorf("serve: %v", err)
	}
	fg.g = nil
}

// TestPlayerReconnect: the gateway stops and a new one starts on the same port; the
// page (no reload) reconnects with backoff and plays the stream again.
func TestPlayerReconnect(t *testing.T) {
	addr := freeAddr(t)
	gw1 := startFixedGateway(t, addr)
	video, audio := testMedia(t)
	p1 := publish(t, &testGateway{g: gw1.g, base: gw1.base}, "restart", video, audio)
	browser := newBrowser(t)
	tab := newTab(t, browser, gw1.base+"/watch.html?stream=restart")
	waitPlaying(t, tab, 45*time.Second)
	a, _ := waitAdvance(t, tab, "playback before restart", 1, 30*time.Second)
	evalJS[bool](t, tab, `window.__marker = 'same page', true`)

	p1.Close()
	gw1.stop()
	waitJS(t, tab, "player notices the restart", `window.player.state !== 'playing'`, 20*time.Second, playerDebugJS)
	time.Sleep(1500 * time.Millisecond) // the gateway is down for a while: backoff grows

	gw2 := startFixedGateway(t, addr)
	publish(t, &testGateway{g: gw2.g, base: gw2.base}, "restart", video, audio)
	waitPlaying(t, tab, 45*time.Second)
	b, c := waitAdvance(t, tab, "playback after restart", 2, 45*time.Second)
	t.Logf("before %+v; after restart %+v -> %+v", a, b, c)
	if m := evalJS[string](t, tab, `String(window.__marker)`); m != "same page" {
		t.Fatalf("page was reloaded (marker %q)", m)
	}
	if c.Reconnects < 1 && evalJS[int](t, tab, `window.player.stats.reconnects || 0`) < 1 {
		t.Errorf("no reconnect counted")
	}
	if c.Inits < 2 {
		t.Errorf("inits = %d, want a second init after the restart", c.Inits)
	}
	// The stopping gateway said goaway (PROTOCOL.md "Drain"), not error.
	if n := evalJS[int](t, tab, `window.player.goaways || 0`); n < 1 {
		t.Errorf("the player saw no goaway from the stopping gateway")
	}
	checkProgress(t, "after restart", b, c, 20)
}

// TestPlayerInitChange: a second publisher takes the stream over with another
// resolution; the viewer gets a new init mid-stream and keeps playing.
func TestPlayerInitChange(t *testing.T) {
	// A takeover needs the publish right proved by a token.
	gw := startGateway(t, func(c *configs.Config) { c.Auth.PublishToken = "pub-token" })
	video, audio := testMedia(t)
	browser := newBrowser(t)
	pub := newTab(t, browser, gw.base+"/publish.html?stream=takeover&autostart=1&width=320&height=240&fps=15&signal=whip&token=pub-token")
	waitJS(t, pub, "first publisher connected", `document.body.dataset.state === 'connected'`, 45*time.Second,
		`JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error)})`)

	for _, mode := range []string{"worker", "main"} {
		t.Run(mode, func(t *testing.T) {
			tab := newTab(t, browser, gw.base+"/watch.html?stream=takeover&mode="+mode)
			waitPlaying(t, tab, 45*time.Second)
			a, b := waitAdvance(t, tab, "first publisher plays", 1, 30*time.Second)
			t.Logf("first: %+v -> %+v", a, b)
			// The Go publisher (640x360) takes over: a new init with another SPS.
			p := publish(t, gw, "takeover", video, audio)
			waitJS(t, tab, "new init", fmt.Sprintf(`window.player.inits > %d`, b.Inits), 20*time.Second, playerDebugJS)
			waitJS(t, tab, "new resolution shown", `document.querySelector('video').videoWidth === 640`, 30*time.Second, playerDebugJS)
			c, d := waitAdvance(t, tab, "playback after the new init", 2, 30*time.Second)
			t.Logf("after takeover: %+v -> %+v", c, d)
			checkProgress(t, "after takeover", c, d, 20)
			if d.State != "playing" {
				t.Errorf("state %q after the new init", d.State)
			}
			p.Close()
			evalJS[bool](t, tab, `window.player.stop(), true`)
			// Let the browser publisher take the stream back for the next mode.
			evalJS[bool](t, pub, `window.publisher.stop().then(() => window.publisher.start({keepResolution: true})), true`)
			waitJS(t, pub, "browser publisher back", `document.body.dataset.state === 'connected'`, 45*time.Second,
				`JSON.stringify({state: document.body.dataset.state, error: String(window.publisher && window.publisher.error)})`)
		})
	}
}

// TestPlayerStallRecovery: the network stalls for 2 s (the player's test hook holds
// back media, then delivers it in one burst); the player sees the stall, raises its
// target, and brings latency back under the target within 10 s.
func TestPlayerStallRecovery(t *testing.T) {
	gw, browser := liveInBrowser(t, "stall")
	inEachMode(t, browser, gw.base+"/watch.html?stream=stall", func(t *testing.T, mode string, tab context.Context) {
		waitAdvance(t, tab, "steady playback", 3, 30*time.Second)
		waitJS(t, tab, "latency near target before the stall", `(() => { const v = document.querySelector('video'); const b = v.buffered;
		  return b.length && b.end(b.length-1) - v.currentTime < window.player.targetLatency + 0.15; })()`, 20*time.Second, playerDebugJS)
		before := readPlayer(t, tab)
		evalJS[bool](t, tab, `window.player.simulateStall(2000), true`)
		start := time.Now().Add(2 * time.Second) // the held media arrives in a burst then
		waitJS(t, tab, "stall seen", fmt.Sprintf(`window.player.stalls > %d`, before.Stalls), 10*time.Second, playerDebugJS)
		// Wait for the burst: the buffered end is 1.5 s past where it was.
		waitJS(t, tab, "burst after the stall", fmt.Sprintf(`(() => { const b = document.querySelector('video').buffered;
		  return b.length && b.end(b.length-1) > %s; })()`, ftoa(before.CurrentTime+before.Latency+1.5)), 15*time.Second, playerDebugJS)
		// Under the (possibly raised) target again, with a 50 ms allowance for the
		// frame granularity of the buffered end, and playing.
		waitJS(t, tab, "latency back under target", `(() => { const v = document.querySelector('video'); const b = v.buffered;
		  return !v.paused && b.length && b.end(b.length-1) - v.currentTime < window.player.targetLatency + 0.05; })()`, time.Until(start.Add(10*time.Second)), playerDebugJS)
		after := readPlayer(t, tab)
		t.Logf("before %+v\nrecovered after %v: %+v", before, time.Since(start).Round(10*time.Millisecond), after)
		if after.Target <= after.Base-1e-9 || after.Target > 1.0 {
			t.Errorf("target %.3f (base %.3f): want raised within bounds after a stall", after.Target, after.Base)
		}
		c, d := waitAdvance(t, tab, "playback after recovery", 2, 30*time.Second)
		checkProgress(t, "after recovery", c, d, 20)
		evalJS[bool](t, tab, `window.player.stop(), true`)
	})
}

// TestPlayerEviction: with keep=2 (seconds kept behind the playhead) the buffered
// range stays bounded over a 20 s run while old media is really removed.
func TestPlayerEviction(t *testing.T) {
	gw, browser := liveInBrowser(t, "evict")
	tab := newTab(t, browser, gw.base+"/watch.html?stream=evict&keep=2")
	waitPlaying(t, tab, 45*time.Second)
	run := 20 * time.Second
	if os.Getenv("EVICTION_RUN") != "" {
		if d, err := time.ParseDuration(os.Getenv("EVICTION_RUN")); err == nil {
			run = d
		}
	}
	// Bound: keep (2 s) + eviction period (1 s) + the latency jump threshold (~1.2 s)
	// + a second of slack for a loaded machine.
	const bound = 5.2
	first := readPlayer(t, tab)
	var maxRange float64
	for end := time.Now().Add(run); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		s := readPlayer(t, tab)
		if s.Range > maxRange {
			maxRange = s.Range
		}
		if s.Range > bound {
			t.Fatalf("buffered range %.2f s > bound %.1f s: %+v", s.Range, bound, s)
		}
	}
	last := readPlayer(t, tab)
	t.Logf("max buffered range %.2f s over %v; first %+v; last %+v", maxRange, run, first, last)
	if last.CurrentTime-first.CurrentTime < run.Seconds()/2 {
		t.Errorf("played only %.1f s in %v", last.CurrentTime-first.CurrentTime, run)
	}
	if last.Start < first.Start+run.Seconds()/3 {
		t.Errorf("buffered start moved %.2f -> %.2f: nothing evicted", first.Start, last.Start)
	}
}

// newTabWithScript opens a tab that runs script before any of the page's own
// scripts, then navigates it to url.
func newTabWithScript(t *testing.T, browser context.Context, url, script string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: script})
			return err
		}),
		chromedp.Navigate(url),
	); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	return tab
}

// managedOnlyJS makes the page look like iPhone Safari 17+: no MediaSource,
// only ManagedMediaSource. Chromium has no ManagedMediaSource, so a subclass
// of its MediaSource stands in for it, and like WebKit's it never opens
// unless the video element has remote playback disabled.
const managedOnlyJS = `(() => {
  const Real = window.MediaSource;
  const attached = new Set(); // object URLs of managed sources
  window.ManagedMediaSource = class ManagedMediaSource extends Real {};
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = (o) => { const u = createObjectURL(o); if (o instanceof window.ManagedMediaSource) attached.add(u); return u; };
  const srcDesc = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'src');
  Object.defineProperty(HTMLMediaElement.prototype, 'src', {
    get() { return srcDesc.get.call(this); },
    set(u) {
      if (attached.has(u) && !this.disableRemotePlayback) throw new Error('ManagedMediaSource attached without disableRemotePlayback');
      srcDesc.set.call(this, u);
    },
  });
  delete window.MediaSource;
})()`

// quotaFaultJS wraps MediaSource before the page's scripts run: every 50th
// appendBuffer throws QuotaExceededError, as a full SourceBuffer does (the
// real quota, ~150 MB in Chromium, takes far too long to reach in a test).
// Console warnings are kept for the test to read.
const quotaFaultJS = `(() => {
  const Real = window.MediaSource;
  const q = window.__quota = { appends: 0, thrown: 0, warnings: [] };
  const warn = console.warn.bind(console);
  console.warn = (...a) => { q.warnings.push(a.join(' ')); warn(...a); };
  window.MediaSource = class extends Real {
    addSourceBuffer(type) {
      const sb = super.addSourceBuffer(type);
      const append = sb.appendBuffer;
      sb.appendBuffer = function (data) {
        if (++q.appends % 50 === 0) {
          q.thrown++;
          throw new DOMException('injected: the SourceBuffer is full', 'QuotaExceededError');
        }
        return append.call(this, data);
      };
      return sb;
    }
  };
})()`

// TestPlayerQuotaExceeded: when appendBuffer throws QuotaExceededError the
// main-thread player evicts old media and retries the same segment, so
// nothing is lost and playback goes on (the worker path runs the same
// engine.js code).
func TestPlayerQuotaExceeded(t *testing.T) {
	gw, browser := liveInBrowser(t, "quota")
	tab := newTabWithScript(t, browser, gw.base+"/watch.html?stream=quota&mode=main", quotaFaultJS)
	waitPlaying(t, tab, 45*time.Second)
	waitJS(t, tab, "3 injected QuotaExceededErrors", `window.__quota.thrown >= 3`, 60*time.Second, `JSON.stringify(window.__quota)`)
	a, b := waitAdvance(t, tab, "3 s of playback after the errors", 3, 30*time.Second)
	checkProgress(t, "after QuotaExceededError", a, b, 30)
	type quotaState struct {
		Appends  int      `json:"appends"`
		Thrown   int      `json:"thrown"`
		Warnings []string `json:"warnings"`
	}
	q := evalJS[quotaState](t, tab, `window.__quota`)
	evicting, failed := 0, 0
	for _, w := range q.Warnings {
		if strings.Contains(w, "buffer full: evicting") {
			evicting++
		}
		if strings.Contains(w, "failed") {
			failed++
		}
	}
	t.Logf("appends %d, thrown %d, warnings %q; %+v -> %+v", q.Appends, q.Thrown, q.Warnings, a, b)
	if evicting < q.Thrown-1 { // the last one may be in flight
		t.Errorf("%d QuotaExceededErrors but %d evictions", q.Thrown, evicting)
	}
	if failed > 0 {
		t.Errorf("an append was dropped instead of retried after eviction: %q", q.Warnings)
	}
	if b.State != "playing" {
		t.Errorf("player state %q", b.State)
	}
}

// refuseAutoplayJS refuses playback with sound until the first click, as
// browsers do without a user activation. (Automation gives headless Chromium
// a sticky activation, so its autoplay policy flag cannot show this.)
const refuseAutoplayJS = `(() => {
  window.__clicked = false;
  document.addEventListener('click', () => { window.__clicked = true; }, true);
  const blocked = (v) => !window.__clicked && !v.muted;
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (blocked(this)) return Promise.reject(new DOMException('play() needs a user gesture', 'NotAllowedError'));
    return play.call(this);
  };
  // The autoplay attribute starts playback without play(): as a browser that refuses
  // unmuted autoplay, never let it start anything (pausing on 'play' instead would let
  // a loaded machine show a few frames first), and stop any play that slips through.
  Object.defineProperty(HTMLMediaElement.prototype, 'autoplay', {
    configurable: true,
    get() { return !!this.__autoplay; },
    set(v) { this.__autoplay = !!v; },
  });
  document.addEventListener('play', (e) => { if (blocked(e.target)) e.target.pause(); }, true);
})()`

// TestPlayerNeedsGesture: with sound requested (muted=0) and autoplay refused,
// watch.html asks for a click and leaves the video alone (no seeks) while it
// waits; the click starts playback with sound near the live edge.
func TestPlayerNeedsGesture(t *testing.T) {
	gw, browser := liveInBrowser(t, "gesture")
	tab := newTabWithScript(t, browser, gw.base+"/watch.html?stream=gesture&muted=0&mode=main", refuseAutoplayJS)
	// The prompt, once media flow and the player placed its playhead in them (its one
	// start seek): from then on it must leave the element alone until the click.
	waitJS(t, tab, "the click-to-play prompt", `!document.getElementById('gesture').hidden && window.player.needsGesture && window.player.started`, 45*time.Second, playerDebugJS)
	before := readPlayer(t, tab)
	seeks := evalJS[int](t, tab, `window.player.seeks || 0`)
	time.Sleep(3 * time.Second) // media keep coming while nobody clicks
	waiting := readPlayer(t, tab)
	// The player leaves the element alone: no seek, no jump, nothing played (the
	// element may settle its own playhead on the first buffered frame).
	seeksAfter := evalJS[int](t, tab, `window.player.seeks || 0`)
	paused := evalJS[bool](t, tab, `document.querySelector('video').paused`)
	if waiting.Jumps != before.Jumps || seeksAfter != seeks || !paused || waiting.Total > 8 {
		t.Errorf("while waiting for a click the player moved: seeks %d -> %d, paused %v, %+v -> %+v; trace %s", seeks, seeksAfter, paused, before, waiting,
			evalJS[string](t, tab, `JSON.stringify(window.player.trace || [])`))
	}
	// A real click (input events from the browser), which is a user activation.
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click("#gesture")); err != nil {
		t.Fatalf("click: %v", err)
	}
	waitPlaying(t, tab, 30*time.Second)
	waitAdvance(t, tab, "playback after the click reaches the live edge", 1, 30*time.Second)
	a, b := waitAdvance(t, tab, "2 s of playback after the click", 2, 30*time.Second)
	checkProgress(t, "after the click", a, b, 20)
	if muted := evalJS[bool](t, tab, `document.querySelector('video').muted`); muted {
		t.Error("playing muted after the click; muted=0 asked for sound")
	}
	if b.Latency > 1.0 {
		t.Errorf("latency %.2f s after the click: the player did not go to the live edge", b.Latency)
	}
}

// TestPlayerEmbedCrossOrigin: a page on another origin imports the gateway's
// mse-player.js and plays a stream with <mse-player>, in the worker path (a blob
// worker importing the gateway's module, as worker scripts must be same-origin)
// and on the main thread.
func TestPlayerEmbedCrossOrigin(t *testing.T) {
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	publish(t, gw, "embed", video, audio)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		mode := r.URL.Query().Get("mode")
		fmt.Fprintf(w, `<!doctype html><title>another site</title>
<script type="module" src="%s/mse-player.js"></script>
<p>Somebody else's page</p>
<mse-player id="p" stream="embed" latency="0.3" mode="%s" stats style="width: 640px"></mse-player>`, gw.base, mode)
	}))
	defer site.Close()
	if site.URL == gw.base {
		t.Fatal("same origin")
	}
	browser := newBrowser(t)
	for _, mode := range []string{"worker", "main"} {
		t.Run(mode, func(t *testing.T) {
			// Count the viewer sockets the page opens and the states the
			// element reports: one player, started once.
			tab := newTabWithScript(t, browser, site.URL+"/?mode="+mode, `(() => {
			  window.__sockets = 0; window.__states = [];
			  const WS = window.WebSocket;
			  window.WebSocket = class extends WS { constructor(...a) { super(...a); window.__sockets++; } };
			  document.addEventListener('state', (e) => window.__states.push(e.detail.state), true);
			})()`)
			dbg := `JSON.stringify({defined: !!customElements.get('mse-player'), state: document.getElementById('p').state,
			  mode: document.getElementById('p').player && document.getElementById('p').player.mode,
			  err: document.getElementById('p').player && document.getElementById('p').player.lastError,
			  t: document.getElementById('p').video.currentTime})`
			waitJS(t, tab, "embedded player playing", `document.getElementById('p').state === 'playing' && document.getElementById('p').video.currentTime > 0.5`, 45*time.Second, dbg)
			t0 := evalJS[float64](t, tab, `document.getElementById('p').video.currentTime`)
			waitJS(t, tab, "embedded player advances", fmt.Sprintf(`document.getElementById('p').video.currentTime > %s`, ftoa(t0+2)), 30*time.Second, dbg)
			if m := evalJS[string](t, tab, `document.getElementById('p').player.mode`); m != mode {
				t.Errorf("mode %q, want %q", m, mode)
			}
			if lt := evalJS[float64](t, tab, `document.getElementById('p').player.baseLatency`); lt != 0.3 {
				t.Errorf("latency attribute not applied: %v", lt)
			}
			st := evalJS[string](t, tab, `document.getElementById('p').shadowRoot.querySelector('.stats').textContent`)
			if !strings.Contains(st, "latency") || !strings.Contains(st, "mse      "+mode) {
				t.Errorf("stats overlay: %q", st)
			}
			if mode == "main" { // the worker's socket is not the page's
				if n := evalJS[int](t, tab, `window.__sockets`); n != 1 {
					t.Errorf("the page opened %d viewer sockets, want 1 (the element started twice)", n)
				}
			}
			if states := evalJS[[]string](t, tab, `window.__states`); slices.Contains(states, "ended") || slices.Contains(states, "error") {
				t.Errorf("element states %q: a player was stopped or failed", states)
			}
			// The button says what a click does, and does it.
			btn := `document.getElementById('p').shadowRoot.querySelector('button')`
			if l := evalJS[string](t, tab, btn+`.textContent`); l != "Unmute" {
				t.Errorf("button %q on a muted video, want Unmute", l)
			}
			if got := evalJS[string](t, tab, `(`+btn+`.click(), `+btn+`.textContent + ' ' + document.getElementById('p').video.muted)`); got != "Mute false" {
				t.Errorf("after a click: %q, want \"Mute false\"", got)
			}
			screenshot(t, tab, "embed-"+mode+".png")
		})
	}
}
