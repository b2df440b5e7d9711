package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
)

// jsonError checks a JSON error reply: status and a message holding has.
func jsonError(t *testing.T, what string, status int, hdr http.Header, body string, wantStatus int, has string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if status != wantStatus || hdr.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, has) {
		t.Fatalf("%s: %d %s %q, want %d with a JSON error holding %q", what, status, hdr.Get("Content-Type"), body, wantStatus, has)
	}
}

// publishWHIP makes a WHIP session and returns its Location and ETag.
func publishWHIP(t *testing.T, ts *testServer, stream string, hdr map[string]string) (string, string) {
	t.Helper()
	status, h, body := ts.do(t, "POST", "/whip/"+stream, "application/sdp", offerSDP(t), hdr)
	if status != http.StatusCreated || h.Get("Content-Type") != "application/sdp" || body != "v=0 fake answer" {
		t.Fatalf("POST: %d %s %q", status, h.Get("Content-Type"), body)
	}
	loc := h.Get("Location")
	if !strings.HasPrefix(loc, "/whip/"+stream+"/") || len(loc) != len("/whip/"+stream+"/")+32 || h.Get("ETag") == "" {
		t.Fatalf("Location %q, ETag %q", loc, h.Get("ETag"))
	}
	ts.engine.mu.Lock()
	hold := ts.engine.holdConnect
	ts.engine.mu.Unlock()
	if !hold { // connected at once: wait for it to become the stream's source
		ts.waitStarted(t, ts.engine.session(t, len(ts.engine.sessions)-1))
	}
	return loc, h.Get("ETag")
}

func TestWHIPPostErrors(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: staticAuth("tok"), MaxBodyBytes: 16000}, func(o *mseout.Options) {
		def := configs.Default().StreamDefaults
		locked := def
		locked.AllowTakeover = false
		o.Settings = func(name string) configs.Stream {
			if name == "locked" {
				return locked
			}
			return def
		}
		o.Limits.MaxStreams = 2
	})
	auth := map[string]string{"Authorization": "Bearer tok"}
	offer := offerSDP(t)
	for _, c := range []struct {
		name, path, ctype, body string
		hdr                     map[string]string
		status                  int
		has                     string
	}{
		{"bad stream name", "/whip/a%20b", "application/sdp", offer, auth, 400, "invalid stream name"},
		{"a name of dots (Location /whip/../ID would name another resource)", "/whip/%2E%2E", "application/sdp", offer, auth, 400, "not . or .."},
		{"a name of one dot", "/whip/%2e", "application/sdp", offer, auth, 400, "not . or .."},
		{"no token", "/whip/s", "application/sdp", offer, nil, 401, "publish token required"},
		{"wrong token", "/whip/s", "application/sdp", offer, map[string]string{"Authorization": "Bearer nope"}, 403, "wrong publish token"},
		{"token in the query", "/whip/s?token=nope", "application/sdp", offer, nil, 403, "wrong publish token"},
		{"wrong content type", "/whip/s", "text/plain", offer, auth, 415, "application/sdp"},
		{"no content type", "/whip/s", "", offer, auth, 415, "application/sdp"},
		{"body too large", "/whip/s", "application/sdp", strings.Repeat("a", 16001), auth, 413, "larger than 16000"},
		{"empty offer", "/whip/s", "application/sdp", "", auth, 400, "empty"},
		{"not SDP", "/whip/s", "application/sdp", "hello", auth, 400, "malformed"},
	} {
		status, h, body := ts.do(t, "POST", c.path, c.ctype, c.body, c.hdr)
		jsonError(t, c.name, status, h, body, c.status, c.has)
	}
	if n := len(ts.engine.sessions); n != 0 {
		t.Fatalf("%d offers reached the engine; refused requests must not", n)
	}

	// Busy, takeover, limits.
	publishWHIP(t, ts, "locked", auth)
	status, h, body := ts.do(t, "POST", "/whip/locked", "application/sdp", offer, auth)
	jsonError(t, "second publisher on a locked stream", status, h, body, 409, "already has a publisher")
	publishWHIP(t, ts, "open", auth)
	publishWHIP(t, ts, "open", auth) // takeover of a live stream counts no new stream
	status, h, body = ts.do(t, "POST", "/whip/third", "application/sdp", offer, auth)
	jsonError(t, "over max_streams", status, h, body, 503, "too many streams")

	// What the engine refuses, mapped to its status.
	for _, c := range []struct {
		err    error
		status int
		has    string
	}{
		{peer.ErrNoAcceptableCodec, 406, "acceptable"},
		{peer.ErrMalformedOffer, 400, "malformed"},
		{errors.New("pion exploded"), 500, "pion exploded"},
	} {
		ts.engine.mu.Lock()
		ts.engine.err = c.err
		ts.engine.mu.Unlock()
		status, h, body := ts.do(t, "POST", "/whip/open", "application/sdp", offer, auth)
		jsonError(t, c.err.Error(), status, h, body, c.status, c.has)
	}
}

