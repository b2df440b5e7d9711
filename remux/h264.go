package remux

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/mp4"
)

const (
	maxFrameBytes  = 8 << 20 // sample data of one video frame
	maxFrameNALUs  = 1024    // NAL units in one video frame
	maxParamSetLen = 1024    // bytes of one SPS or PPS
)

// frameStatus says what a video assembler made of a frame.
type frameStatus int

const (
	frameEmpty  frameStatus = iota // no picture data (e.g. parameter sets only)
	frameOK                        // complete, as far as the payloads tell
	frameBroken                    // truncated NAL unit, missing first slice, bad packet...
)

// videoFrame is a frame as a videoAssembler reports it. data is only valid
// until the assembler's next reset.
type videoFrame struct {
	status frameStatus
	data   []byte // sample data as stored in mdat
	key    bool   // random access point
	// hasConfig: the frame carries, in band, everything a decoder needs to
	// start from it (H.264: SPS and PPS).
	hasConfig bool
	// configChanged: the frame carries decoder configuration that differs
	// from the one in the current init.
	configChanged bool
}

// videoAssembler turns the in-order RTP payloads of one video codec into
// frames and decoder configuration. The Stream handles sequence numbers, loss,
// frame boundaries and timing; an assembler only knows its payload format.
// VP9, AV1 and H.265 slot in as further implementations.
type videoAssembler interface {
	// reset starts a new frame, dropping any partial one. Configuration seen
	// in band but not yet committed is kept.
	reset()
	// add appends one RTP payload of the current frame. Malformed data marks
	// the frame broken; it never panics.
	add(payload []byte)
	// addFrame takes the whole current frame as the encoder made it (see
	// Stream.PushVideoFrame), under the same checks as add.
	addFrame(frame []byte)
	// finish ends the current frame and reports it.
	finish() videoFrame
	// commit makes the configuration seen in band the current one; called
	// when a keyframe is emitted. It fails when that configuration is
	// missing or unusable.
	commit() error
	// haveConfig reports whether a configuration was committed.
	haveConfig() bool
	// addTrack adds the track with the committed configuration to init.
	addTrack(init *mp4.InitSegment) (Track, error)
	// reorderDepth is how many frames the committed configuration may
	// present out of decode order (B-frames): H.264 VUI
	// max_num_reorder_frames, H.265 sps_max_num_reorder_pics; 0 for VP9,
	// AV1 and streams that declare none.
	reorderDepth() int
}

var errNoConfig = errors.New("remux: no decoder configuration")

// h264Assembler depacketizes H.264 (RFC 6184, packetization-mode 0 and 1)
// into AVC sample data: 4-byte length-prefixed NAL units. SPS and PPS are
// kept out of the sample data.
type h264Assembler struct {
	nalFrame
	gotSPS bool // this frame carried an SPS / PPS
	gotPPS bool

	// In-band parameter sets, latest seen (kept across frames).
	newSPS, newPPS []byte
	// Committed parameter sets and what was parsed from them.
	sps, pps []byte
	width    int
	height   int
	codec    string
	reorder  int
}

func newH264Assembler() *h264Assembler {
	return &h264Assembler{nalFrame: newNALFrame()}
}

func (a *h264Assembler) reset() {
	a.nalFrame.reset()
	a.gotSPS = false
	a.gotPPS = false
}

func (a *h264Assembler) add(p []byte) {
	if len(p) < 1 || a.broken {
		return
	}
	typ := p[0] & 0x1f
	switch {
	case typ >= 1 && typ <= 23: // single NAL unit packet
		if a.fuStart >= 0 {
			a.broken = true // FU-A without its end fragment
			return
		}
		a.appendNAL(p)
	case typ == 24: // STAP-A
		if a.fuStart >= 0 {
			a.broken = true
			return
		}
		for q := p[1:]; len(q) > 0 && !a.broken; {
			var nal []byte
			if nal, q = a.nextUnit(q, 1); nal != nil {
				a.appendNAL(nal)
			}
		}
	case typ == 28: // FU-A
		if len(p) < 3 {
			a.broken = true
			return
		}
		fu := p[1]
		hdr := [1]byte{p[0]&0xe0 | fu&0x1f}
		if s := a.fragment(fu&0x80 != 0, fu&0x40 != 0, hdr[:], p[2:]); s >= 0 {
			a.endNAL(s)
		}
	default: // 0, 25-27 (STAP-B, MTAP: interleaved mode), 29 (FU-B), 30, 31
		a.broken = true
	}
}

func (a *h264Assembler) addFrame(au []byte) { a.addAnnexB(au, h264RTPOnly, a.appendNAL) }

// h264RTPOnly reports NAL units that cannot stand in a coded stream (types 0 and 24-31 are RTP-only or unspecified).
func h264RTPOnly(nal []byte) bool { return len(nal) == 0 || nal[0]&0x1f == 0 || nal[0]&0x1f > 23 }

