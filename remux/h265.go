package remux

import (
	"bytes"
	"fmt"

	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/Eyevinn/mp4ff/mp4"
)

// MimeTypeH265 is pion/webrtc's MimeTypeH265.
const MimeTypeH265 = "video/H265"

// h265Assembler depacketizes H.265 (RFC 7798 without DONL: single NAL unit
// packets, aggregation packets and fragmentation units) into HEVC sample
// data: 4-byte length-prefixed NAL units. VPS, SPS and PPS are kept out of
// the sample data and carried in the hvcC of an "hvc1" sample entry.
type h265Assembler struct {
	nalFrame
	gotVPS bool
	gotSPS bool
	gotPPS bool

	newVPS, newSPS, newPPS []byte // latest seen in band
	vps, sps, pps          []byte // committed
	width, height          int
	codec                  string
	reorder                int
}

func newH265Assembler() *h265Assembler {
	return &h265Assembler{nalFrame: newNALFrame()}
}

func (a *h265Assembler) reset() {
	a.nalFrame.reset()
	a.gotVPS, a.gotSPS, a.gotPPS = false, false, false
}

func (a *h265Assembler) add(p []byte) {
	if a.broken {
		return
	}
	if len(p) < 3 {
		a.broken = true
		return
	}
	switch typ := (p[0] >> 1) & 0x3f; {
	case typ < 48: // single NAL unit packet
		if a.fuStart >= 0 {
			a.broken = true
			return
		}
		a.appendNAL(p)
	case typ == 48: // aggregation packet
		if a.fuStart >= 0 {
			a.broken = true
			return
		}
		for q := p[2:]; len(q) > 0 && !a.broken; {
			var nal []byte
			if nal, q = a.nextUnit(q, 2); nal != nil {
				a.appendNAL(nal)
			}
		}
	case typ == 49: // fragmentation unit
		if len(p) < 4 {
			a.broken = true
			return
		}
		fu := p[2]
		hdr := [2]byte{p[0]&0x81 | (fu&0x3f)<<1, p[1]}
		if s := a.fragment(fu&0x80 != 0, fu&0x40 != 0, hdr[:], p[3:]); s >= 0 {
			a.endNAL(s)
		}
	default: // PACI (50) and unspecified types
		a.broken = true
	}
}

func (a *h265Assembler) addFrame(au []byte) { a.addAnnexB(au, h265RTPOnly, a.appendNAL) }

// h265RTPOnly reports NAL units that cannot stand in a coded stream (too short, or an RTP-only type (aggregation, FU, PACI)).
func h265RTPOnly(nal []byte) bool { return len(nal) < 3 || (nal[0]>>1)&0x3f >= 48 }

func (a *h265Assembler) appendNAL(nal []byte) {
	if s, ok := a.appendRaw(nal); ok {
		a.endNAL(s)
	}
}

// endNAL finishes the NAL unit at a.buf[s:]: fills in its length, or takes
// it out of the sample data.
func (a *h265Assembler) endNAL(s int) {
	nal := a.buf[s+4:]
	// Too short for a header and payload, forbidden bit set, or
	// nuh_temporal_id_plus1 zero: the sender flags an error or sent garbage.
	if len(nal) < 3 || nal[0]&0x80 != 0 || nal[1]&7 == 0 {
		a.broken = true
		a.buf = a.buf[:s]
		return
	}
	if nal[0]&1 != 0 || nal[1]>>3 != 0 { // nuh_layer_id > 0: not decoded
		a.buf = a.buf[:s]
		return
	}
	switch typ := (nal[0] >> 1) & 0x3f; {
	case typ <= 9 || (typ >= 16 && typ <= 21): // slice segments
		if !a.sawVCL {
			a.sawVCL = true
			// first_slice_segment_in_pic_flag, the first bit after the NAL
			// header: a frame whose first slice is missing lost its start.
			if nal[2]&0x80 == 0 {
				a.broken = true
			}
		}
		if typ >= 16 {
			a.key = true // IRAP: BLA, IDR, CRA
		}
	case typ == 39 || typ == 40: // SEI: kept
	case typ == 32:
		a.newVPS, a.gotVPS = a.keepParam(a.newVPS, nal), true
		a.buf = a.buf[:s]
		return
	case typ == 33:
		a.newSPS, a.gotSPS = a.keepParam(a.newSPS, nal), true
		a.buf = a.buf[:s]
		return
	case typ == 34:
		a.newPPS, a.gotPPS = a.keepParam(a.newPPS, nal), true
		a.buf = a.buf[:s]
		return
	default: // AUD, EOS, EOB, filler, reserved, unspecified: dropped
		a.buf = a.buf[:s]
		return
	}
	a.keepNAL(s)
}

