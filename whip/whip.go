// Package whip is the publisher side of WHIP (RFC 9725), shared by the
// capture agent, the test publisher and the load tool: a Client negotiates a
// Pion PeerConnection with a POST (no trickle: the offer carries every
// candidate), and the Session it makes restarts ICE over PATCH and ends with
// DELETE. It does not send media: the caller owns the tracks.
package whip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/sdpfrag"
)

// restartICE restarts ICE for the WHIP session at resource (RFC 9725
// section 4.3.2): pc's new credentials and candidates (gathered in full) go
// out in a PATCH with If-Match: "*"; the server's new ones come back in the
// 200 and are applied as the answer. The negotiated media stay as they are.
// It returns the session's new entity-tag. On failure the offer is rolled
// back where the WebRTC stack can (Pion 4.2 cannot roll back a local offer:
// the error then says so, its ICE agent keeps the new credentials, and the
// connection is left to fail, so the caller reconnects).
func restartICE(ctx context.Context, hc *http.Client, pc *webrtc.PeerConnection, resource, token string) (etag string, err error) {
	if resource == "" {
		return "", errors.New("whip: ICE restart needs a session URL")
	}
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return "", fmt.Errorf("whip: ICE restart offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("whip: ICE restart: %w", err)
	}
	rollback := func(err error) (string, error) {
		// A rollback needs an SDP that parses (Pion refuses an empty one).
		if rerr := pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback, SDP: offer.SDP}); rerr != nil {
			return "", fmt.Errorf("%w (and the offer could not be rolled back: %v)", err, rerr)
		}
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return rollback(ctx.Err())
	}
	local := sdpfrag.FromSDP(pc.LocalDescription().SDP)
	local.EndOfCandidates = true
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, resource, strings.NewReader(sdpfrag.Build(local)))
	if err != nil {
		return rollback(err)
	}
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	req.Header.Set("If-Match", "*")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return rollback(fmt.Errorf("whip: ICE restart PATCH: %w", err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return rollback(fmt.Errorf("whip: ICE restart PATCH: %d %s", resp.StatusCode, strings.TrimSpace(string(body))))
	}
	remote, err := sdpfrag.Parse(string(body))
	if err != nil {
		return rollback(fmt.Errorf("whip: ICE restart answer: %w", err))
	}
	answer, err := sdpfrag.ReplaceICE(pc.RemoteDescription().SDP, remote.Ufrag, remote.Pwd, remote.Candidates)
	if err != nil {
		return rollback(fmt.Errorf("whip: ICE restart answer: %w", err))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return "", fmt.Errorf("whip: ICE restart answer: %w", err)
	}
	return resp.Header.Get("ETag"), nil
}

// HTTPError is a WHIP request answered with an unexpected status.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	msg := strings.TrimSpace(e.Body)
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return fmt.Sprintf("WHIP POST answered %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}

// created is what a successful WHIP POST returns.
type created struct {
	Answer   string // the SDP answer
	Location string // the session URL, resolved against the endpoint
	ETag     string // the session's entity-tag, when the server sends one
}

// post publishes offer to the WHIP endpoint (RFC 9725 section 4.2): a 201
// with the answer and a Location, or an *HTTPError.
func post(ctx context.Context, hc *http.Client, endpoint, token, offer string) (created, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return created{}, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return created{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return created{}, &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return created{}, errors.New("WHIP POST answered 201 without a Location header")
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return created{}, err
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return created{}, fmt.Errorf("bad Location %q: %w", loc, err)
	}
	return created{Answer: string(body), Location: base.ResolveReference(ref).String(), ETag: resp.Header.Get("ETag")}, nil
}