func (a *h264Assembler) appendNAL(nal []byte) {
	if s, ok := a.appendRaw(nal); ok {
		a.endNAL(s)
	}
}

// endNAL finishes the NAL unit written at a.buf[s:]: it fills in the length
// prefix, or takes the unit out of the sample data.
func (a *h264Assembler) endNAL(s int) {
	nal := a.buf[s+4:]
	if len(nal) == 0 {
		a.buf = a.buf[:s]
		return
	}
	if nal[0]&0x80 != 0 { // forbidden_zero_bit: the sender flags an error
		a.broken = true
		a.buf = a.buf[:s]
		return
	}
	switch typ := nal[0] & 0x1f; typ {
	case 1, 2, 3, 4, 5: // slices
		if !a.sawVCL {
			a.sawVCL = true
			// first_mb_in_slice is the first ue(v) of the slice header: it is
			// zero exactly when its first bit is 1. A frame whose first slice
			// does not start at macroblock 0 lost its beginning.
			if len(nal) < 2 || nal[1]&0x80 == 0 {
				a.broken = true
			}
		}
		if typ == 5 {
			a.key = true
		}
	case 6: // SEI: kept
	case 7:
		a.newSPS, a.gotSPS = a.keepParam(a.newSPS, nal), true
		a.buf = a.buf[:s]
		return
	case 8:
		a.newPPS, a.gotPPS = a.keepParam(a.newPPS, nal), true
		a.buf = a.buf[:s]
		return
	default: // AUD, end of sequence/stream, filler, extensions: dropped
		a.buf = a.buf[:s]
		return
	}
	a.keepNAL(s)
}

func (a *h264Assembler) finish() videoFrame {
	f := videoFrame{data: a.buf, key: a.key, hasConfig: a.gotSPS && a.gotPPS}
	f.configChanged = len(a.newSPS) > 0 && len(a.newPPS) > 0 &&
		(!bytes.Equal(a.newSPS, a.sps) || !bytes.Equal(a.newPPS, a.pps))
	f.status = a.status()
	return f
}

func (a *h264Assembler) haveConfig() bool { return len(a.sps) > 0 }

func (a *h264Assembler) commit() error {
	if len(a.newSPS) == 0 || len(a.newPPS) == 0 {
		return errNoConfig
	}
	if bytes.Equal(a.newSPS, a.sps) && bytes.Equal(a.newPPS, a.pps) {
		return nil
	}
	sps, err := parseSPS(a.newSPS)
	if err != nil {
		return err
	}
	if sps.Width == 0 || sps.Height == 0 || sps.Width > 16384 || sps.Height > 16384 {
		return fmt.Errorf("remux: SPS with picture size %dx%d", sps.Width, sps.Height)
	}
	a.sps = append(a.sps[:0], a.newSPS...)
	a.pps = append(a.pps[:0], a.newPPS...)
	a.width, a.height = int(sps.Width), int(sps.Height)
	a.codec = strings.ToLower(avc.CodecString("avc1", sps))
	// The VUI's bitstream restriction says how far B-frames reorder; a VUI
	// without it, or one that cannot be read, declares none.
	reorder, _ := h264ReorderFrames(a.sps)
	a.reorder = min(reorder, maxReorderDepth)
	return nil
}

func (a *h264Assembler) reorderDepth() int { return a.reorder }

func (a *h264Assembler) addTrack(init *mp4.InitSegment) (tr Track, err error) {
	if !a.haveConfig() {
		return tr, errNoConfig
	}
	trak := init.AddEmptyTrack(90000, "video", "und")
	// The descriptor takes the slices as they are: hand it copies so a later
	// commit cannot change an init already built.
	sps := append([]byte(nil), a.sps...)
	pps := append([]byte(nil), a.pps...)
	if err := safeCall(func() error { return trak.SetAVCDescriptor("avc1", [][]byte{sps}, [][]byte{pps}, true) }); err != nil {
		return tr, err
	}
	return Track{
		ID:        trak.Tkhd.TrackID,
		Kind:      "video",
		Codec:     a.codec,
		Width:     a.width,
		Height:    a.height,
		Timescale: 90000,
	}, nil
}

// parseSPS parses an H.264 SPS NAL unit (header included). mp4ff's parser
// runs on untrusted bytes here, so a panic is turned into an error.
func parseSPS(nal []byte) (sps *avc.SPS, err error) {
	err = safeCall(func() error {
		var e error
		sps, e = avc.ParseSPSNALUnit(nal, false)
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("remux: bad SPS: %w", err)
	}
	return sps, nil
}

func safeCall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("remux: recovered: %v", r)
		}
	}()
	return f()
}
