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

// serveWHIP answers WHIP POSTs with engine's sessions, each started into
// sink; the sessions come out of the channel as they are made. The server
// closes with the test.
func serveWHIP(t *testing.T, engine *peer.Engine, log *slog.Logger, sink remux.Sink) (url string, sessions <-chan *peer.Session) {
	t.Helper()
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
