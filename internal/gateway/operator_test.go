package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/apitest"
)

// TestOperatorAPI: the viewer list and the end buttons' endpoints need the
// admin grant, check their input, and do what they say.
func TestOperatorAPI(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) {
		c.Auth.PublishToken, c.Auth.AdminToken = "pub-token", "adm-token"
	})
	video, audio := testMedia(t)
	publish(t, gw, "op", video, audio)
	v := watch(t, gw, "op")
	v.expectInit(10 * time.Second)
	if err := v.c.SendText(`{"type":"stats","latency":0.25,"buffered":0.2,"decodedFrames":90,"droppedFrames":2}`); err != nil {
		t.Fatal(err)
	}
	adm := bearer("adm-token")
	for _, tc := range []struct {
		what, method, path string
		hdr                map[string]string
		status             int
	}{
		{"no token", "GET", "/api/streams/op/viewers", nil, 401},
		{"the publish token", "GET", "/api/streams/op/viewers", bearer("pub-token"), 403},
		{"a bad name", "GET", "/api/streams/no%20way/viewers", adm, 400},
		{"an unknown stream", "GET", "/api/streams/nothing/viewers", adm, 404},
		{"a bad viewer id", "DELETE", "/api/streams/op/viewers/x", adm, 400},
		{"an unknown viewer", "DELETE", "/api/streams/op/viewers/999999", adm, 404},
		{"end without a token", "DELETE", "/api/streams/op/publisher", nil, 401},
		{"end an unknown stream", "DELETE", "/api/streams/nothing/publisher", adm, 404},
	} {
		r := do(t, tc.method, gw.base+tc.path, "", "", tc.hdr)
		if r.status != tc.status || r.ctype != "application/json" || r.errMsg == "" {
			t.Errorf("%s: %+v, want %d with a JSON error", tc.what, r, tc.status)
		}
	}
	var list []struct {
		ID     uint64
		Remote string
		Stats  *struct{ Latency float64 }
	}
	waitFor(t, "the viewer listed with its stats", 10*time.Second, func() bool {
		r := apitest.Do(t, testHTTP, "GET", gw.base+"/api/streams/op/viewers", "", "", adm)
		if r.Status != http.StatusOK {
			t.Fatalf("viewers: %d %s", r.Status, r.Body)
		}
		if err := json.Unmarshal([]byte(r.Body), &list); err != nil {
			t.Fatal(err)
		}
		return len(list) == 1 && list[0].Stats != nil && list[0].Stats.Latency == 0.25 && list[0].Remote != ""
	})
	if r := do(t, "DELETE", gw.base+"/api/streams/op/viewers/"+jsonNumber(list[0].ID), "", "", adm); r.status != http.StatusNoContent {
		t.Fatalf("end viewer: %+v", r)
	}
	if ctl, _ := v.expectControl("error", 10*time.Second); !strings.Contains(ctl.Message, "operator") {
		t.Fatalf("ended viewer got %q", ctl.Message)
	}
	if r := do(t, "DELETE", gw.base+"/api/streams/op/publisher", "", "", adm); r.status != http.StatusNoContent {
		t.Fatalf("end publish: %+v", r)
	}
	waitFor(t, "the publish ended", 10*time.Second, func() bool { return !gw.g.Live("op") })
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestOperatorPage: operator.html in Chromium with the admin token shows the
// live stream (codec, size, keyframe interval, publisher address), draws its
// charts, lists its viewer with the latency it reported, and its buttons
// disconnect the viewer and end the publish (a second click confirms).
func TestOperatorPage(t *testing.T) {
	gw := startGateway(t, func(c *configs.Config) {
		c.Auth.PublishToken, c.Auth.AdminToken = "pub-token", "adm-token"
	})
	video, audio := testMedia(t)
	publish(t, gw, "desk", video, audio)
	v := watch(t, gw, "desk")
	v.expectInit(10 * time.Second)
	if err := v.c.SendText(`{"type":"stats","latency":0.31,"buffered":0.3,"decodedFrames":120,"droppedFrames":3}`); err != nil {
		t.Fatal(err)
	}
	browser := newBrowser(t)
	debug := `JSON.stringify({state: document.body.dataset.state, error: window.operator && window.operator.error,
	  row: (document.querySelector('tr[data-stream="desk"]') || {}).textContent})`

	// Without a token: the page asks for one.
	anon := newTab(t, browser, gw.base+"/operator.html")
	waitJS(t, anon, "the page asks for an admin token", `document.body.dataset.state === 'login' && !document.getElementById('login').hidden`, 20*time.Second, debug)

	tab := newTab(t, browser, gw.base+"/operator.html?token=adm-token")
	waitJS(t, tab, "the stream with its video track, keyframe interval and publisher", `(() => {
	  const row = document.querySelector('tr[data-stream="desk"]');
	  return document.body.dataset.state === 'ok' && !!row && /H\.264 \d+×\d+/.test(row.textContent) &&
	    /keyframe every \d/.test(row.textContent) && /WHIP/.test(row.textContent) && /127\.0\.0\.1/.test(row.textContent);
	})()`, 30*time.Second, debug)
	if strings.Contains(evalJS[string](t, tab, `location.href`), "token") {
		t.Error("the admin token stays in the address bar")
	}
	waitJS(t, tab, "the bitrate chart drawn", `(() => {
	  const c = document.querySelector('tr[data-stream="desk"] canvas');
	  if (!c) return false;
	  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
	  return n > 50 && window.operator.history.get('desk').bitrate.length >= 3;
	})()`, 30*time.Second, debug)

	evalJS[bool](t, tab, `document.querySelector('tr[data-stream="desk"] button[data-action="viewers"]').click(), true`)
	waitJS(t, tab, "the viewer list with the reported latency", `(() => {
	  const rows = document.querySelectorAll('#viewers tr[data-viewer]');
	  return rows.length === 1 && /310 ms/.test(rows[0].textContent);
	})()`, 20*time.Second, `document.getElementById('viewers').textContent`)
	screenshot(t, tab, "operator-live.png")
	evalJS[bool](t, tab, `(() => { const b = document.querySelector('#viewers tr[data-viewer] button'); b.click(); b.click(); return true; })()`)
	if ctl, _ := v.expectControl("error", 10*time.Second); !strings.Contains(ctl.Message, "operator") {
		t.Fatalf("the disconnected viewer got %q", ctl.Message)
	}

	evalJS[bool](t, tab, `(() => { const b = [...document.querySelectorAll('tr[data-stream="desk"] button')].find((x) => /End publish/.test(x.textContent)); b.click(); b.click(); return true; })()`)
	waitFor(t, "the publish ended from the page", 15*time.Second, func() bool { return !gw.g.Live("desk") })
	screenshot(t, tab, "operator.png")
}
