package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// TestWHIPICERestart: a publisher restarts ICE over WHIP (RFC 9725 section
// 4.3.2): PATCH with If-Match: "*" and new credentials gets 200 with the
// gateway's new credentials and a new ETag, media keep flowing on the new
// ICE session long enough for consent checks with stale credentials to have
// failed it, and the ETag rules hold: a stale entity-tag gets 412, an old
// ICE generation's ufrag 422, trickle with the current tag 204.
func TestWHIPICERestart(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	gw := startGateway(t, nil)
	video, audio := testMedia(t)
	pub := publish(t, gw, "restart", video, audio)
	v := watch(t, gw, "restart")
	_, init := v.expectInit(10 * time.Second)
	segs, stop := v.collect(time.Second)
	if stop != nil {
		t.Fatalf("viewer: %+v", stop)
	}

	etag0 := pub.ETag()
	if len(etag0) < 3 || etag0[0] != '"' || etag0[len(etag0)-1] != '"' {
		t.Fatalf("201 ETag = %q, want a quoted entity-tag", etag0)
	}
	const frag = "application/trickle-ice-sdpfrag"
	cand := "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	oldUfrag := "a=ice-ufrag:" + pub.LocalUfrag() + "\r\n"

	// Trickle with the current tag is accepted; a wrong tag is not.
	if r := do(t, "PATCH", pub.Location(), frag, oldUfrag+cand, map[string]string{"If-Match": etag0}); r.status != 204 {
		t.Fatalf("trickle with the current ETag: %d %s", r.status, r.errMsg)
	}
	if r := do(t, "PATCH", pub.Location(), frag, cand, map[string]string{"If-Match": `"nope"`}); r.status != 412 {
		t.Fatalf("trickle with a wrong ETag: %d %s, want 412", r.status, r.errMsg)
	}
	if r := do(t, "PATCH", pub.Location(), frag, "a=ice-ufrag:abcd\r\n"+cand, nil); r.status != 422 || !strings.Contains(r.errMsg, "If-Match") {
		t.Fatalf("another ufrag without If-Match: %d %q, want 422", r.status, r.errMsg)
	}
	if r := do(t, "PATCH", pub.Location(), frag, "a=ice-ufrag:abcd\r\n", map[string]string{"If-Match": "*"}); r.status != 400 || !strings.Contains(r.errMsg, "ice-pwd") {
		t.Fatalf("restart without ice-pwd: %d %q, want 400", r.status, r.errMsg)
	}

	for round := 1; round <= 2; round++ {
		before := pub.ETag()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := pub.RestartICE(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ICE restart %d: %v", round, err)
		}
		if after := pub.ETag(); after == before || after == "" {
			t.Fatalf("ICE restart %d: ETag %q -> %q, want a new one", round, before, after)
		}
		// Consent checks run every few seconds and the gateway gives up 5 s
		// after they stop; 8 s of media prove the new credentials work on
		// both sides.
		more, stop := v.collect(8 * time.Second)
		if stop != nil {
			t.Fatalf("after ICE restart %d the viewer got %+v", round, stop)
		}
		if len(more) < 150 {
			t.Fatalf("after ICE restart %d: %d segments in 8 s", round, len(more))
		}
		segs = append(segs, more...)
	}
	// The first generation's tag and ufrag are stale now.
	if r := do(t, "PATCH", pub.Location(), frag, cand, map[string]string{"If-Match": etag0}); r.status != 412 {
		t.Fatalf("trickle with a stale ETag: %d %s, want 412", r.status, r.errMsg)
	}
	if r := do(t, "PATCH", pub.Location(), frag, oldUfrag+cand, nil); r.status != 422 {
		t.Fatalf("trickle with an old ufrag: %d %s, want 422", r.status, r.errMsg)
	}
	if r := do(t, "PATCH", pub.Location(), frag, "a=ice-ufrag:"+pub.LocalUfrag()+"\r\n"+cand, map[string]string{"If-Match": pub.ETag()}); r.status != 204 {
		t.Fatalf("trickle after the restarts: %d %s", r.status, r.errMsg)
	}
	checkPlayable(t, "viewer across ICE restarts", init, segs)
}

