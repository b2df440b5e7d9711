// Package sdpfrag reads and writes the ICE parts of SDP: the RFC 8840 SDP
// fragments that WHIP (RFC 9725) sends in PATCH requests for trickle ICE and
// ICE restarts, and the ICE credentials and candidates of a full SDP, which
// an ICE restart replaces. It is shared by the gateway's WHIP server and the
// project's WHIP client.
package sdpfrag

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// MaxCandidates bounds the candidates one fragment may carry.
const MaxCandidates = 64

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed SDP fragment")

// Frag is the content of an SDP fragment.
type Frag struct {
	Ufrag, Pwd string // ICE credentials; both set for an ICE restart
	// Mid is the media section the candidates belong to (the first one of
	// the bundle: WHIP uses max-bundle).
	Mid        string
	Candidates []webrtc.ICECandidateInit
	// EndOfCandidates is set when the fragment says gathering is complete.
	EndOfCandidates bool
}

// Parse reads an SDP fragment: session-level ICE attributes, then zero or
// more media sections with a=mid and a=candidate lines.
func Parse(frag string) (Frag, error) {
	var (
		f     Frag
		mid   *string
		mline = -1
	)
	for _, raw := range strings.Split(frag, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case strings.HasPrefix(line, "m="):
			mline++
			mid = nil
		case strings.HasPrefix(line, "a=mid:"):
			m := strings.TrimPrefix(line, "a=mid:")
			mid = &m
			if f.Mid == "" {
				f.Mid = m
			}
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.Ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.Pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case line == "a=end-of-candidates":
			f.EndOfCandidates = true
		case strings.HasPrefix(line, "a=candidate:"):
			if len(f.Candidates) >= MaxCandidates {
				return Frag{}, fmt.Errorf("%w: more than %d candidates", ErrMalformed, MaxCandidates)
			}
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a="), SDPMid: mid}
			if mline >= 0 {
				i := uint16(mline)
				c.SDPMLineIndex = &i
			}
			f.Candidates = append(f.Candidates, c)
		case strings.HasPrefix(line, "a="):
			// ice-options, group, ice-lite: nothing to do
		default:
			return Frag{}, fmt.Errorf("%w: not an SDP fragment line: %s", ErrMalformed, truncate(line, 60))
		}
	}
	return f, nil
}

// Build writes f as an SDP fragment with one media section (mid f.Mid), as
// WHIP's max-bundle policy asks. Candidates are written as given; their
// "candidate:" prefix is optional.
func Build(f Frag) string {
	var b strings.Builder
	if f.Ufrag != "" {
		b.WriteString("a=ice-ufrag:" + f.Ufrag + "\r\n")
	}
	if f.Pwd != "" {
		b.WriteString("a=ice-pwd:" + f.Pwd + "\r\n")
	}
	b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n")
	b.WriteString("a=mid:" + f.Mid + "\r\n")
	for _, c := range f.Candidates {
		b.WriteString("a=" + withPrefix(c.Candidate) + "\r\n")
	}
	if f.EndOfCandidates {
		b.WriteString("a=end-of-candidates\r\n")
	}
	return b.String()
}

// FromSDP returns the ICE credentials and candidates of the first media
// section of a full SDP (session-level credentials count for every section).
func FromSDP(sdp string) Frag {
	var f Frag
	section := -1
	for _, raw := range strings.Split(sdp, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "m="):
			section++
		case section > 0:
			// only the first media section (the bundle's transport)
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.Ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.Pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=mid:"):
			f.Mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:") && section == 0:
			f.Candidates = append(f.Candidates, webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")})
		case line == "a=end-of-candidates" && section == 0:
			f.EndOfCandidates = true
		}
	}
	return f
}

// ReplaceICE returns sdp with its ICE credentials replaced by ufrag and pwd
// wherever they appear, and its candidates replaced by cands (written in the
// first media section; the others are bundled on it). It is how an ICE
// restart exchanged over WHIP PATCH becomes the offer or answer that a
// WebRTC stack applies. The rest of the SDP is kept as it is.
func ReplaceICE(sdp, ufrag, pwd string, cands []webrtc.ICECandidateInit) (string, error) {
	if ufrag == "" || pwd == "" {
		return "", fmt.Errorf("%w: ICE restart without ice-ufrag and ice-pwd", ErrMalformed)
	}
	lines := strings.Split(strings.TrimRight(sdp, "\r\n"), "\n")
	out := make([]string, 0, len(lines)+len(cands))
	section, replaced := -1, 0
	flushCands := func() {
		for _, c := range cands {
			out = append(out, "a="+withPrefix(c.Candidate))
		}
		out = append(out, "a=end-of-candidates")
	}
	for _, raw := range lines {
		line := strings.TrimRight(raw, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			if section == 0 {
				flushCands()
			}
			section++
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = "a=ice-ufrag:" + ufrag
			replaced++
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = "a=ice-pwd:" + pwd
		case strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			continue
		}
		out = append(out, line)
	}
	if section == 0 {
		flushCands()
	}
	if section < 0 || replaced == 0 {
		return "", fmt.Errorf("%w: the SDP has no media section with ICE credentials", ErrMalformed)
	}
	return strings.Join(out, "\r\n") + "\r\n", nil
}

func withPrefix(c string) string {
	if strings.HasPrefix(c, "candidate:") {
		return c
	}
	return "candidate:" + c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
