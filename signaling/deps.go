package signaling

import (
	"context"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/peer"
	"github.com/mseway/mseway/remux"
	"github.com/mseway/mseway/sdpfrag"
)

// What signaling needs of the parts below it, declared here where it is
// used. The wiring passes the real ones (PeerEngine, Streams); the unit
// tests pass fakes, so that every message and error of the signaling can be
// checked without ICE, DTLS or a browser.

// Engine accepts publishers' offers (peer.Engine).
type Engine interface {
	// Accept negotiates offer; see peer.Engine.Accept.
	Accept(ctx context.Context, offer string, opts peer.SessionOptions) (Session, string, error)
	// ICEServers are advertised to WHIP clients in Link headers.
	ICEServers() []webrtc.ICEServer
}

// Session is one publisher's connection (peer.Session).
type Session interface {
	Start(sink remux.Sink) error
	Done() <-chan struct{}
	Established() <-chan struct{}
	Connected() bool
	AddCandidate(c webrtc.ICECandidateInit) error
	RestartICE(ctx context.Context, remote sdpfrag.Frag) (sdpfrag.Frag, error)
	RestartICEWithOffer(offer string) (string, error)
	RequestKeyframe()
	KeyframeRequests() int64
	Stats() remux.Stats
	Feedback() peer.Feedback
	Close() error
}

// Streams makes publishers the sources of streams (mseout.Registry).
type Streams interface {
	CheckPublish(name string, takeOver bool) error
	Publish(name string, info mseout.PublisherInfo) (Publication, error)
}

// Publication is a publisher's link to its stream (mseout.Publication).
type Publication interface {
	remux.Sink
	Done() <-chan struct{}
	Viewers() <-chan int
	Close()
}

// PeerEngine is e as an Engine.
func PeerEngine(e *peer.Engine) Engine { return peerEngine{e} }

type peerEngine struct{ *peer.Engine }

func (e peerEngine) Accept(ctx context.Context, offer string, opts peer.SessionOptions) (Session, string, error) {
	s, answer, err := e.Engine.Accept(ctx, offer, opts)
	if err != nil {
		return nil, "", err
	}
	return s, answer, nil
}

// MSEStreams is r as Streams.
func MSEStreams(r *mseout.Registry) Streams { return mseStreams{r} }

type mseStreams struct{ *mseout.Registry }

func (m mseStreams) Publish(name string, info mseout.PublisherInfo) (Publication, error) {
	p, err := m.Registry.Publish(name, info)
	if err != nil {
		return nil, err
	}
	return p, nil
}
