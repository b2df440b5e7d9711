package signaling

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
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
	setCORS(w)
	stream, err := s.checkStream(r)
	if err != nil {
		writeError(w, err)
		return
	}
	offer, err := s.readBody(w, r, "application/sdp")
	if err != nil {
		writeError(w, err)
		return
	}
	p, answer, err := s.startPublish(r.Context(), stream, offer, "whip", r.RemoteAddr, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whip/"+stream+"/"+p.id)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, l := range linkHeaders(s.opts.Engine.ICEServers()) {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// linkHeaders advertises ICE servers as RFC 9725 section 4.6 describes.
func linkHeaders(servers []webrtc.ICEServer) []string {
	var out []string
	for _, srv := range servers {
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

// handleOptions answers CORS preflights.
func (s *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	if r.PathValue("session") == "" {
		w.Header().Set("Accept-Post", "application/sdp")
		for _, l := range linkHeaders(s.opts.Engine.ICEServers()) {
			w.Header().Add("Link", l)
		}
	} else {
		w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWHIPDelete: DELETE /whip/{stream}/{session} ends the publish.
func (s *Server) handleWHIPDelete(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	p, err := s.lookup(r)
	if err != nil {
		writeError(w, err)
		return
	}
	p.requestStop()
	select {
	case <-p.ended:
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusOK)
}

// handleWHIPPatch: trickle ICE candidates for a session. ICE restarts are
// not supported and get 422 (RFC 9725 section 4.3.1).
func (s *Server) handleWHIPPatch(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	p, err := s.lookup(r)
	if err != nil {
		writeError(w, err)
		return
	}
	frag, err := s.readBody(w, r, "application/trickle-ice-sdpfrag")
	if err != nil {
		writeError(w, err)
		return
	}
	cands, ufrag, err := parseSDPFrag(frag)
	if err != nil {
		writeError(w, err)
		return
	}
	if (ufrag != "" && p.ufrag != "" && ufrag != p.ufrag) || r.Header.Get("If-Match") == "*" {
		writeError(w, errorf(http.StatusUnprocessableEntity, "ICE restart is not supported; publish again"))
		return
	}
	for _, c := range cands {
		if err := p.sess.AddCandidate(c); err != nil {
			writeError(w, errorf(http.StatusBadRequest, "bad candidate: "+err.Error()))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseSDPFrag reads candidates and the ufrag from an RFC 8840 SDP fragment.
func parseSDPFrag(frag string) ([]webrtc.ICECandidateInit, string, error) {
	var (
		cands []webrtc.ICECandidateInit
		ufrag string
		mid   *string
		index uint16
		mline = -1
	)
	for _, raw := range strings.Split(frag, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case strings.HasPrefix(line, "m="):
			mline++
			index = uint16(mline)
			mid = nil
		case strings.HasPrefix(line, "a=mid:"):
			m := strings.TrimPrefix(line, "a=mid:")
			mid = &m
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=candidate:"):
			if len(cands) >= 64 {
				return nil, "", errorf(http.StatusBadRequest, "too many candidates")
			}
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a="), SDPMid: mid}
			if mline >= 0 {
				i := index
				c.SDPMLineIndex = &i
			}
			cands = append(cands, c)
		case strings.HasPrefix(line, "a="):
			// ice-pwd, ice-options, group, end-of-candidates: nothing to do
		default:
			return nil, "", errorf(http.StatusBadRequest, "not an SDP fragment line: "+truncate(line, 60))
		}
	}
	return cands, ufrag, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
