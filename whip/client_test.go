package whip

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// newPC is a Pion publisher with one sendonly video transceiver.
func newPC(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	return pc
}

// answer makes a real answer to offer (Pion answerer, gathering complete).
func answer(t *testing.T, offer string) string {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Error(err)
		return ""
	}
	t.Cleanup(func() { pc.Close() })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Error(err)
		return ""
	}
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Error(err)
		return ""
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(a); err != nil {
		t.Error(err)
		return ""
	}
	<-done
	return pc.LocalDescription().SDP
}

// whipServer answers POSTs with post and records DELETEs.
type whipServer struct {
	mu      sync.Mutex
	deletes []string
	auth    []string
}

func (ws *whipServer) start(t *testing.T, post func(w http.ResponseWriter, offer string)) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.mu.Lock()
		ws.auth = append(ws.auth, r.Header.Get("Authorization"))
		ws.mu.Unlock()
		switch r.Method {
		case http.MethodPost:
			if r.Header.Get("Content-Type") != "application/sdp" {
				http.Error(w, "content type", http.StatusUnsupportedMediaType)
				return
			}
			b, _ := io.ReadAll(r.Body)
			post(w, string(b))
		case http.MethodPatch:
			http.Error(w, `{"error":"ICE restart not allowed"}`, http.StatusMethodNotAllowed)
		case http.MethodDelete:
			ws.mu.Lock()
			ws.deletes = append(ws.deletes, r.URL.Path)
			ws.mu.Unlock()
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestOfferAndDelete(t *testing.T) {
	var ws whipServer
	base := ws.start(t, func(w http.ResponseWriter, offer string) {
		w.Header().Set("Location", "../sessions/abc") // relative to the endpoint
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer(t, offer))
	})
	c := &Client{Endpoint: base + "/whip/cam", Token: "tok"}
	pc := newPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Offer(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	if s.Location() != base+"/sessions/abc" || s.ETag() != `"e1"` {
		t.Fatalf("Location %q, ETag %q", s.Location(), s.ETag())
	}
	if pc.RemoteDescription() == nil || !strings.Contains(pc.LocalDescription().SDP, "a=candidate") {
		t.Fatal("the answer was not applied, or the offer held no candidate")
	}
	if status := s.Delete(); status != http.StatusOK {
		t.Fatalf("DELETE: %d", status)
	}
	if len(ws.deletes) != 1 || ws.deletes[0] != "/sessions/abc" || ws.auth[0] != "Bearer tok" || ws.auth[1] != "Bearer tok" {
		t.Fatalf("deletes %v, auth %v", ws.deletes, ws.auth)
	}
}

func TestOfferRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		name   string
		post   func(w http.ResponseWriter, offer string)
		check  func(err error) bool
		delete bool // the client must end the session it could not use
	}{
		{"an error status", func(w http.ResponseWriter, _ string) {
			http.Error(w, `{"error":"stream already has a publisher"}`, http.StatusConflict)
		}, func(err error) bool {
			he, ok := errors.AsType[*HTTPError](err)
			return ok && he.Status == 409 && strings.Contains(err.Error(), "already has a publisher")
		}, false},
		{"201 without a Location", func(w http.ResponseWriter, offer string) {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "v=0")
		}, func(err error) bool { return strings.Contains(err.Error(), "without a Location") }, false},
		{"an answer that does not apply", func(w http.ResponseWriter, _ string) {
			w.Header().Set("Location", "/whip/cam/1")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "not SDP")
		}, func(err error) bool { return strings.Contains(err.Error(), "bad SDP answer") }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ws whipServer
			base := ws.start(t, c.post)
			_, err := (&Client{Endpoint: base + "/whip/cam"}).Offer(ctx, newPC(t))
			if err == nil || !c.check(err) {
				t.Fatalf("err = %v", err)
			}
			if got := len(ws.deletes) == 1; got != c.delete {
				t.Fatalf("DELETEs sent: %v", ws.deletes)
			}
		})
	}
}

// A refused ICE restart is an error naming the refusal; the session can
// still be ended. (Pion cannot roll the offer back: the error says that too.)
func TestRestartICERefused(t *testing.T) {
	var ws whipServer
	base := ws.start(t, func(w http.ResponseWriter, offer string) {
		w.Header().Set("Location", "/whip/cam/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer(t, offer))
	})
	pc := newPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := (&Client{Endpoint: base + "/whip/cam"}).Offer(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RestartICE(ctx); err == nil || !strings.Contains(err.Error(), "405") || !strings.Contains(err.Error(), "ICE restart not allowed") {
		t.Fatalf("restart refused by the server: %v", err)
	}
	if status := s.Delete(); status != http.StatusOK {
		t.Fatalf("DELETE after a refused restart: %d", status)
	}
}
