package peer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
	"github.com/mseway/mseway/remux"
)

// panickySink panics on the first media segment, as a bug in the remuxer
// or the fan-out would.
type panickySink struct{}

func (panickySink) WriteInit(*remux.Init)       {}
func (panickySink) WriteSegment(*remux.Segment) { panic("test: fan-out bug") }

// A panic under a publisher's RTP reader ends that publish (its session is
// done and closes without hanging), is counted, and leaves the process and
// its engine serving.
func TestPublisherPanicEndsOnlyThatSession(t *testing.T) {
	url, sessions := serveWHIP(t, panickySink{})
	video, err := mediafile.ReadH264(filepath.Join("..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	before := contain.Counts()["publisher media"]
	for i := range 2 { // the engine still accepts after a contained panic
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		pub, err := whipclient.Publish(ctx, whipclient.Options{URL: url + "/whip/x", Video: video, LoopbackOnly: true})
		cancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		sess := <-sessions
		select {
		case <-sess.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("publish %d: the session whose remuxer panicked is not done", i)
		}
		closed := make(chan struct{})
		go func() { _ = sess.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("publish %d: Close hangs after a contained panic", i)
		}
		pub.Vanish()
		if got := contain.Counts()["publisher media"]; got != before+int64(i)+1 {
			t.Fatalf("publish %d: %d panics counted, want %d", i, got-before, i+1)
		}
	}
}
