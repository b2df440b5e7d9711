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

func TestViewerQueueStartsAtKeyframeWithInit(t *testing.T) {
	h := newTestHub(t, nil)
	v := &viewer{h: h, out: streamTransport{}}
	in := testInit(1)
	d := seg(t, false, 10)
	v.pushSegment(d, in, false) // a delta first: skipped
	k := seg(t, true, 10)
	v.pushSegment(k, in, false)
	v.pushSegment(seg(t, false, 10), in, false)
	if got := kinds(v); got != "IKD" {
		t.Fatalf("queue = %s, want IKD", got)
	}
	// A new init generation: deltas are skipped until its keyframe, which brings the init.
	in2 := testInit(2)
	v.pushSegment(seg(t, false, 10), in2, false)
	k2 := seg(t, true, 10)
	v.pushSegment(k2, in2, false)
	if got := kinds(v); got != "IKDIK" {
		t.Fatalf("queue = %s, want IKDIK", got)
	}
}

func TestViewerOverflowSkipsToNextKeyframe(t *testing.T) {
	h := newTestHub(t, func(s *configs.Stream) {
		s.ViewerQueueMessages = 5
		s.ViewerMaxSkips = 100
	})
	v := &viewer{h: h, out: streamTransport{}}
	in := testInit(1)
	k := seg(t, true, 10)
	v.pushSegment(k, in, false)
	for range 3 {
		v.pushSegment(seg(t, false, 10), in, false)
	}
	if got := kinds(v); got != "IKDDD" {
		t.Fatalf("queue = %s", got)
	}
	// Full: the next delta overflows; the queue is dropped and deltas skipped.
	v.pushSegment(seg(t, false, 10), in, false)
	v.pushSegment(seg(t, false, 10), in, false)
	if got := kinds(v); got != "" {
		t.Fatalf("after overflow queue = %q, want empty (skipping)", got)
	}
	// The next keyframe restarts the viewer, with the init again (never written).
	k2 := seg(t, true, 10)
	v.pushSegment(k2, in, false)
	v.pushSegment(seg(t, false, 10), in, false)
	if got := kinds(v); got != "IKD" {
		t.Fatalf("after keyframe queue = %s, want IKD", got)
	}
	if n := h.r.metrics.viewerSkips.Load(); n != 1 {
		t.Fatalf("skips = %d", n)
	}
}

func TestViewerOverflowKeepsWrittenInit(t *testing.T) {
	h := newTestHub(t, func(s *configs.Stream) { s.ViewerQueueMessages = 3 })
	v := &viewer{h: h, out: streamTransport{}}
	in := testInit(1)
	k := seg(t, true, 10)
	v.pushSegment(k, in, false)
	// The writer takes the queue (the init is now on the wire).
	v.queue, v.writtenGen = nil, 1
	for range 4 {
		v.pushSegment(seg(t, false, 10), in, false)
	}
	k2 := seg(t, true, 10)
	v.pushSegment(k2, in, false)
	if got := kinds(v); got != "K" {
		t.Fatalf("queue = %s, want K (init already written)", got)
	}
}

func TestViewerBytesBound(t *testing.T) {
	h := newTestHub(t, func(s *configs.Stream) { s.ViewerQueueBytes = 64 << 10 })
	v := &viewer{h: h, out: streamTransport{}}
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
	h := newTestHub(t, func(s *configs.Stream) {
		s.ViewerQueueMessages = 2
		s.ViewerMaxSkips = 3
	})
	v := &viewer{h: h, out: streamTransport{}}
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
