package gateway

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/mseway/mseway/httpapi"
)

// AdminHandler is the operator listener's handler (admin.listen): /metrics,
// /debug/pprof/ and /readyz, without access control: the listener is meant
// for loopback or a private network.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(g.metrics, g.log))
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return jsonErrors(mux)
}

// ServeAdmin serves the operator listener (AdminHandler) on ln until Close,
// which shuts it down after the main listener. It returns nil after Close.
func (g *Gateway) ServeAdmin(ln net.Listener) error {
	err := g.admin.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// readyz answers whether this gateway takes new clients: 503 until the ICE
// UDP socket is bound and from the start of Close (drain) on. In a cluster
// the body says whether the node's NATS connection is up; local streams
// work either way, so it stays 200 then.
func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	body := map[string]string{"status": "ready"}
	if c := g.cluster.state(); c != "" {
		body["cluster"] = c
	}
	switch {
	case g.draining.Load():
		body["status"] = "draining"
	case len(g.engine.UDPAddrs()) == 0:
		body["status"] = "starting" // no ICE socket: no publisher could connect
	default:
		httpapi.WriteJSON(w, http.StatusOK, body)
		return
	}
	httpapi.WriteJSON(w, http.StatusServiceUnavailable, body)
}
