package mseout_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/mseout"
	"github.com/mseway/mseway/remux"
)

// recOutput records what a hub hands an Output, as one line per call.
type recOutput struct {
	mu     sync.Mutex
	events []string
}

func (o *recOutput) WriteInit(in *remux.Init) { o.add("init " + string(in.Data)) }
func (o *recOutput) WriteSegment(s *remux.Segment) {
	k := ""
	if s.Keyframe {
		k = " key"
	}
	o.add("seg " + string(s.Data) + k)
}
func (o *recOutput) WriteEnd() { o.add("end") }
func (o *recOutput) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}
func (o *recOutput) got() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.events, ", ")
}

// An Output sees a stream as a viewer does, without a socket: the join
// burst, live segments, eos, a new publisher's init, a takeover, shutdown.
func TestOutputSeesTheStream(t *testing.T) {
	r := mseout.NewRegistry(mseout.Options{Settings: configs.Default().StreamSettings, Limits: configs.Default().Limits})
	early := &recOutput{}
	detachEarly, err := r.Attach("s", early)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Streams(); len(st) != 1 || st[0].Live {
		t.Fatalf("an attached output keeps the stream listed, not live: %+v", st)
	}
	pub, err := r.Publish("s", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteSegment(segment("before init", true)) // dropped, as for viewers
	pub.WriteInit(testInit("i1"))
	pub.WriteSegment(segment("k1", true))
	pub.WriteSegment(segment("d1", false))

	late := &recOutput{}
	detachLate, err := r.Attach("s", late)
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteSegment(segment("d2", false))
	pub.Close() // eos
	pub2, err := r.Publish("s", mseout.PublisherInfo{Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	pub2.WriteInit(testInit("i2"))
	pub2.WriteSegment(segment("k2", true))
	detachEarly()
	pub3, err := r.Publish("s", mseout.PublisherInfo{Protocol: "test", TakeOver: true}) // takeover: no eos
	if err != nil {
		t.Fatal(err)
	}
	pub3.WriteInit(testInit("i3"))
	pub3.WriteSegment(segment("k3", true))
	r.Close()

	if got, want := early.got(), "init i1, seg k1 key, seg d1, seg d2, end, init i2, seg k2 key"; got != want {
		t.Errorf("early output:\n got %s\nwant %s", got, want)
	}
	if got, want := late.got(), "init i1, seg k1 key, seg d1, seg d2, end, init i2, seg k2 key, init i3, seg k3 key, end"; got != want {
		t.Errorf("late output:\n got %s\nwant %s", got, want)
	}
	detachLate()
	if _, err := r.Attach("s", &recOutput{}); !errors.Is(err, mseout.ErrClosed) {
		t.Errorf("attach after close: %v", err)
	}
}

func TestAttachChecksTheName(t *testing.T) {
	r := mseout.NewRegistry(mseout.Options{})
	defer r.Close()
	if _, err := r.Attach("bad name", &recOutput{}); err == nil {
		t.Fatal("a bad stream name was accepted")
	}
	detach, err := r.Attach("ok", &recOutput{})
	if err != nil {
		t.Fatal(err)
	}
	detach()
	if st := r.Streams(); len(st) != 0 {
		t.Fatalf("a detached output left the stream listed: %+v", st)
	}
}

// With no GOP cached (gop_cache off), an Output attached to a live stream
// gets the init at once, then the segments from the next keyframe on, and
// the publisher is asked for that keyframe.
func TestOutputWithoutGOPCache(t *testing.T) {
	def := configs.Default()
	noCache := def.StreamDefaults
	noCache.GOPCache = false
	r := mseout.NewRegistry(mseout.Options{Settings: func(string) configs.Stream { return noCache }, Limits: def.Limits})
	defer r.Close()
	var asks int
	var mu sync.Mutex
	pub, err := r.Publish("s", mseout.PublisherInfo{Protocol: "test", RequestKeyframe: func() { mu.Lock(); asks++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	pub.WriteInit(testInit("i1"))
	pub.WriteSegment(segment("k1", true))
	pub.WriteSegment(segment("d1", false))
	out := &recOutput{}
	detach, err := r.Attach("s", out)
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	pub.WriteSegment(segment("d2", false)) // not a keyframe: held back
	pub.WriteSegment(segment("k2", true))
	pub.WriteSegment(segment("d3", false))
	if got, want := out.got(), "init i1, seg k2 key, seg d3"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if asks == 0 {
		t.Error("the publisher was not asked for a keyframe")
	}
}
