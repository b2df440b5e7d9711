package peer

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pion/sdp/v3"
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
