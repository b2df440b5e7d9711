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

// Accepted names what the gateway accepts, for error messages.
const Accepted = "video H264 (packetization-mode=1), audio opus"

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
			switch {
			case kind == "video" && strings.EqualFold(name, "H264") && packetizationMode1(fmtp[pt]):
				om.Video = true
			case kind == "audio" && strings.EqualFold(name, "opus"):
				om.Audio = true
			}
			label := name
			if strings.EqualFold(name, "H264") && !packetizationMode1(fmtp[pt]) {
				label = "H264 (packetization-mode=0)"
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
