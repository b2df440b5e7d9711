package peer

import (
	"errors"
	"strings"
	"testing"
)

func offerWith(media ...string) string {
	s := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	for _, m := range media {
		s += m
	}
	return s
}

const (
	h264Mode1 = "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n"
	h264Mode0 = "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f\r\n"
	vp8Only   = "m=video 9 UDP/TLS/RTP/SAVPF 96 98\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=96\r\n"
	opus      = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
	pcmu      = "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n"
)

func TestCheckOffer(t *testing.T) {
	cases := []struct {
		name         string
		sdp          string
		video, audio bool
		err          error
		errHas       []string
	}{
		{"h264+opus", offerWith(h264Mode1, opus), true, true, nil, nil},
		{"opus only", offerWith(opus), false, true, nil, nil},
		{"vp8 video, opus audio", offerWith(vp8Only, opus), false, true, nil, nil},
		{"vp8 only", offerWith(vp8Only), false, false, ErrNoAcceptableCodec, []string{"VP8", "H264", "opus"}},
		{"h264 mode 0", offerWith(h264Mode0), false, false, ErrNoAcceptableCodec, []string{"packetization-mode=0"}},
		{"pcmu only", offerWith(pcmu), false, false, ErrNoAcceptableCodec, []string{"PCMU"}},
		{"no media", offerWith(), false, false, ErrMalformedOffer, nil},
		{"garbage", "hello", false, false, ErrMalformedOffer, nil},
		{"empty", "", false, false, ErrMalformedOffer, nil},
		{"bad rtpmap", offerWith("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111\r\n"), false, false, ErrMalformedOffer, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			om, err := CheckOffer(tc.sdp)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, h := range tc.errHas {
				if !strings.Contains(err.Error(), h) {
					t.Errorf("error %q lacks %q", err, h)
				}
			}
			if err == nil && (om.Video != tc.video || om.Audio != tc.audio) {
				t.Fatalf("video=%v audio=%v", om.Video, om.Audio)
			}
		})
	}
}

func TestCodecsFromAnswer(t *testing.T) {
	answer := offerWith(
		"m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n",
		"m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\n",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n",
	)
	conf, err := codecsFromAnswer(answer)
	if err != nil {
		t.Fatal(err)
	}
	if conf.Video == nil || conf.Video.MimeType != "video/H264" || conf.Video.ClockRate != 90000 {
		t.Fatalf("video = %+v", conf.Video)
	}
	if conf.Audio == nil || conf.Audio.MimeType != "audio/opus" || conf.Audio.Channels != 2 {
		t.Fatalf("audio = %+v", conf.Audio)
	}
	if _, err := codecsFromAnswer(offerWith("m=video 0 UDP/TLS/RTP/SAVPF 0\r\n")); !errors.Is(err, ErrNoAcceptableCodec) {
		t.Fatalf("rejected-only answer: %v", err)
	}
}

func FuzzCheckOffer(f *testing.F) {
	f.Add(offerWith(h264Mode1, opus))
	f.Add(offerWith(vp8Only))
	f.Add("v=0\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		_, _ = CheckOffer(sdp)
		_, _ = codecsFromAnswer(sdp)
	})
}
