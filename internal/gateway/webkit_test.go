package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/mediafile"
)

// WebKit (WebKitGTK's MiniBrowser driven by WebKitWebDriver over the W3C WebDriver
// protocol, on a virtual X server) plays the watch page like Chromium and Firefox.
// Debian: apt-get install webkit2gtk-driver xvfb gstreamer1.0-plugins-good
// gstreamer1.0-plugins-bad gstreamer1.0-libav (.ci/run does).

// webkit is one MiniBrowser session.
type webkit struct {
	t       *testing.T
	base    string // http://127.0.0.1:PORT/session/ID
	client  *http.Client
	logPath string
	driver  int // WebKitWebDriver's pid: the browser's processes are its descendants
}

// miniBrowserPath finds WebKitGTK's MiniBrowser (not on PATH in Debian).
func miniBrowserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MINIBROWSER"); p != "" {
		return p
	}
	for _, pat := range []string{"/usr/lib/*/webkit2gtk-4.1/MiniBrowser", "/usr/lib/*/webkit2gtk-4.0/MiniBrowser", "/usr/libexec/webkit2gtk-4.*/MiniBrowser"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[0]
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("WebKitGTK's MiniBrowser is required in CI (apt-get install webkit2gtk-driver)")
	}
	t.Skip("WebKitGTK MiniBrowser not installed")
	return ""
}

