package mseout

import (
	"testing"

	"github.com/mseway/mseway/configs"
)

// newTestHub returns a hub whose viewers are driven by hand (no sockets).
func newTestHub(t *testing.T, edit func(*configs.Stream)) *hub {
	t.Helper()
	s := configs.Default().StreamDefaults
	if edit != nil {
		edit(&s)
	}
	r := NewRegistry(Options{Limits: configs.Default().Limits})
	return newHub(r, "t", s)
}

// newTestViewer returns a viewer of a new test hub, its queue driven by hand.
func newTestViewer(t *testing.T, edit func(*configs.Stream)) (*hub, *viewer) {
	t.Helper()
	h := newTestHub(t, edit)
	return h, &viewer{h: h, out: streamTransport{}}
}

func seg(t *testing.T, key bool, size int) *segMsg {
	t.Helper()
	return &segMsg{frame: newFrame(opBinary, make([]byte, size)), size: size, keyframe: key}
}

func testInit(gen uint64) *initMsg {
	return &initMsg{gen: gen, frames: frameWaiting, size: 100}
}

// kinds summarises a queue: I = init, K = keyframe segment, D = delta, C = control.
func kinds(v *viewer) string {
	out := ""
	for _, it := range v.queue {
		switch {
		case it.initGen != 0:
			out += "I"
		case it.control:
			out += "C"
		case it.keyframe:
			out += "K"
		default:
			out += "D"
		}
	}
	return out
}

// push queues 10-byte segments of init in, one per letter: K a keyframe, D
// a delta.
func push(t *testing.T, v *viewer, in *initMsg, segs string) {
	t.Helper()
	for _, c := range segs {
		v.pushSegment(seg(t, c == 'K', 10), in, false)
	}
}

// wantQueue checks the queue's kinds.
func wantQueue(t *testing.T, v *viewer, want, why string) {
	t.Helper()
	if got := kinds(v); got != want {
		t.Fatalf("%s: queue = %q, want %q", why, got, want)
	}
}

func TestViewerQueueStartsAtKeyframeWithInit(t *testing.T) {
	_, v := newTestViewer(t, nil)
	push(t, v, testInit(1), "DKD")
	wantQueue(t, v, "IKD", "a delta first is skipped")
	push(t, v, testInit(2), "DK")
	wantQueue(t, v, "IKDIK", "a new init: deltas skipped until its keyframe, which brings the init")
}

func TestViewerOverflowSkipsToNextKeyframe(t *testing.T) {
	h, v := newTestViewer(t, func(s *configs.Stream) {
		s.ViewerQueueMessages = 5
		s.ViewerMaxSkips = 100
	})
	in := testInit(1)
	push(t, v, in, "KDDD")
	wantQueue(t, v, "IKDDD", "filled")
	push(t, v, in, "DD")
	wantQueue(t, v, "", "full: the next delta overflows, the queue is dropped and deltas skipped")
	push(t, v, in, "KD")
	wantQueue(t, v, "IKD", "the next keyframe restarts the viewer, with the init again (never written)")
	if n := h.r.metrics.viewerSkips.Load(); n != 1 {
		t.Fatalf("skips = %d", n)
	}
}

func TestViewerOverflowKeepsWrittenInit(t *testing.T) {
	_, v := newTestViewer(t, func(s *configs.Stream) { s.ViewerQueueMessages = 3 })
	in := testInit(1)
	push(t, v, in, "K")
	v.queue, v.writtenGen = nil, 1 // the writer takes the queue: the init is on the wire
	push(t, v, in, "DDDDK")
	wantQueue(t, v, "K", "the init was written already")
}

func TestViewerBytesBound(t *testing.T) {
	_, v := newTestViewer(t, func(s *configs.Stream) { s.ViewerQueueBytes = 64 << 10 })
	in := testInit(1)
	v.pushSegment(seg(t, true, 30<<10), in, false)
	v.pushSegment(seg(t, false, 30<<10), in, false)
	if v.queuedBytes > 64<<10 {
		t.Fatalf("queued %d bytes over the bound", v.queuedBytes)
	}
	v.pushSegment(seg(t, false, 30<<10), in, false)
	if v.queuedBytes > 64<<10 || !v.skipping {
		t.Fatalf("queued %d bytes, skipping=%v", v.queuedBytes, v.skipping)
	}
}

func TestViewerTooFarBehindIsClosed(t *testing.T) {
	h, v := newTestViewer(t, func(s *configs.Stream) {
		s.ViewerQueueMessages = 2
		s.ViewerMaxSkips = 3
	})
	in := testInit(1)
	for range 20 {
		v.pushSegment(seg(t, true, 10), in, false)
	}
	if !v.closing || len(v.queue) != 1 || !v.queue[0].final {
		t.Fatalf("closing=%v queue=%+v, want one final error", v.closing, v.queue)
	}
	if h.r.metrics.viewersDropped.Load() != 1 {
		t.Fatal("drop not counted")
	}
	// Nothing more is queued once closing.
	v.pushSegment(seg(t, true, 10), in, false)
	if len(v.queue) != 1 {
		t.Fatal("queued after closing")
	}
}
