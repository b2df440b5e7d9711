package peer_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/remux"
)

// serveWHIP answers WHIP POSTs with the sessions of an engine on loopback,
// each started into sink; the sessions come out of the channel as they are
// made. The engine and the server close with the test.
func serveWHIP(t *testing.T, sink remux.Sink) (url string, sessions <-chan *peer.Session) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine, err := peer.NewEngine(peer.Config{UDPAddress: "127.0.0.1", IncludeLoopback: true, LoopbackOnly: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	out := make(chan *peer.Session, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offer, _ := io.ReadAll(r.Body)
		sess, answer, err := engine.Accept(r.Context(), string(offer), peer.SessionOptions{Logger: log})
		if err == nil {
			if err = sess.Start(sink); err != nil {
				_ = sess.Close()
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out <- sess
		w.Header().Set("Content-Type", "application/sdp")
		w.Header().Set("Location", "/whip/x/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, out
}
