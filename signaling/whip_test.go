package signaling

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestETagMatches(t *testing.T) {
	for _, c := range []struct {
		ifMatch string
		want    bool
	}{
		{`"abc"`, true}, {`W/"abc"`, true}, {`"x", "abc"`, true}, {`"abcd"`, false}, {`abc`, false},
	} {
		if got := etagMatches(c.ifMatch, `"abc"`); got != c.want {
			t.Errorf("etagMatches(%s) = %v, want %v", c.ifMatch, got, c.want)
		}
	}
}

func TestLinkHeaders(t *testing.T) {
	servers := []webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.org:3478"}},
		{URLs: []string{"turn:turn.example.org:3478?transport=udp"}, Username: "u", Credential: "p"},
	}
	if got := linkHeaders(servers, false); len(got) != 1 || strings.Contains(got[0], "turn:") {
		t.Fatalf("without the publish right: %q, want the STUN server only", got)
	}
	got := linkHeaders(servers, true)
	want := []string{
		`<stun:stun.example.org:3478>; rel="ice-server"`,
		`<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