// TestBrowserICERestart: publish.html restarts ICE the way it does when
// its connection goes 'disconnected' (a network change), over WHIP (PATCH)
// and over WebSocket signaling (a new offer on the socket). The publish goes
// on without a new init, a viewer keeps receiving media for longer than the
// gateway would keep a session whose consent checks fail, and Chromium's
// selected candidate pair moves to the gateway's new credentials.
func TestBrowserICERestart(t *testing.T) {
	gw := startGateway(t, nil)
	browser := newBrowser(t)
	for _, signal := range []string{"whip", "ws"} {
		t.Run(signal, func(t *testing.T) {
			stream := "brestart-" + signal
			pub := newTab(t, browser, gw.base+"/publish.html?stream="+stream+"&autostart=1&width=320&height=240&fps=30&signal="+signal)
			waitJS(t, pub, "publisher connected", `document.body.dataset.state === 'connected'`, 45*time.Second, publisherDebugJS)
			v := watch(t, gw, stream)
			v.expectInit(20 * time.Second)
			if segs, stop := v.collect(time.Second); stop != nil || len(segs) == 0 {
				t.Fatalf("before the restart: %d segments, %+v", len(segs), stop)
			}
			etag := evalJS[string](t, pub, `String(window.publisher.etag)`)
			const gatewayUfrag = `(window.publisher.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1]`
			before := evalJS[string](t, pub, gatewayUfrag)
			evalJS[bool](t, pub, `(window.publisher.restartIce().then((ok) => { window.__restart = ok; }, (e) => { window.__restart = 'error: ' + e.message; }), true)`)
			waitJS(t, pub, "ICE restart done", `window.__restart !== undefined`, 30*time.Second, publisherDebugJS)
			if r := evalJS[any](t, pub, `window.__restart`); r != true {
				t.Fatalf("restartIce() = %v", r)
			}
			if after := evalJS[string](t, pub, gatewayUfrag); after == before {
				t.Fatalf("the gateway's ICE ufrag stayed %q: it did not restart", after)
			}
			if e := evalJS[string](t, pub, `String(window.publisher.etag)`); signal == "whip" && (e == etag || e == "") {
				t.Fatalf("ETag %q -> %q after the restart", etag, e)
			}
			// Chromium keeps sending on the old pair until the new ICE generation
			// connects: wait until the selected pair's remote candidate carries the
			// gateway's new ufrag, which proves the gateway really restarted.
			evalJS[bool](t, pub, `(() => { window.__pairUfrag = ''; setInterval(async () => {
			  const pc = window.publisher.pc; if (!pc) return;
			  const s = await pc.getStats(); let tr; s.forEach((r) => { if (r.type === 'transport') tr = r; });
			  const pair = tr && s.get(tr.selectedCandidatePairId); const rc = pair && s.get(pair.remoteCandidateId);
			  window.__pairUfrag = (rc && rc.usernameFragment) || '';
			  window.__wantUfrag = (pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
			}, 200); return true; })()`)
			waitJS(t, pub, "the selected candidate pair uses the gateway's new ICE credentials",
				`window.__pairUfrag !== '' && window.__pairUfrag === window.__wantUfrag`, 20*time.Second,
				`JSON.stringify({pair: window.__pairUfrag, want: window.__wantUfrag})`)
			segs, stop := v.collect(8 * time.Second)
			if stop != nil {
				t.Fatalf("after the ICE restart the viewer got %+v", stop)
			}
			if len(segs) < 60 {
				t.Fatalf("after the ICE restart: %d segments in 8 s", len(segs))
			}
			if st := evalJS[string](t, pub, `document.body.dataset.state + ' | ' + document.getElementById('i-ice').textContent`); !strings.HasPrefix(st, "connected | ") || !strings.Contains(st, "1 restart") {
				t.Fatalf("publish page shows %q", st)
			}
		})
	}
}
