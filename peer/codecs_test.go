package peer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// offerFrom builds a real offer from a Pion offerer whose MediaEngine holds
// codecs, in that order, with one sendonly video transceiver (and audio).
func offerFrom(t *testing.T, codecs []webrtc.RTPCodecParameters) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func vcodec(mime, fmtp string, pt webrtc.PayloadType) webrtc.RTPCodecParameters {
	c := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp},
		PayloadType:        pt,
	}
	if mime != webrtc.MimeTypeRTX {
		c.RTCPFeedback = []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	}
	return c
}

var (
	cVP8  = vcodec(webrtc.MimeTypeVP8, "", 96)
	cVP9  = vcodec(webrtc.MimeTypeVP9, "profile-id=0", 98)
	cVP92 = vcodec(webrtc.MimeTypeVP9, "profile-id=2", 100)
	cVP91 = vcodec(webrtc.MimeTypeVP9, "profile-id=1", 102)
	cAV1  = vcodec(webrtc.MimeTypeAV1, "level-idx=5;profile=0;tier=0", 45)
	cH264 = vcodec(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 109)
	cH265 = vcodec(webrtc.MimeTypeH265, "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST", 49)
	cRTX  = func(apt string, pt webrtc.PayloadType) webrtc.RTPCodecParameters {
		return vcodec(webrtc.MimeTypeRTX, "apt="+apt, pt)
	}
)

// TestCodecPreference: an offer whose first video codec is acceptable gets
// that codec (the offerer chose it); otherwise (browsers put VP8 first) the
// answer selects H.264, then VP9, AV1, H.265; never VP8. The selected codec
// keeps NACK, PLI and TWCC feedback.
func TestCodecPreference(t *testing.T) {
	e, err := NewEngine(Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		name   string
		offer  []webrtc.RTPCodecParameters
		want   string
		fmtpIn string
	}{
		{"browser order", []webrtc.RTPCodecParameters{cVP8, cRTX("96", 97), cVP9, cRTX("98", 99), cAV1, cH264, cRTX("109", 110), cH265}, "video/H264", ""},
		{"vp9 before av1", []webrtc.RTPCodecParameters{cVP8, cAV1, cH265, cVP92, cVP9}, "video/VP9", ""},
		{"vp9 profile 2 only", []webrtc.RTPCodecParameters{cVP8, cVP92}, "video/VP9", "profile-id=2"},
		{"av1 over h265", []webrtc.RTPCodecParameters{cVP8, cH265, cAV1}, "video/AV1", ""},
		{"offerer picks vp9", []webrtc.RTPCodecParameters{cVP9, cRTX("98", 99), cH264, cAV1}, "video/VP9", "profile-id=0"},
		{"offerer picks av1", []webrtc.RTPCodecParameters{cAV1, cH264, cVP9}, "video/AV1", ""},
		{"offerer picks h265", []webrtc.RTPCodecParameters{cH265, cH264}, "video/H265", ""},
		{"h265 only", []webrtc.RTPCodecParameters{cH265}, "video/H265", ""},
		{"vp9 profile 1 and av1", []webrtc.RTPCodecParameters{cVP91, cAV1}, "video/AV1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offer := offerFrom(t, tc.offer)
			om, err := CheckOffer(offer)
			if err != nil || !om.Video || !om.Audio {
				t.Fatalf("CheckOffer: %+v, %v", om, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, answer, err := e.Accept(ctx, offer, SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.conf.Video == nil || !strings.EqualFold(s.conf.Video.MimeType, tc.want) {
				t.Fatalf("negotiated %+v, want %s\n%s", s.conf.Video, tc.want, answer)
			}
			if tc.fmtpIn != "" && !strings.Contains(answer, tc.fmtpIn) {
				t.Fatalf("answer lacks %q:\n%s", tc.fmtpIn, answer)
			}
			if strings.Contains(answer, "VP8/90000") {
				t.Fatalf("answer offers VP8:\n%s", answer)
			}
			// The chosen codec keeps its feedback: NACK (loss repair), PLI
			// (keyframe requests), TWCC (browsers ramp their bitrate on it).
			pt := videoPT(t, answer)
			for _, fb := range []string{"nack", "nack pli", "transport-cc"} {
				if !strings.Contains(answer, "a=rtcp-fb:"+pt+" "+fb+"\r\n") {
					t.Errorf("answer lacks rtcp-fb %q for payload type %s:\n%s", fb, pt, answer)
				}
			}
		})
	}
}

// TestCheckOfferCodecs: VP9 (profiles 0 and 2), AV1 (profile 0) and H.265
// (profiles 1 and 2) are accepted; other profiles are named in the 406 text.
func TestCheckOfferCodecs(t *testing.T) {
	m := func(name, fmtp string) string {
		s := "m=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:100 " + name + "/90000\r\n"
		if fmtp != "" {
			s += "a=fmtp:100 " + fmtp + "\r\n"
		}
		return s
	}
	for _, tc := range []struct {
		name, fmtp string
		ok         bool
		label      string
	}{
		{"VP9", "", true, ""},
		{"VP9", "profile-id=0", true, ""},
		{"VP9", "profile-id=2", true, ""},
		{"VP9", "profile-id=1", false, "VP9 (profile-id=1)"},
		{"AV1", "", true, ""},
		{"AV1", "profile=0;level-idx=5", true, ""},
		{"AV1", "profile=1", false, "AV1 (profile=1)"},
		{"H265", "", true, ""},
		{"H265", "profile-id=2", true, ""},
		{"H265", "profile-id=4", false, "H265 (profile-id=4)"},
		{"VP8", "", false, "VP8"},
	} {
		_, err := CheckOffer(offerWith(m(tc.name, tc.fmtp)))
		if tc.ok && err != nil {
			t.Errorf("%s %s: %v", tc.name, tc.fmtp, err)
		}
		if !tc.ok {
			if !errors.Is(err, ErrNoAcceptableCodec) {
				t.Errorf("%s %s: err %v", tc.name, tc.fmtp, err)
				continue
			}
			for _, want := range []string{tc.label, "VP9", "AV1", "H265", "H264", "opus"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s %s: error %q lacks %q", tc.name, tc.fmtp, err, want)
				}
			}
		}
	}
}

// videoPT returns the first payload type of the answer's video section.
func videoPT(t *testing.T, answer string) string {
	for _, l := range strings.Split(answer, "\r\n") {
		if strings.HasPrefix(l, "m=video ") {
			f := strings.Fields(l)
			if len(f) > 3 {
				return f[3]
			}
		}
	}
	t.Fatalf("no video section:\n%s", answer)
	return ""
}
