package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/remux"
)

// Offer errors. Callers map ErrMalformedOffer to 400 and ErrNoAcceptableCodec to 406.
var (
	ErrMalformedOffer    = errors.New("malformed SDP offer")
	ErrNoAcceptableCodec = errors.New("no acceptable codec")
)

// Accepted names what the gateway accepts, for error messages, video in
// order of preference.
const Accepted = "video H264 (packetization-mode=1), VP9 (profile-id 0 or 2), AV1 (profile 0), H265 (profile-id 1 or 2); audio opus"

// OfferMedia is what an offer proposes that the gateway can take.
type OfferMedia struct {
	Video, Audio bool
	// Offered lists every codec per media kind, e.g. {"video": ["VP8","H264"]}.
	Offered map[string][]string
}

// CheckOffer parses an SDP offer and reports which media the gateway can
// accept. It fails with ErrMalformedOffer or ErrNoAcceptableCodec (the error
// text names what was offered and what is accepted).
func CheckOffer(offer string) (OfferMedia, error) {
	om := OfferMedia{Offered: map[string][]string{}}
	if strings.TrimSpace(offer) == "" {
		return om, fmt.Errorf("%w: empty body", ErrMalformedOffer)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return om, fmt.Errorf("%w: %v", ErrMalformedOffer, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return om, fmt.Errorf("%w: no media sections", ErrMalformedOffer)
	}
	if len(sd.MediaDescriptions) > 16 {
		return om, fmt.Errorf("%w: %d media sections (at most 16)", ErrMalformedOffer, len(sd.MediaDescriptions))
	}
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "video" && kind != "audio" {
			continue
		}
		codecs := map[string]string{} // payload type -> name
		fmtp := map[string]string{}
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, rest, ok := strings.Cut(a.Value, " ")
				if !ok {
					return om, fmt.Errorf("%w: bad rtpmap %q", ErrMalformedOffer, a.Value)
				}
				name, _, _ := strings.Cut(rest, "/")
				codecs[pt] = name
			case "fmtp":
				pt, rest, _ := strings.Cut(a.Value, " ")
				fmtp[pt] = rest
			}
		}
		seen := map[string]bool{}
		for _, pt := range md.MediaName.Formats {
			name := codecs[pt]
			if name == "" {
				continue
			}
			ok, label := acceptable(kind, name, fmtp[pt])
			if ok && kind == "video" {
				om.Video = true
			}
			if ok && kind == "audio" {
				om.Audio = true
			}
			if !seen[label] && !isHelperCodec(name) {
				seen[label] = true
				om.Offered[kind] = append(om.Offered[kind], label)
			}
		}
	}
	if !om.Video && !om.Audio {
		return om, fmt.Errorf("%w: offered %s; accepted: %s", ErrNoAcceptableCodec, om.describe(), Accepted)
	}
	return om, nil
}

func (om OfferMedia) describe() string {
	if len(om.Offered) == 0 {
		return "no audio or video codecs"
	}
	kinds := make([]string, 0, len(om.Offered))
	for k := range om.Offered {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, k+" "+strings.Join(om.Offered[k], ", "))
	}
	return strings.Join(parts, "; ")
}

// acceptable reports whether the gateway takes codec name with these format
// parameters, and how to name it in an error message.
func acceptable(kind, name, fmtp string) (bool, string) {
	if kind == "audio" {
		return strings.EqualFold(name, "opus"), name
	}
	switch strings.ToUpper(name) {
	case "H264":
		if !packetizationMode1(fmtp) {
			return false, "H264 (packetization-mode=0)"
		}
		return true, name
	case "VP9":
		if p := fmtpParam(fmtp, "profile-id", "0"); p != "0" && p != "2" {
			return false, "VP9 (profile-id=" + p + ")"
		}
		return true, name
	case "AV1":
		if p := fmtpParam(fmtp, "profile", "0"); p != "0" {
			return false, "AV1 (profile=" + p + ")"
		}
		return true, name
	case "H265":
		if p := fmtpParam(fmtp, "profile-id", "1"); p != "1" && p != "2" {
			return false, "H265 (profile-id=" + p + ")"
		}
		return true, name
	}
	return false, name
}

// fmtpParam returns the value of key in an fmtp line, or def.
func fmtpParam(fmtp, key, def string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return def
}

func packetizationMode1(fmtp string) bool {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, "packetization-mode") {
			return strings.TrimSpace(v) == "1"
		}
	}
	return false
}

func isHelperCodec(name string) bool {
	switch strings.ToLower(name) {
	case "rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event":
		return true
	}
	return false
}

// videoRank orders video codecs by preference (PROTOCOL.md): H.264, VP9,
// AV1, H.265. Pion answers in the offer's order, and browsers offer VP8 and
// VP9 first, so the answerer sets its own preference.
func videoRank(name string) int {
	switch strings.ToUpper(name) {
	case "H264":
		return 0
	case "VP9":
		return 1
	case "AV1":
		return 2
	case "H265":
		return 3
	}
	return 4
}

