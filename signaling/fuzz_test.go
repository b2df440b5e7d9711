package signaling

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The handlers' parsing of what clients send, fuzzed through the real
// handlers (fake engine, real registry): any body and header must get one
// of the documented answers, never a 500 or a panic.

func fuzzServer(f *testing.F) http.Handler {
	ts := newTestServer(f, Options{Authorize: openAuth, MaxBodyBytes: 16 << 10}, nil)
	mux := http.NewServeMux()
	ts.srv.Register(mux)
	return mux
}

func FuzzWHIPPost(f *testing.F) {
	f.Add("v=0\r\n", "application/sdp")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n", "application/sdp")
	f.Add("", "application/sdp; charset=utf-8")
	f.Add("hello", "text/plain")
	h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body, ctype string) {
		req := httptest.NewRequest("POST", "/whip/fuzz", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 201, 400, 406, 409, 413, 415, 429, 503:
		default:
			t.Fatalf("POST %q (%s): %d %s", body, ctype, rec.Code, rec.Body)
		}
		if rec.Code == 201 { // end it, so the next input finds the stream free
			req := httptest.NewRequest("DELETE", rec.Header().Get("Location"), nil)
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	})
}

func FuzzWHIPPatch(f *testing.F) {
	f.Add("a=ice-ufrag:abcd\r\na=ice-pwd:aaaaaaaaaaaaaaaaaaaaaa\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n", "")
	f.Add("a=ice-ufrag:new1\r\na=ice-pwd:bbbbbbbbbbbbbbbbbbbbbb\r\n", "*")
	f.Add("a=end-of-candidates\r\n", `"stale"`)
	f.Add("a=candidate:\r\n", "W/\"x\", \"y\"")
	h := fuzzServer(f)
	// One live session to patch.
	req := httptest.NewRequest("POST", "/whip/patched", strings.NewReader(offerSDP(f)))
	req.Header.Set("Content-Type", "application/sdp")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 201 {
		f.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")
	f.Fuzz(func(t *testing.T, body, ifMatch string) {
		req := httptest.NewRequest("PATCH", loc, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 204, 400, 412, 413, 422:
		default:
			t.Fatalf("PATCH %q (If-Match %q): %d %s", body, ifMatch, rec.Code, rec.Body)
		}
	})
}
