package gateway

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
)

// The operator API, for holders of the admin grant (web/static/operator.html
// uses it): each stream's viewers, and ending a viewer or a publish. Same
// origin only (no CORS answers): a page elsewhere cannot send these requests
// with a token, and a DELETE from another origin needs a preflight that is
// never allowed.
func (g *Gateway) registerOperator(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/streams/{stream}/viewers", g.operatorViewers)
	mux.HandleFunc("DELETE /api/streams/{stream}/viewers/{id}", g.operatorEndViewer)
	mux.HandleFunc("DELETE /api/streams/{stream}/publisher", g.operatorEndPublish)
}

// operatorStream checks the admin grant and the stream name of r.
func (g *Gateway) operatorStream(w http.ResponseWriter, r *http.Request) (string, bool) {
	if err := g.access.admin(r); err != nil {
		httpapi.Fail(w, err)
		return "", false
	}
	stream := r.PathValue("stream")
	if !configs.ValidStreamName(stream) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusBadRequest, fmt.Sprintf("%q is not a stream name", stream)))
		return "", false
	}
	return stream, true
}

func (g *Gateway) operatorViewers(w http.ResponseWriter, r *http.Request) {
	stream, ok := g.operatorStream(w, r)
	if !ok {
		return
	}
	list, ok := g.registry.Viewers(stream)
	if !ok {
		httpapi.Fail(w, httpapi.Errorf(http.StatusNotFound, "no stream "+stream+" on this node"))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, list)
}

func (g *Gateway) operatorEndViewer(w http.ResponseWriter, r *http.Request) {
	stream, ok := g.operatorStream(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		httpapi.Fail(w, httpapi.Errorf(http.StatusBadRequest, "viewer id: want a number"))
		return
	}
	if !g.registry.DisconnectViewer(stream, id) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusNotFound, fmt.Sprintf("no viewer %d of %s on this node", id, stream)))
		return
	}
	g.log.Info("viewer ended by an operator", "stream", stream, "viewer", id, "operator", httpapi.ClientIP(r))
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) operatorEndPublish(w http.ResponseWriter, r *http.Request) {
	stream, ok := g.operatorStream(w, r)
	if !ok {
		return
	}
	if g.cluster.remoteLive(stream) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusConflict, "stream "+stream+" is published on another node of the cluster: end it there"))
		return
	}
	if !g.registry.EndPublish(stream) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusNotFound, "stream "+stream+" has no publisher on this node"))
		return
	}
	g.log.Info("publish ended by an operator", "stream", stream, "operator", httpapi.ClientIP(r))
	w.WriteHeader(http.StatusNoContent)
}