// preferCodecs decides which video codec the answer selects. When the
// offer's first video codec is one the gateway takes, the offerer chose it
// (the publish page puts the codec the user picked first) and Pion's answer,
// which keeps the offer's order, stands. Otherwise (browsers list VP8 first
// by default) it sets on the transceiver the offered codecs the gateway
// takes in its own order of preference, H.264, VP9, AV1, H.265, with their
// RTX and RTCP feedback. On any doubt it leaves Pion's choice alone.
func preferCodecs(pc *webrtc.PeerConnection, offer string, log *slog.Logger) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return
	}
	byMid := map[string]*sdp.MediaDescription{}
	for _, md := range sd.MediaDescriptions {
		if mid, ok := md.Attribute("mid"); ok && md.MediaName.Media == "video" {
			byMid[mid] = md
		}
	}
	for _, tr := range pc.GetTransceivers() {
		md := byMid[tr.Mid()]
		if md == nil || tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		type offered struct {
			c    webrtc.RTPCodecParameters
			rank int
		}
		names := map[string]string{}
		fmtps := map[string]string{}
		fbs := map[string][]webrtc.RTCPFeedback{} // "*" applies to every payload type
		for _, a := range md.Attributes {
			pt, rest, _ := strings.Cut(a.Value, " ")
			switch a.Key {
			case "rtpmap":
				names[pt] = rest
			case "fmtp":
				fmtps[pt] = rest
			case "rtcp-fb":
				typ, param, _ := strings.Cut(rest, " ")
				fbs[pt] = append(fbs[pt], webrtc.RTCPFeedback{Type: typ, Parameter: param})
			}
		}
		firstOK := false
		for _, ptStr := range md.MediaName.Formats {
			name, _, _ := strings.Cut(names[ptStr], "/")
			if name == "" || isHelperCodec(name) {
				continue
			}
			firstOK, _ = acceptable("video", name, fmtps[ptStr])
			break
		}
		if firstOK {
			continue
		}
		var primary []offered
		rtx := map[string][]webrtc.RTPCodecParameters{} // apt -> rtx codecs
		for _, ptStr := range md.MediaName.Formats {
			rm := names[ptStr]
			name, clock, _ := strings.Cut(rm, "/")
			var pt uint8
			if _, err := fmt.Sscan(ptStr, &pt); err != nil || name == "" {
				continue
			}
			var rate uint32
			fmt.Sscan(clock, &rate)
			// The feedback the offer lists; the answer keeps what the
			// MediaEngine also registers (NACK, PLI, FIR, REMB, TWCC).
			fb := append(append([]webrtc.RTCPFeedback(nil), fbs[ptStr]...), fbs["*"]...)
			c := webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/" + name, ClockRate: rate, SDPFmtpLine: fmtps[ptStr], RTCPFeedback: fb},
				PayloadType:        webrtc.PayloadType(pt),
			}
			if strings.EqualFold(name, "rtx") {
				apt := fmtpValue(fmtps[ptStr], "apt")
				rtx[apt] = append(rtx[apt], c)
				continue
			}
			if ok, _ := acceptable("video", name, fmtps[ptStr]); ok {
				primary = append(primary, offered{c, videoRank(name)})
			}
		}
		if len(primary) == 0 {
			continue
		}
		sort.SliceStable(primary, func(i, j int) bool { return primary[i].rank < primary[j].rank })
		// Keep what the MediaEngine can match (e.g. an H.264 profile it does
		// not register is left out), one codec at a time.
		var prefs, rtxs []webrtc.RTPCodecParameters
		for _, p := range primary {
			if tr.SetCodecPreferences([]webrtc.RTPCodecParameters{p.c}) != nil {
				continue
			}
			prefs = append(prefs, p.c)
			for _, r := range rtx[fmt.Sprint(uint8(p.c.PayloadType))] {
				if tr.SetCodecPreferences([]webrtc.RTPCodecParameters{r}) == nil {
					rtxs = append(rtxs, r)
				}
			}
		}
		if len(prefs) == 0 {
			_ = tr.SetCodecPreferences(nil)
			continue
		}
		if err := tr.SetCodecPreferences(append(prefs, rtxs...)); err != nil {
			log.Debug("codec preferences not set; keeping the offer's order", "err", err)
		}
	}
}

func fmtpValue(fmtp, key string) string { return fmtpParam(fmtp, key, "") }

// codecsFromAnswer reads the first accepted video and audio codec of the answer.
func codecsFromAnswer(answer string) (remux.Config, error) {
	var conf remux.Config
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return conf, fmt.Errorf("peer: own answer unparsable: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		if _, inactive := md.Attribute("inactive"); inactive {
			continue
		}
		first := md.MediaName.Formats[0]
		var name string
		var clock, channels uint64
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, rest, _ := strings.Cut(a.Value, " ")
			if pt != first {
				continue
			}
			parts := strings.Split(rest, "/")
			name = parts[0]
			if len(parts) > 1 {
				fmt.Sscan(parts[1], &clock)
			}
			if len(parts) > 2 {
				fmt.Sscan(parts[2], &channels)
			}
		}
		switch {
		case md.MediaName.Media == "video" && conf.Video == nil && name != "":
			conf.Video = &remux.CodecParams{MimeType: "video/" + name, ClockRate: uint32(clock)}
		case md.MediaName.Media == "audio" && conf.Audio == nil && name != "":
			conf.Audio = &remux.CodecParams{MimeType: "audio/" + name, ClockRate: uint32(clock), Channels: uint16(channels)}
		}
	}
	if conf.Video == nil && conf.Audio == nil {
		return conf, fmt.Errorf("%w: the answer accepts no media", ErrNoAcceptableCodec)
	}
	return conf, nil
}
