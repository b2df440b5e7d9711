package signaling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/sdpfrag"
)

// readBody reads a request body of the given media type, bounded by MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, mediaType string) (string, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(ct, mediaType) {
		return "", errorf(http.StatusUnsupportedMediaType, "Content-Type must be "+mediaType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", errorf(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.opts.MaxBodyBytes))
		}
		return "", errorf(http.StatusBadRequest, "reading body: "+err.Error())
	}
	return string(body), nil
}

// handleWHIPPost: POST /whip/{stream} with an SDP offer -> 201 with the answer.
func (s *Server) handleWHIPPost(w http.ResponseWriter, r *http.Request) {
	s.setCORS(w, r)
	stream, cred, err := s.checkStream(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	offer, err := s.readBody(w, r, "application/sdp")
	if err != nil {
		s.fail(w, err)
		return
	}
	p, answer, err := s.startPublish(r.Context(), r, stream, cred, offer, "whip", nil)
	if err != nil {
		s.fail(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whip/"+stream+"/"+p.id)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	h.Set("ETag", p.etag)
	for _, l := range linkHeaders(s.iceServers(stream), true) {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// iceServers are the ICE servers to advertise to a publisher of stream.
func (s *Server) iceServers(stream string) []webrtc.ICEServer {
	if s.opts.ICEServers != nil {
		return s.opts.ICEServers(stream)
	}
	return s.opts.Engine.ICEServers()
}

// linkHeaders advertises ICE servers as RFC 9725 section 4.6 describes.
// Servers with credentials (TURN) are left out unless withCredentials: only
// a request that may publish gets them.
func linkHeaders(servers []webrtc.ICEServer, withCredentials bool) []string {
	var out []string
	for _, srv := range servers {
		if srv.Username != "" && !withCredentials {
			continue
		}
		for _, u := range srv.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if srv.Username != "" {
				l += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, srv.Username, fmt.Sprint(srv.Credential))
			}
			out = append(out, l)
		}
	}
	return out
}

// handleOptions answers CORS preflights. Browsers send no credentials
// on a preflight, so TURN credentials are advertised only when the request
// carries the right to publish (a WHIP client's OPTIONS with its token);
// the 201 of the POST always has them.
func (s *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	s.setCORS(w, r)
	if r.PathValue("session") == "" {
		w.Header().Set("Accept-Post", "application/sdp")
		withCredentials := false
		if httpapi.Token(r) != "" {
			_, cred, err := s.checkStream(r)
			withCredentials = err == nil && cred
		}
		for _, l := range linkHeaders(s.iceServers(r.PathValue("stream")), withCredentials) {
			w.Header().Add("Link", l)
		}
	} else {
		w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWHIPDelete: DELETE /whip/{stream}/{session} ends the publish.
func (s *Server) handleWHIPDelete(w http.ResponseWriter, r *http.Request) {
	s.setCORS(w, r)
	p, err := s.lookup(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	p.requestStop()
	select {
	case <-p.ended:
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusOK)
}

// handleWHIPPatch: PATCH /whip/{stream}/{session} with an SDP fragment
// (RFC 9725 section 4.3): trickle ICE candidates (204), or an ICE restart
// (If-Match: "*", new ice-ufrag and ice-pwd) answered with 200, the
// gateway's new ICE credentials and candidates, and a new ETag. An If-Match
// naming another entity-tag than the session's gets 412.
func (s *Server) handleWHIPPatch(w http.ResponseWriter, r *http.Request) {
	s.setCORS(w, r)
	p, err := s.lookup(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	body, err := s.readBody(w, r, "application/trickle-ice-sdpfrag")
	if err != nil {
		s.fail(w, err)
		return
	}
	frag, err := sdpfrag.Parse(body)
	if err != nil {
		s.fail(w, errorf(http.StatusBadRequest, err.Error()))
		return
	}
	ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
	if ifMatch == "*" {
		s.restartICE(w, r, p, frag)
		return
	}
	p.iceMu.Lock()
	etag, ufrag := p.etag, p.ufrag
	p.iceMu.Unlock()
	if ifMatch != "" && !etagMatches(ifMatch, etag) {
		s.fail(w, errorf(http.StatusPreconditionFailed, "If-Match does not name the session's current ETag "+etag+" (after an ICE restart, use the new one)"))
		return
	}
	if frag.Ufrag != "" && ufrag != "" && frag.Ufrag != ufrag {
		s.fail(w, errorf(http.StatusUnprocessableEntity, `the ice-ufrag is not the session's: candidates of an older ICE generation, or an ICE restart without If-Match: "*"`))
		return
	}
	if !p.takeCandidates(len(frag.Candidates)) {
		s.fail(w, errorf(http.StatusUnprocessableEntity, fmt.Sprintf("too many ICE candidates: at most %d per session", maxRemoteCandidates)))
		return
	}
	for _, c := range frag.Candidates {
		if err := p.sess.AddCandidate(c); err != nil {
			s.fail(w, errorf(http.StatusBadRequest, "bad candidate: "+err.Error()))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// restartICE performs an ICE restart for the session. A failed restart
// leaves the session as it was (RFC 9725: the session is not ended).
func (s *Server) restartICE(w http.ResponseWriter, r *http.Request, p *publish, frag sdpfrag.Frag) {
	if frag.Ufrag == "" || frag.Pwd == "" {
		s.fail(w, errorf(http.StatusBadRequest, "an ICE restart needs a=ice-ufrag and a=ice-pwd in the fragment"))
		return
	}
	if len(frag.Candidates) > maxRemoteCandidates {
		s.fail(w, errorf(http.StatusUnprocessableEntity, fmt.Sprintf("too many ICE candidates: at most %d per session", maxRemoteCandidates)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	local, err := p.sess.RestartICE(ctx, frag)
	if err != nil {
		s.log.Warn("ICE restart refused", "stream", p.stream, "remote", p.remote, "err", err)
		s.fail(w, errorf(http.StatusUnprocessableEntity, err.Error()))
		return
	}
	etag := newETag()
	p.iceMu.Lock()
	p.ufrag, p.etag = frag.Ufrag, etag
	p.cands = len(frag.Candidates) // a new ICE generation: the old candidates are gone
	p.iceMu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/trickle-ice-sdpfrag")
	h.Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, sdpfrag.Build(local))
}

// newETag returns a fresh entity-tag for a session's ICE state.
func newETag() string { return `"` + newID()[:16] + `"` }

// etagMatches reports whether an If-Match value (one tag or a list) names etag.
func etagMatches(ifMatch, etag string) bool {
	for _, t := range strings.Split(ifMatch, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