// newWebKit starts Xvfb, WebKitWebDriver and a MiniBrowser session; all end with the test.
func newWebKit(t *testing.T) *webkit {
	t.Helper()
	driver := requireBinary(t, "WebKitWebDriver", "apt-get install webkit2gtk-driver", os.Getenv("WEBKITWEBDRIVER"), "WebKitWebDriver")
	xvfb := requireBinary(t, "Xvfb", "apt-get install xvfb", "Xvfb")
	browser := miniBrowserPath(t)
	dir := t.TempDir()

	// Xvfb picks a free display and writes its number to fd 3.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{w}
	if err := x.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() { _ = x.Process.Kill(); _ = x.Wait() })
	display := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		display <- strings.TrimSpace(line)
		r.Close()
	}()
	var disp string
	select {
	case disp = <-display:
	case <-time.After(20 * time.Second):
		t.Fatal("Xvfb did not report a display")
	}
	if disp == "" {
		t.Fatal("Xvfb exited without a display")
	}

	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	logPath := filepath.Join(dir, "webkit.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	d := exec.Command(driver, "--port="+port)
	// The browser's home, data and caches live outside t.TempDir: its GPU and web
	// processes may still be writing them while the test's cleanup removes it.
	cache, err := os.MkdirTemp("", "webkit-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(cache) })
	d.Env = append(os.Environ(), "DISPLAY=:"+disp, "HOME="+cache, "XDG_RUNTIME_DIR="+dir, "XDG_CACHE_HOME="+filepath.Join(cache, "cache"), "MESA_SHADER_CACHE_DISABLE=true",
		"XDG_DATA_HOME="+filepath.Join(cache, "data"), "GST_REGISTRY="+filepath.Join(cache, "gst-registry.bin"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatalf("start WebKitWebDriver: %v", err)
	}
	t.Cleanup(func() { _ = d.Process.Kill(); _ = d.Wait(); logf.Close() })

	wk := &webkit{t: t, client: &http.Client{Timeout: 60 * time.Second}, logPath: logPath, driver: d.Process.Pid}
	root := "http://127.0.0.1:" + port
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"webkitgtk:browserOptions": map[string]any{"binary": browser, "args": []string{"--automation"}},
	}}}
	var sess struct {
		SessionID    string         `json:"sessionId"`
		Capabilities map[string]any `json:"capabilities"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = wk.call("POST", root+"/session", caps, &sess)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the driver is still starting
	}
	if err != nil {
		t.Fatalf("WebKit session: %v\n%s", err, wk.log())
	}
	wk.base = root + "/session/" + sess.SessionID
	t.Logf("WebKit: %v %v on display :%s", sess.Capabilities["browserName"], sess.Capabilities["browserVersion"], disp)
	t.Cleanup(func() { _ = wk.call("DELETE", wk.base, nil, nil) })
	return wk
}

func (wk *webkit) log() string {
	b, _ := os.ReadFile(wk.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// call does one WebDriver command; out receives the response's "value".
func (wk *webkit) call(method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// A command still unanswered after 20 s: the web process is likely blocked;
	// record what its threads are doing while it still is.
	stuck := make(chan string, 1)
	timer := time.AfterFunc(20*time.Second, func() { stuck <- wk.procState() })
	res, err := wk.client.Do(req)
	if !timer.Stop() {
		state := <-stuck
		wk.t.Logf("WebDriver %s %s unanswered after 20 s (answered in the end: %v); the browser's processes then:\n%s", method, url, err == nil, state)
	}
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var resp struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&resp); err != nil {
		return fmt.Errorf("%s %s: %d, %v", method, url, res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, resp.Value)
	}
	if out != nil {
		return json.Unmarshal(resp.Value, out)
	}
	return nil
}

func (wk *webkit) navigate(url string) {
	wk.t.Helper()
	if err := wk.call("POST", wk.base+"/url", map[string]string{"url": url}, nil); err != nil {
		wk.t.Fatalf("navigate %s: %v", url, err)
	}
}

// eval returns the value of a JavaScript expression (JSON-serialisable) into out.
func (wk *webkit) eval(expr string, out any) error {
	return wk.call("POST", wk.base+"/execute/sync", map[string]any{"script": "return (" + expr + ");", "args": []any{}}, out)
}

func (wk *webkit) mustEval(expr string, out any) {
	wk.t.Helper()
	if err := wk.eval(expr, out); err != nil {
		wk.t.Fatalf("eval %s: %v", expr, err)
	}
}

// wait polls expr until it is true or timeout passes; then fails with debug's value.
func (wk *webkit) wait(what, expr string, timeout time.Duration, debug string) {
	wk.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := wk.eval("!!("+expr+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			_ = wk.eval(debug, &state)
			// A call that timed out means the web process stopped answering: the
			// driver's and browser's own log (GStreamer, WebKit) is a clue, and the
			// processes' state logged 20 s into the call (see call) tells a blocked
			// web process (its main thread waiting, no CPU used) from a slow one.
			wk.t.Fatalf("%s: not within %v (last error %v); page state: %s\nWebKit log (tail):\n%s", what, timeout, err, state, wk.log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// webkitStateJS reads watch.html's player and video in WebKit.
const webkitStateJS = `(() => {
  const v = document.querySelector('video');
  const p = window.player || {};
  const b = v.buffered;
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
  return {state: p.state || document.body.dataset.state || '', mode: p.mode || '', currentTime: v.currentTime,
    latency: b.length ? b.end(b.length - 1) - v.currentTime : -1,
    range: b.length ? b.end(b.length - 1) - b.start(0) : 0, start: b.length ? b.start(0) : 0,
    target: p.targetLatency || 0, base: p.baseLatency || 0,
    width: v.videoWidth, height: v.videoHeight,
    // WebKit restarts its frame counters at a flush (seek): the player's running totals.
    total: p.stats && p.stats.decodedFrames !== undefined ? p.stats.decodedFrames : 0, dropped: (p.stats && p.stats.droppedFrames) || 0,
    inits: p.inits || 0, stalls: p.stalls || 0, jumps: p.jumps || 0,
    reconnects: (p.stats && p.stats.reconnects) || 0, rate: v.playbackRate,
    srcObject: !!v.srcObject, lastError: String(p.lastError || '')};
})()`

const webkitDebugJS = `JSON.stringify({s: ` + webkitStateJS + `, muted: document.querySelector('video').muted,
  paused: document.querySelector('video').paused, message: window.player && window.player.message,
  quirk: window.player && window.player.rateQuirk, banner: document.getElementById('banner-text').textContent,
  trace: window.player && window.player.trace && window.player.trace.filter((x) => !/appended|ratechange/.test(x)).slice(-20)})`

func (wk *webkit) player() playerState {
	wk.t.Helper()
	var s playerState
	wk.mustEval(webkitStateJS, &s)
	return s
}

// advance waits until the video played d more seconds and returns both ends.
func (wk *webkit) advance(what string, d float64, timeout time.Duration) (playerState, playerState) {
	wk.t.Helper()
	a := wk.player()
	wk.wait(what, fmt.Sprintf(`document.querySelector('video').currentTime >= %s`, ftoa(a.CurrentTime+d)), timeout, webkitDebugJS)
	return a, wk.player()
}

// unmutedJS installs a counter of volumechange events that left the video unmuted.
const unmutedJS = `(() => {
  const v = document.querySelector('video');
  window.__unmuted = 0; window.__pausedByEngine = 0;
  v.addEventListener('volumechange', () => { if (!v.muted) window.__unmuted++; });
  return true;
})()`

// TestWebKitWatch: the watch page in WebKitGTK: a cold start of an on-demand
// stream, a join of the running stream that reaches and holds the live edge with
// muted autoplay kept, resolution changes, and an error shown on the page.
func TestWebKitWatch(t *testing.T) {
	gw := startGateway(t, nil)
	// Each part gets a browser of its own (Xvfb, driver, MiniBrowser): a web
	// process busy tearing down the previous page's media pipeline cannot
	// stall the next part's WebDriver calls.

	t.Run("cold start", func(t *testing.T) {
		wk := newWebKit(t)
		wk.navigate(gw.base + "/watch.html?stream=testpattern")
		wk.wait("cold on-demand stream plays", `window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5`, 60*time.Second, webkitDebugJS)
		a, b := wk.advance("3 s of playback", 3, 45*time.Second)
		t.Logf("cold start: %+v -> %+v", a, b)
		checkProgress(t, "cold start", a, b, 20)
		if b.Mode != "main" {
			t.Errorf("mode %q: auto must pick the main thread in WebKitGTK", b.Mode)
		}
	})

	t.Run("join and live edge", func(t *testing.T) {
		wk := newWebKit(t)
		wk.navigate(gw.base + "/watch.html?stream=testpattern")
		wk.mustEval(unmutedJS, nil)
		wk.wait("joined stream plays", `window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5`, 60*time.Second, webkitDebugJS)
		// Let it settle on the live edge, then watch 8 s of it.
		wk.advance("settle", 3, 45*time.Second)
		first := wk.player()
		var worst float64
		for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			s := wk.player()
			if s.Latency > worst {
				worst = s.Latency
			}
			var muted, paused bool
			wk.mustEval(`document.querySelector('video').muted`, &muted)
			wk.mustEval(`document.querySelector('video').paused`, &paused)
			if !muted || paused {
				var dbg string
				_ = wk.eval(webkitDebugJS, &dbg)
				t.Fatalf("muted autoplay lost: muted=%v paused=%v; %s", muted, paused, dbg)
			}
		}
		last := wk.player()
		var unmuted int
		wk.mustEval(`window.__unmuted`, &unmuted)
		var dbg string
		_ = wk.eval(webkitDebugJS, &dbg)
		t.Logf("live edge: worst latency %.3f s over 8 s; %+v -> %+v; %s", worst, first, last, dbg)
		if unmuted > 0 {
			t.Errorf("the element was unmuted %d times (only the viewer may unmute)", unmuted)
		}
		checkProgress(t, "joined", first, last, 60)
		// Held near the edge: generous bound (a loaded machine), not a speed figure.
		if worst > last.Target+1.5 {
			t.Errorf("latency reached %.2f s (target %.2f s): the live edge was not held", worst, last.Target)
		}
		if last.State != "playing" {
			t.Errorf("state %q", last.State)
		}
		var shown string
		wk.mustEval(`document.getElementById('i-error').textContent`, &shown)
		if want := last.LastError; want != "" && shown != want {
			t.Errorf("last error %q not shown on the page (%q)", want, shown)
		}
	})

	t.Run("resolution change", func(t *testing.T) {
		wk := newWebKit(t)
		publishSwitching(t, gw, "wkswitch")
		wk.navigate(gw.base + "/watch.html?stream=wkswitch")
		wk.wait("switching stream plays", `window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5`, 60*time.Second, webkitDebugJS)
		wk.mustEval(frameGapJS, nil)
		wk.mustEval(unmutedJS, nil)
		a := wk.player()
		wk.wait("three resolution changes", fmt.Sprintf(`window.player.inits >= %d`, a.Inits+3), 60*time.Second, webkitDebugJS)
		var f0, f1 int
		wk.mustEval(`window.__frames`, &f0)
		b, c := wk.advance("playback after the changes", 3, 45*time.Second)
		wk.mustEval(`window.__frames`, &f1)
		var gap float64
		var at string
		wk.mustEval(`window.__maxGap`, &gap)
		wk.mustEval(`window.__gapAt`, &at)
		var dbg string
		_ = wk.eval(webkitDebugJS, &dbg)
		t.Logf("inits %d -> %d, %dx%d; %d frames presented (rVFC) in the last 3 s; longest gap between presented frames %.0f ms at %s; %s", a.Inits, c.Inits, c.Width, c.Height, f1-f0, gap, at, dbg)
		// WebKitGTK has no changeType: a new init of the same codec goes on the same
		// SourceBuffer (engine.js), no MediaSource rebuild, so frames keep coming
		// (about 90 in 3 s at 30 fps; before, a rebuild at each init could leave the
		// new pipeline decoding nothing for seconds). A loose bound: a loaded machine.
		if presented := f1 - f0; presented < 20 {
			t.Errorf("%d frames presented in 3 s of playback across resolution changes", presented)
		}
		// The element's counters restart at a flush and the running totals follow them
		// only once a second: logged, not asserted.
		t.Logf("frames decoded in those 3 s: %d", c.Total-b.Total)
		if c.State != "playing" {
			t.Errorf("state %q after the changes", c.State)
		}
		// WebKitGTK still shows a hole at a new init (up to ~1.2 s, the new SPS's decoder
		// reconfiguration): logged, not asserted.
		var unmuted int
		wk.mustEval(`window.__unmuted`, &unmuted)
		if unmuted > 0 {
			t.Errorf("unmuted %d times", unmuted)
		}
	})

	t.Run("managed", func(t *testing.T) {
		wk := newWebKit(t)
		// WebKitGTK has ManagedMediaSource too: the Safari path, for real.
		wk.navigate(gw.base + "/watch.html?stream=testpattern&mode=managed")
		wk.wait("ManagedMediaSource plays", `window.player && window.player.state === 'playing' && document.querySelector('video').currentTime > 0.5`, 60*time.Second, webkitDebugJS)
		a, b := wk.advance("3 s of playback", 3, 45*time.Second)
		var streaming any
		wk.mustEval(`window.player.streaming`, &streaming)
		t.Logf("managed: %+v -> %+v; streaming %v", a, b, streaming)
		if b.Mode != "managed" {
			t.Errorf("mode %q, want managed", b.Mode)
		}
		checkProgress(t, "managed", a, b, 20)
	})

	t.Run("error shown", func(t *testing.T) {
		wk := newWebKit(t)
		// WebKitGTK has no MediaSource in workers: a forced worker path is an error the page shows.
		wk.navigate(gw.base + "/watch.html?stream=testpattern&mode=worker")
		wk.wait("error state", `document.body.dataset.state === 'error'`, 30*time.Second, webkitDebugJS)
		// The banner says it at once; the stats panel's "Last error" at its next
		// refresh (every second).
		wk.wait("the reason shown in the banner and as the last error",
			`/worker/.test(document.getElementById('banner-text').textContent) && /worker/.test(document.getElementById('i-error').textContent)`,
			10*time.Second, `JSON.stringify([document.getElementById('banner-text').textContent, document.getElementById('i-error').textContent])`)
	})
}

// publishSwitching publishes the 640x360 and 1280x720 test files one GOP after
// the other, looped: a new init (another SPS) every 3 s, for the switch tests.
func publishSwitching(t *testing.T, gw *testGateway, stream string) {
	t.Helper()
	small, audio := testMedia(t)
	big := readH264(t, "testdata/media/h264_1280x720_30fps_2500k.h264")
	video := append(gop(small, 90), gop(big, 90)...)
	publish(t, gw, stream, video, audio)
}

func readH264(t *testing.T, rel string) []mediafile.AccessUnit {
	t.Helper()
	units, err := mediafile.ReadH264(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return units
}

// gop returns the first n access units from the first keyframe on.
func gop(units []mediafile.AccessUnit, n int) []mediafile.AccessUnit {
	for i, u := range units {
		if u.Keyframe {
			units = units[i:]
			break
		}
	}
	return units[:min(n, len(units))]
}

// procState describes the browser's processes (the driver's descendants) while a
// WebDriver command goes unanswered: every WebKit process's threads with their state,
// kernel wait channel and CPU time, whether the web process's main thread used any CPU
// in one second (none: blocked, the page is frozen for its user too; some: only slow),
// and, when gdb is installed, the web process's stacks: the main thread's whole, the
// others' top frames. A main thread waiting inside GStreamer is WebKit's, not the page's.
func (wk *webkit) procState() string {
	parent, comm := map[int]int{}, map[int]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(filepath.Join("/proc", d.Name(), "stat")); ok {
			parent[pid], comm[pid] = st.ppid, st.name
		}
	}
	var out strings.Builder
	for pid, name := range comm {
		up := parent[pid]
		for up > 1 && up != wk.driver {
			up = parent[up]
		}
		if !strings.HasPrefix(name, "WebKit") || pid == wk.driver || up != wk.driver {
			continue
		}
		fmt.Fprintf(&out, "process %d %s:\n", pid, name)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			dir := fmt.Sprintf("/proc/%d/task/%s", pid, task.Name())
			if st, ok := readProcStat(dir + "/stat"); ok {
				wchan, _ := os.ReadFile(dir + "/wchan")
				fmt.Fprintf(&out, "  thread %s %-16s %s cpu %d ticks, waits in %s\n", task.Name(), st.name, st.state, st.cpu, wchan)
			}
		}
		if name != "WebKitWebProces" { // comm is cut at 15 bytes
			continue
		}
		main := fmt.Sprintf("/proc/%d/stat", pid)
		a, _ := readProcStat(main)
		time.Sleep(time.Second)
		b, _ := readProcStat(main)
		if b.cpu == a.cpu {
			fmt.Fprintf(&out, "  the main thread used no CPU in 1 s (state %s): it is blocked, not busy\n", b.state)
		} else {
			fmt.Fprintf(&out, "  the main thread used %d ticks of CPU in 1 s: busy, not blocked\n", b.cpu-a.cpu)
		}
		gdb, err := exec.LookPath("gdb")
		if err != nil {
			continue
		}
		cmd := exec.Command(gdb, "-p", strconv.Itoa(pid), "-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 100")
		done := make(chan []byte, 1)
		go func() { b, _ := cmd.CombinedOutput(); done <- b }()
		select {
		case b := <-done:
			stacks, inGst := gdbStacks(b, pid)
			if inGst {
				out.WriteString("  the main thread waits inside GStreamer (see its stack): WebKit's media pipeline, not the page's JavaScript\n")
			}
			out.WriteString(stacks)
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			out.WriteString("  (gdb did not finish)\n")
		}
	}
	return out.String()
}

type procStat struct {
	name, state string
	ppid        int
	cpu         int // utime + stime, clock ticks
}

// readProcStat reads /proc/PID[/task/TID]/stat.
func readProcStat(path string) (procStat, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(s[end+1:]) // from field 3 (state) on
	if len(f) < 13 {
		return procStat{}, false
	}
	st := procStat{name: s[open+1 : end], state: f[0]}
	st.ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	st.cpu = utime + stime
	return st, true
}

// gdbStacks keeps the frames of gdb's "thread apply all bt": all of the main
// thread's (LWP pid), the first 6 of every other thread's; inGst: the main thread
// is in a GStreamer function.
func gdbStacks(b []byte, pid int) (stacks string, inGst bool) {
	var out strings.Builder
	mainLWP := fmt.Sprintf("(LWP %d)", pid)
	isMain, frames := false, 0
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "Thread "):
			isMain, frames = strings.Contains(line, mainLWP), 0
			if isMain {
				line += " <- main thread"
			}
			out.WriteString("  " + line + "\n")
		case strings.HasPrefix(line, "#"):
			if isMain && strings.Contains(line, " gst_") {
				inGst = true
			}
			if frames++; isMain || frames <= 6 {
				out.WriteString("    " + line + "\n")
			} else if frames == 7 {
				out.WriteString("    ...\n")
			}
		}
	}
	return out.String(), inGst
}
