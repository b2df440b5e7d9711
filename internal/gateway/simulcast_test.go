package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/fmp4check"
)

// TestBrowserSimulcast: Chromium publishes one camera as three simulcast
// layers (320x180, 640x360, 1280x720 by RID) over WHIP. The gateway
// negotiates simulcast (browsers reject an answer without the RID header
// extension), starts viewers on the first layer that arrives, and moves to
// the layer carrying the most bits once the browser's bandwidth estimate has
// ramped up: viewers get a new init at the larger size, and what they
// receive after it decodes. Each layer's RTCP is read as its own (Pion
// logged an error for every packet read the other way).
func TestBrowserSimulcast(t *testing.T) {
	fmp4check.RequireFFmpeg(t)
	logs := &syncBuffer{}
	gw := startGatewayLogged(t, loopbackConfig(), logs)
	browser := newBrowser(t)
	tab := newTab(t, browser, gw.base+"/publish.html?stream=unused")
	evalJS[bool](t, tab, `(async () => {
	  try {
	    const s = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720, frameRate: 30}, audio: false});
	    const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'}); window.__pc = pc;
	    pc.addTransceiver(s.getVideoTracks()[0], {direction: 'sendonly', sendEncodings: [
	      {rid: 'q', scaleResolutionDownBy: 4}, {rid: 'h', scaleResolutionDownBy: 2}, {rid: 'f'}]});
	    await pc.setLocalDescription(await pc.createOffer());
	    await new Promise((ok) => { if (pc.iceGatheringState === 'complete') ok();
	      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') ok(); }); });
	    const res = await fetch('/whip/simulcast', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
	    if (res.status !== 201) throw new Error('WHIP ' + res.status + ' ' + await res.text());
	    await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
	    window.__ok = true;
	  } catch (e) { window.__err = String(e); }
	})(), true`)
	waitJS(t, tab, "simulcast publish negotiated", `window.__ok || window.__err`, 30*time.Second, `String(window.__err)`)
	if e := evalJS[string](t, tab, `String(window.__err || '')`); e != "" {
		t.Fatal(e)
	}
	v := watch(t, gw, "simulcast")
	ctl, init := v.expectInit(30 * time.Second)
	first := ctl.Tracks[0].Width
	t.Logf("first init: %dx%d", ctl.Tracks[0].Width, ctl.Tracks[0].Height)
	// Wait for a larger layer (the browser enables its top layers as its
	// bandwidth estimate grows on loopback).
	deadline := time.Now().Add(45 * time.Second)
	for ctl.Tracks[0].Width <= first {
		if time.Now().After(deadline) {
			t.Fatalf("still %dx%d after 45 s: the gateway stayed on the first layer\nthe browser's layers: %s\nthe gateway's simulcast log:\n%s",
				ctl.Tracks[0].Width, ctl.Tracks[0].Height, senderLayers(t, tab), grepLines(logs.String(), "simulcast"))
		}
		_, stop := v.collect(time.Until(deadline))
		if stop == nil {
			continue
		}
		if stop.Type != "init" {
			t.Fatalf("viewer got %+v", stop)
		}
		m, err := v.c.Next(5 * time.Second)
		if err != nil || m.Binary == nil {
			t.Fatalf("init text not followed by its segment: %v", err)
		}
		ctl, init = stop, m.Binary
		t.Logf("new init: %dx%d", ctl.Tracks[0].Width, ctl.Tracks[0].Height)
	}
	t.Logf("the browser's layers: %s", senderLayers(t, tab))
	segs, stop := v.collect(3 * time.Second)
	if stop != nil && stop.Type != "init" {
		t.Fatalf("viewer got %+v", stop)
	}
	if n := checkPlayable(t, "viewer after the layer switch", init, segs); n < 20 {
		t.Fatalf("%d frames in 3 s after the switch", n)
	}
	if l := logs.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("errors logged:\n%s", l)
	}
}

// senderLayers is what the publishing browser says of its simulcast layers
// (size, rate, what limits them) and its bandwidth estimate.
func senderLayers(t *testing.T, tab context.Context) string {
	t.Helper()
	evalJS[bool](t, tab, `(window.__layers = undefined, window.__pc.getStats().then((r) => {
	  const out = [];
	  r.forEach((s) => {
	    if (s.type === 'outbound-rtp') out.push({rid: s.rid, width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond, bytesSent: s.bytesSent,
	      active: s.active, targetBitrate: s.targetBitrate, limitedBy: s.qualityLimitationReason});
	    if (s.type === 'candidate-pair' && s.nominated) out.push({availableOutgoingBitrate: s.availableOutgoingBitrate, rtt: s.currentRoundTripTime});
	  });
	  window.__layers = JSON.stringify(out);
	}, (e) => { window.__layers = String(e); }), true)`)
	waitJS(t, tab, "the publisher's stats", `window.__layers !== undefined`, 10*time.Second, `'none'`)
	return evalJS[string](t, tab, `window.__layers`)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}
