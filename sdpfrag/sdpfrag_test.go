package sdpfrag

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestParse(t *testing.T) {
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:secret\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	f, err := Parse(frag)
	if err != nil {
		t.Fatal(err)
	}
	c := f.Candidates
	if f.Ufrag != "abcd" || f.Pwd != "secret" || f.Mid != "0" || !f.EndOfCandidates || len(c) != 1 ||
		c[0].SDPMid == nil || *c[0].SDPMid != "0" || c[0].SDPMLineIndex == nil || *c[0].SDPMLineIndex != 0 ||
		!strings.HasPrefix(c[0].Candidate, "candidate:1 ") {
		t.Fatalf("got %+v", f)
	}
	if _, err := Parse("hello world"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := Parse(strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\n", MaxCandidates+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d candidates: %v", MaxCandidates+1, err)
	}
}

func TestBuildParsesBack(t *testing.T) {
	in := Frag{Ufrag: "u1", Pwd: "p1", Mid: "0", EndOfCandidates: true, Candidates: []webrtc.ICECandidateInit{
		{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"},
		{Candidate: "2 1 udp 2130706431 10.0.0.1 5001 typ host"}, // without the prefix
	}}
	out, err := Parse(Build(in))
	if err != nil {
		t.Fatal(err)
	}
	if out.Ufrag != "u1" || out.Pwd != "p1" || out.Mid != "0" || !out.EndOfCandidates || len(out.Candidates) != 2 ||
		out.Candidates[1].Candidate != "candidate:2 1 udp 2130706431 10.0.0.1 5001 typ host" {
		t.Fatalf("got %+v", out)
	}
}

const offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=mid:0\r\n" +
	"a=candidate:1 1 udp 1 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\na=rtpmap:96 H264/90000\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n"

func TestReplaceICE(t *testing.T) {
	got, err := ReplaceICE(offer, "new", "newpwd", []webrtc.ICECandidateInit{{Candidate: "candidate:9 1 udp 1 10.0.0.2 5000 typ host"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "old") || strings.Count(got, "a=ice-ufrag:new\r\n") != 2 || strings.Count(got, "a=ice-pwd:newpwd\r\n") != 2 ||
		strings.Count(got, "a=candidate:") != 1 || !strings.Contains(got, "a=candidate:9 1 udp 1 10.0.0.2 5000 typ host\r\na=end-of-candidates\r\nm=audio") ||
		!strings.Contains(got, "a=rtpmap:96 H264/90000") || !strings.HasSuffix(got, "opus/48000/2\r\n") {
		t.Fatalf("got:\n%s", got)
	}
	f := FromSDP(got)
	if f.Ufrag != "new" || f.Pwd != "newpwd" || f.Mid != "0" || len(f.Candidates) != 1 || !f.EndOfCandidates {
		t.Fatalf("FromSDP: %+v", f)
	}
	if _, err := ReplaceICE(offer, "", "x", nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no ufrag: %v", err)
	}
	if _, err := ReplaceICE("v=0\r\n", "a", "b", nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no media: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n")
	f.Add("m=audio 9 RTP/AVP 0\na=mid:0\n")
	f.Add(Build(Frag{Ufrag: "u", Pwd: "p", Mid: "0", Candidates: []webrtc.ICECandidateInit{{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}}))
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := Parse(s)
		if err != nil {
			return
		}
		if len(fr.Candidates) > MaxCandidates {
			t.Fatalf("%d candidates", len(fr.Candidates))
		}
		// What parses, built again, parses to the same credentials and candidates.
		again, err := Parse(Build(fr))
		if err != nil {
			t.Fatalf("rebuilt fragment does not parse: %v", err)
		}
		if again.Ufrag != fr.Ufrag || again.Pwd != fr.Pwd || len(again.Candidates) != len(fr.Candidates) {
			t.Fatalf("round trip: %+v -> %+v", fr, again)
		}
	})
}

func FuzzReplaceICE(f *testing.F) {
	f.Add(offer, "u", "p", "candidate:1 1 udp 1 127.0.0.1 9 typ host")
	f.Fuzz(func(t *testing.T, sdp, ufrag, pwd, cand string) {
		out, err := ReplaceICE(sdp, ufrag, pwd, []webrtc.ICECandidateInit{{Candidate: cand}})
		if err != nil {
			return
		}
		if !strings.Contains(out, "a=ice-ufrag:"+ufrag) {
			t.Fatal("ufrag not written")
		}
	})
}