func TestWHIPPostAdvertisesICEServers(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	ts.engine.ice = []webrtc.ICEServer{{URLs: []string{"stun:stun.example.org:3478"}}}
	status, h, _ := ts.do(t, "POST", "/whip/s", "application/sdp", offerSDP(t), nil)
	if status != 201 || !strings.Contains(h.Get("Link"), `rel="ice-server"`) || h.Get("Access-Control-Expose-Headers") == "" ||
		h.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("%d %v", status, h)
	}
	ts.waitStarted(t, ts.engine.session(t, 0)) // once connected, it feeds its publication
	for _, path := range []string{"/whip/s", "/whip/s/abc"} {
		status, h, _ := ts.do(t, "OPTIONS", path, "", "", nil)
		if status != 204 || h.Get("Access-Control-Allow-Methods") == "" {
			t.Fatalf("OPTIONS %s: %d %v", path, status, h)
		}
		if path == "/whip/s" && (h.Get("Accept-Post") != "application/sdp" || h.Get("Link") == "") {
			t.Fatalf("OPTIONS %s: %v", path, h)
		}
	}
}

func TestWHIPPatchAndDelete(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	loc, etag := publishWHIP(t, ts, "s", nil)
	sess := ts.engine.session(t, 0)
	frag := func(ufrag string, cands ...string) string {
		b := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:passwordpasswordpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
		for _, c := range cands {
			b += "a=" + c + "\r\n"
		}
		return b
	}
	// The offer's ufrag, to trickle in the session's ICE generation.
	ufrag := ""
	for _, l := range strings.Split(sess.offer, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			ufrag = v
			break
		}
	}
	const cand = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
	const sdpfragType = "application/trickle-ice-sdpfrag"
	cases := []struct {
		name, path, ctype, body string
		hdr                     map[string]string
		status                  int
		has                     string
	}{
		{"unknown session", "/whip/s/0123456789abcdef0123456789abcdef", sdpfragType, frag(ufrag, cand), nil, 404, "no such WHIP session"},
		{"session of another stream", strings.Replace(loc, "/whip/s/", "/whip/t/", 1), sdpfragType, frag(ufrag, cand), nil, 404, "no such WHIP session"},
		{"wrong content type", loc, "application/sdp", frag(ufrag, cand), nil, 415, sdpfragType},
		{"stale entity-tag", loc, sdpfragType, frag(ufrag, cand), map[string]string{"If-Match": `"stale"`}, 412, "ETag"},
		{"another ICE generation", loc, sdpfragType, frag("otherufrag", cand), nil, 422, "ice-ufrag"},
		{"bad candidate", loc, sdpfragType, frag(ufrag, "candidate:garbage"), nil, 400, ""},
		{"restart without credentials", loc, sdpfragType, "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n", map[string]string{"If-Match": "*"}, 400, "ice-ufrag"},
	}
	for _, c := range cases {
		status, h, body := ts.do(t, "PATCH", c.path, c.ctype, c.body, c.hdr)
		jsonError(t, c.name, status, h, body, c.status, c.has)
	}
	// Trickle: 204, the candidate reaches the session.
	status, _, body := ts.do(t, "PATCH", loc, sdpfragType, frag(ufrag, cand), map[string]string{"If-Match": etag})
	if status != 204 || len(sess.candidates) != 1 {
		t.Fatalf("trickle: %d %q, %d candidates", status, body, len(sess.candidates))
	}
	// ICE restart: 200 with the gateway's new credentials and a new ETag;
	// the old tag is stale afterwards, the new ufrag current.
	status, h, body := ts.do(t, "PATCH", loc, sdpfragType, frag("newufrag"), map[string]string{"If-Match": "*"})
	if status != 200 || h.Get("Content-Type") != sdpfragType || !strings.Contains(body, "a=ice-ufrag:gwufrag2") ||
		h.Get("ETag") == "" || h.Get("ETag") == etag || len(sess.restarts) != 1 || sess.restarts[0].Ufrag != "newufrag" {
		t.Fatalf("restart: %d %v %q", status, h, body)
	}
	status, h2, body := ts.do(t, "PATCH", loc, sdpfragType, frag("newufrag", cand), map[string]string{"If-Match": etag})
	jsonError(t, "old entity-tag after a restart", status, h2, body, 412, "ETag")
	if status, _, _ := ts.do(t, "PATCH", loc, sdpfragType, frag("newufrag", cand), map[string]string{"If-Match": h.Get("ETag")}); status != 204 {
		t.Fatalf("trickle in the new generation: %d", status)
	}
	// A restart the session refuses leaves it as it was: 422.
	sess.mu.Lock()
	sess.restartErr = errors.New("cannot restart now")
	sess.mu.Unlock()
	status, h, body = ts.do(t, "PATCH", loc, sdpfragType, frag("newer"), map[string]string{"If-Match": "*"})
	jsonError(t, "refused restart", status, h, body, 422, "cannot restart now")

	// DELETE ends the publish: the session is closed, the stream is no
	// longer live, the resource is gone.
	if status, _, _ := ts.do(t, "DELETE", loc, "", "", nil); status != 200 {
		t.Fatalf("DELETE: %d", status)
	}
	if sess.closedCount() == 0 || ts.srv.Publishing() != 0 {
		t.Fatalf("after DELETE: session closed %d times, %d publishing", sess.closedCount(), ts.srv.Publishing())
	}
	for _, st := range ts.reg.Streams() {
		if st.Live {
			t.Fatalf("stream still live after DELETE: %+v", st)
		}
	}
	status, h, body = ts.do(t, "DELETE", loc, "", "", nil)
	jsonError(t, "second DELETE", status, h, body, 404, "no such WHIP session")
}

