package peer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/sdpfrag"
)

// waitGathering waits for ICE gathering to complete, at most gatherTimeout
// (then the candidates found so far are used).
func (s *Session) waitGathering(ctx context.Context, gathered <-chan struct{}) error {
	t := time.NewTimer(s.gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
		s.log.Warn("ICE gathering incomplete; answering with the candidates found so far")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// ErrICERestart wraps what makes an ICE restart fail; the session goes on
// with the ICE state it had.
var ErrICERestart = errors.New("ICE restart failed")

// RestartICE applies a publisher's ICE restart (RFC 9725 section 4.3.2):
// remote holds the publisher's new ICE credentials and candidates. The
// negotiated media stay as they are; the gateway gathers again with new
// credentials and returns them with its candidates. A restart may come
// while the old path is failing: media resume on the new one.
func (s *Session) RestartICE(ctx context.Context, remote sdpfrag.Frag) (sdpfrag.Frag, error) {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	cur, err := s.restartable(remote.Ufrag)
	if err != nil {
		return sdpfrag.Frag{}, err
	}
	offer, err := sdpfrag.ReplaceICE(cur, remote.Ufrag, remote.Pwd, nil)
	if err != nil {
		return sdpfrag.Frag{}, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	gathered, err := s.reoffer(offer, remote.Candidates, true)
	if err != nil {
		return sdpfrag.Frag{}, err
	}
	if err := s.waitGathering(ctx, gathered); err != nil {
		return sdpfrag.Frag{}, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	local := sdpfrag.FromSDP(s.pc.LocalDescription().SDP)
	local.EndOfCandidates = true
	s.log.Info("ICE restarted by the publisher", "candidates", len(local.Candidates))
	return local, nil
}

// RestartICEWithOffer applies an ICE restart that comes as a whole new
// offer (WebSocket signaling): only the ICE credentials may differ from the
// negotiated session. It returns the answer at once; the gateway's new
// candidates trickle out through SessionOptions.OnCandidate.
func (s *Session) RestartICEWithOffer(offer string) (string, error) {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	if _, err := s.restartable(sdpfrag.FromSDP(offer).Ufrag); err != nil {
		return "", err
	}
	if _, err := s.reoffer(offer, nil, false); err != nil {
		return "", err
	}
	s.log.Info("ICE restarted by the publisher (new offer)")
	return s.pc.LocalDescription().SDP, nil
}

// restartable checks that an ICE restart to the remote ufrag can be applied
// and returns the current remote description. restartMu must be held.
func (s *Session) restartable(ufrag string) (string, error) {
	select {
	case <-s.done:
		return "", fmt.Errorf("%w: the connection is closed", ErrICERestart)
	default:
	}
	cur := s.pc.RemoteDescription()
	if cur == nil {
		return "", fmt.Errorf("%w: no negotiated session", ErrICERestart)
	}
	if ufrag == "" || ufrag == sdpfrag.FromSDP(cur.SDP).Ufrag {
		return "", fmt.Errorf("%w: the ice-ufrag did not change (only ICE restarts are renegotiated)", ErrICERestart)
	}
	return cur.SDP, nil
}

// reoffer applies offer (Pion restarts ICE when its credentials changed),
// adds cands, and sets the answer. With gather, the returned channel is
// closed when the gateway's candidates are all gathered.
func (s *Session) reoffer(offer string, cands []webrtc.ICECandidateInit, gather bool) (<-chan struct{}, error) {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	first := uint16(0)
	for _, c := range cands {
		// All on the bundle's transport, whatever section the fragment named.
		c.SDPMid, c.SDPMLineIndex = nil, &first
		if err := s.pc.AddICECandidate(c); err != nil {
			s.log.Warn("ICE restart: bad candidate ignored", "candidate", c.Candidate, "err", err)
		}
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	var gathered <-chan struct{}
	if gather {
		gathered = webrtc.GatheringCompletePromise(s.pc)
	}
	if err := s.pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICERestart, err)
	}
	return gathered, nil
}
