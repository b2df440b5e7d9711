package whipclient

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/signaling"
)

// wsMsg is a message of the WebSocket publish signaling.
type wsMsg = signaling.WSMessage

// wsSignal negotiates over GET /ws/publish/{stream} with trickle ICE in both
// directions. The socket stays open for the publish: closing it ends it.
func (p *Publisher) wsSignal(ctx context.Context, pc *webrtc.PeerConnection) error {
	u := p.opts.WebSocketURL
	if p.opts.Token != "" {
		pu, err := url.Parse(u)
		if err != nil {
			return err
		}
		q := pu.Query()
		q.Set("token", p.opts.Token)
		pu.RawQuery = q.Encode()
		u = pu.String()
	}
	d := *websocket.DefaultDialer
	if p.opts.TLS != nil {
		d.TLSClientConfig = p.opts.TLS.Clone()
	}
	ws, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return fmt.Errorf("whipclient: dial %s: %w", p.opts.WebSocketURL, err)
	}
	p.ws = ws
	var wmu sync.Mutex
	send := func(m wsMsg) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = ws.WriteJSON(m)
	}
	// Gathering starts with SetLocalDescription and its candidates may come
	// before the offer is on the socket; the gateway wants the offer first.
	var (
		cmu       sync.Mutex
		offerSent bool
		early     []webrtc.ICECandidateInit
	)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		ci := c.ToJSON()
		cmu.Lock()
		defer cmu.Unlock()
		if !offerSent {
			early = append(early, ci)
			return
		}
		send(wsMsg{Type: "candidate", Candidate: &ci})
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	cmu.Lock()
	send(wsMsg{Type: "offer", SDP: offer.SDP})
	offerSent = true
	for i := range early {
		send(wsMsg{Type: "candidate", Candidate: &early[i]})
	}
	early = nil
	cmu.Unlock()

	answered := make(chan error, 1)
	p.wg.Add(1)
	go func() { // reader: ends when the socket closes
		defer p.wg.Done()
		var pending []webrtc.ICECandidateInit
		haveAnswer := false
		for {
			var m wsMsg
			if err := ws.ReadJSON(&m); err != nil {
				select {
				case answered <- fmt.Errorf("whipclient: signaling closed: %w", err):
				default:
				}
				return
			}
			switch m.Type {
			case "answer":
				err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP})
				haveAnswer = err == nil
				for _, c := range pending {
					_ = pc.AddICECandidate(c)
				}
				pending = nil
				answered <- err
			case "candidate":
				if m.Candidate == nil {
					continue
				}
				if haveAnswer {
					_ = pc.AddICECandidate(*m.Candidate)
				} else {
					pending = append(pending, *m.Candidate)
				}
			case "viewers":
				if m.Count != nil {
					p.viewers.Store(int64(*m.Count))
				}
			case "error":
				p.wsErr.Store(m.Message)
				select {
				case answered <- errors.New("whipclient: gateway: " + m.Message):
				default:
				}
			}
		}
	}()
	select {
	case err := <-answered:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Viewers returns the last viewer count the gateway sent (WebSocket signaling only).
func (p *Publisher) Viewers() int64 { return p.viewers.Load() }

// SignalingError returns the last error message the gateway sent over the
// WebSocket signaling, if any.
func (p *Publisher) SignalingError() string {
	s, _ := p.wsErr.Load().(string)
	return s
}