// A publisher whose connection fails is cleaned up by itself: no DELETE.
func TestWHIPSessionEndsWhenTheConnectionFails(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	loc, _ := publishWHIP(t, ts, "s", nil)
	ts.engine.session(t, 0).fail()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Publishing() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("publish not cleaned up after its connection failed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _, _ := ts.do(t, "DELETE", loc, "", "", nil); status != 404 {
		t.Fatalf("DELETE of an ended session: %d", status)
	}
}

// A publish gives at most maxRemoteCandidates ICE candidates, in its offer
// and trickled; each would cost connectivity checks to hosts it names.
func TestRemoteCandidatesAreBounded(t *testing.T) {
	ts := newTestServer(t, Options{MaxBodyBytes: 1 << 20}, nil)
	cand := func(i int) string {
		return fmt.Sprintf("a=candidate:%d 1 udp 2130706431 127.0.0.%d %d typ host\r\n", i, 1+i%200, 5000+i)
	}
	offer := offerSDP(t)
	var many strings.Builder
	for i := range maxRemoteCandidates + 1 {
		many.WriteString(cand(i))
	}
	// An offer with too many: 400. (Appended to its last media section.)
	status, h, body := ts.do(t, "POST", "/whip/s", "application/sdp", offer+many.String(), nil)
	jsonError(t, "offer with too many candidates", status, h, body, 400, "at most 100")

	loc, _ := publishWHIP(t, ts, "s", nil)
	sess := ts.engine.session(t, 0)
	ufrag := ""
	for _, l := range strings.Split(sess.offer, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			ufrag = v
			break
		}
	}
	frag := func(from, n int) string {
		b := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:passwordpasswordpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
		for i := from; i < from+n; i++ {
			b += cand(i)
		}
		return b
	}
	if status, _, body := ts.do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag(0, 60), nil); status != 204 {
		t.Fatalf("60 candidates: %d %s", status, body)
	}
	status, h, body = ts.do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag(60, 41), nil)
	jsonError(t, "the 101st candidate", status, h, body, 422, "at most 100")
	if status, _, body := ts.do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag(60, 40), nil); status != 204 {
		t.Fatalf("up to 100 candidates: %d %s", status, body)
	}
	if n := len(sess.candidates); n != 100 {
		t.Fatalf("%d candidates reached the session", n)
	}
}