func (a *h265Assembler) finish() videoFrame {
	f := videoFrame{data: a.buf, key: a.key, hasConfig: a.gotVPS && a.gotSPS && a.gotPPS}
	f.configChanged = len(a.newVPS) > 0 && len(a.newSPS) > 0 && len(a.newPPS) > 0 &&
		(!bytes.Equal(a.newVPS, a.vps) || !bytes.Equal(a.newSPS, a.sps) || !bytes.Equal(a.newPPS, a.pps))
	f.status = a.status()
	return f
}

func (a *h265Assembler) haveConfig() bool { return len(a.sps) > 0 }

func (a *h265Assembler) reorderDepth() int { return a.reorder }

func (a *h265Assembler) commit() error {
	if len(a.newVPS) == 0 || len(a.newSPS) == 0 || len(a.newPPS) == 0 {
		return errNoConfig
	}
	if bytes.Equal(a.newVPS, a.vps) && bytes.Equal(a.newSPS, a.sps) && bytes.Equal(a.newPPS, a.pps) {
		return nil
	}
	sps, err := parseHEVCSPS(a.newSPS)
	if err != nil {
		return err
	}
	w, h := sps.ImageSize()
	if w == 0 || h == 0 || w > 16384 || h > 16384 {
		return fmt.Errorf("remux: H.265 SPS with picture size %dx%d", w, h)
	}
	codec := ""
	if err := safeCall(func() error { codec = hevc.CodecString("hvc1", sps); return nil }); err != nil {
		return err
	}
	a.vps = append(a.vps[:0], a.newVPS...)
	a.sps = append(a.sps[:0], a.newSPS...)
	a.pps = append(a.pps[:0], a.newPPS...)
	a.width, a.height = int(w), int(h)
	a.reorder = 0
	if n := len(sps.SubLayeringOrderingInfos); n > 0 { // the highest sub-layer's
		a.reorder = int(min(sps.SubLayeringOrderingInfos[n-1].MaxNumReorderPics, maxReorderDepth))
	}
	a.codec = codec
	return nil
}

// parseHEVCSPS parses an H.265 SPS NAL unit (header included) with mp4ff,
// turning a panic on untrusted bytes into an error.
func parseHEVCSPS(nal []byte) (sps *hevc.SPS, err error) {
	err = safeCall(func() error {
		var e error
		sps, e = hevc.ParseSPSNALUnit(nal)
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("remux: bad H.265 SPS: %w", err)
	}
	return sps, nil
}

func (a *h265Assembler) addTrack(init *mp4.InitSegment) (tr Track, err error) {
	if !a.haveConfig() {
		return tr, errNoConfig
	}
	vps := append([]byte(nil), a.vps...)
	sps := append([]byte(nil), a.sps...)
	pps := append([]byte(nil), a.pps...)
	trak := init.AddEmptyTrack(90000, "video", "und")
	if err := safeCall(func() error {
		return trak.SetHEVCDescriptor("hvc1", [][]byte{vps}, [][]byte{sps}, [][]byte{pps}, nil, true)
	}); err != nil {
		return tr, err
	}
	return Track{ID: trak.Tkhd.TrackID, Kind: "video", Codec: a.codec, Width: a.width, Height: a.height, Timescale: 90000}, nil
}
