package signaling

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestParseSDPFrag(t *testing.T) {
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:secret\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	cands, ufrag, err := parseSDPFrag(frag)
	if err != nil {
		t.Fatal(err)
	}
	if ufrag != "abcd" || len(cands) != 1 || cands[0].SDPMid == nil || *cands[0].SDPMid != "0" ||
		cands[0].SDPMLineIndex == nil || *cands[0].SDPMLineIndex != 0 || !strings.HasPrefix(cands[0].Candidate, "candidate:1 ") {
		t.Fatalf("got %q %+v", ufrag, cands)
	}
	if _, _, err := parseSDPFrag("hello world"); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, _, err := parseSDPFrag(strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\n", 65)); err == nil {
		t.Fatal("65 candidates accepted")
	}
}

func TestLinkHeaders(t *testing.T) {
	got := linkHeaders([]webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.org:3478"}},
		{URLs: []string{"turn:turn.example.org:3478?transport=udp"}, Username: "u", Credential: "p"},
	})
	want := []string{
		`<stun:stun.example.org:3478>; rel="ice-server"`,
		`<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n")
	f.Add("m=audio 9 RTP/AVP 0\na=mid:0\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parseSDPFrag(s)
	})
}
