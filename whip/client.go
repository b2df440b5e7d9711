package whip

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Client publishes to one WHIP endpoint.
type Client struct {
	Endpoint string       // e.g. https://gw.example:8080/whip/cam1
	Token    string       // bearer token; "" = none
	HTTP     *http.Client // nil = http.DefaultClient
	// UserAgent, when set, is the User-Agent of every request (the server
	// may count its publishers by it).
	UserAgent string
}

func (c *Client) http() *http.Client {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	if c.UserAgent == "" {
		return hc
	}
	wrapped := *hc
	wrapped.Transport = userAgentTransport{base: hc.Transport, userAgent: c.UserAgent}
	return &wrapped
}

// userAgentTransport sets the User-Agent of the requests it carries.
type userAgentTransport struct {
	base      http.RoundTripper // nil = http.DefaultTransport
	userAgent string
}

func (t userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not change its request
	req.Header.Set("User-Agent", t.userAgent)
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(req)
}

// Session is one WHIP session: the resource a POST created for a
// PeerConnection. It is safe for concurrent use.
type Session struct {
	c        *Client
	pc       *webrtc.PeerConnection
	location string

	mu   sync.Mutex
	etag string
}

// Offer negotiates pc, whose tracks are added, over WHIP (RFC 9725 section
// 4.2): it makes the offer, waits until ICE gathering is complete (the offer
// then holds every candidate), POSTs it and applies the answer. It does not
// wait for the connection. An answer that cannot be applied ends the new
// session with a DELETE.
func (c *Client) Offer(ctx context.Context, pc *webrtc.PeerConnection) (*Session, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("whip: offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("whip: offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("whip: ICE gathering: %w", ctx.Err())
	}
	cr, err := post(ctx, c.http(), c.Endpoint, c.Token, pc.LocalDescription().SDP)
	if err != nil {
		return nil, err
	}
	s := &Session{c: c, pc: pc, location: cr.Location, etag: cr.ETag}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: cr.Answer}); err != nil {
		s.Delete()
		return nil, fmt.Errorf("whip: bad SDP answer: %w", err)
	}
	return s, nil
}

// Location is the session's URL.
func (s *Session) Location() string { return s.location }

// ETag is the session's entity-tag: from the 201, or the last ICE restart.
func (s *Session) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

// RestartICE restarts the session's ICE over PATCH (RFC 9725 section
// 4.3.2); the media go on. A refused restart is an error; with Pion the
// connection is then left to fail (see restartICE), so the caller reconnects.
func (s *Session) RestartICE(ctx context.Context) error {
	etag, err := restartICE(ctx, s.c.http(), s.pc, s.location, s.c.Token)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.etag = etag
	s.mu.Unlock()
	return nil
}

// deleteTimeout bounds the DELETE: a publisher that is leaving does not
// wait long for a gateway that does not answer.
const deleteTimeout = 2 * time.Second

// Delete ends the session on the server (RFC 9725 section 4.2) and returns
// the status of the answer (0 when there was none).
func (s *Session) Delete() int {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil)
	if err != nil {
		return 0
	}
	if s.c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.c.Token)
	}
	resp, err := s.c.http().Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
