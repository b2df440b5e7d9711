package remux

import (
	"fmt"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/Eyevinn/mp4ff/vp9"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/bitstream"
)

// MimeTypeVP9 is pion/webrtc's MimeTypeVP9.
const MimeTypeVP9 = "video/VP9"

// vp9Config is what a VP9 keyframe's uncompressed header says about the
// stream: everything the vpcC and the codec string hold, and the frame size.
type vp9Config struct {
	profile    byte
	bitDepth   byte
	chroma     byte // vpcC chroma_subsampling code
	fullRange  bool
	colorSpace byte
	primaries  byte
	transfer   byte
	matrix     byte
	width      uint32
	height     uint32
}

// vp9Assembler depacketizes VP9 (RFC 9628 payload descriptor) into VP9
// frames as MP4 stores them. Only spatial layer 0 is kept: it decodes on its
// own, and MSE plays no spatial scalability. A picture must hold exactly one
// layer-0 frame (a frame the sender packed as a superframe passes through as
// it is). Configuration (vpcC, size) comes from each keyframe's uncompressed
// header.
type vp9Assembler struct {
	pkt     codecs.VP9Packet
	buf     []byte
	inFrame bool // between a B and an E packet
	frames  int  // complete layer-0 frames in this picture
	broken  bool
	key     bool
	gotCfg  bool // this picture is a keyframe whose header parsed
	newCfg  vp9Config

	have  bool // a configuration was committed
	cfg   vp9Config
	level byte
	codec string
}

func newVP9Assembler() *vp9Assembler {
	return &vp9Assembler{buf: make([]byte, 0, 64<<10)}
}

func (a *vp9Assembler) reset() {
	a.buf = a.buf[:0]
	a.inFrame = false
	a.frames = 0
	a.broken = false
	a.key = false
	a.gotCfg = false
}

func (a *vp9Assembler) add(p []byte) {
	if a.broken {
		return
	}
	// A fresh descriptor (pion keeps fields absent from this packet, and
	// appends to PDiff), reusing the PDiff array.
	a.pkt = codecs.VP9Packet{PDiff: a.pkt.PDiff[:0]}
	payload, err := a.pkt.Unmarshal(p)
	if err != nil {
		a.broken = true
		return
	}
	if a.pkt.L && a.pkt.SID > 0 {
		return // an upper spatial layer: not decoded
	}
	if a.pkt.B {
		if a.inFrame || a.frames > 0 {
			a.broken = true // the previous frame never ended, or a second frame
			return
		}
		a.inFrame = true
	} else if !a.inFrame {
		a.broken = true // continuation of a frame whose start is missing
		return
	}
	if len(a.buf)+len(payload) > maxFrameBytes {
		a.broken = true
		return
	}
	a.buf = append(a.buf, payload...)
	if a.pkt.E {
		a.inFrame = false
		if len(a.buf) == 0 {
			a.broken = true
			return
		}
		a.frames++
		a.inspect()
	}
}

func (a *vp9Assembler) addFrame(f []byte) {
	if a.broken {
		return
	}
	a.buf = append(a.buf, f...) // the caller checked maxFrameBytes
	a.frames++
	a.inspect()
}

// inspect reads the first frame's uncompressed header (VP9 spec 6.2): the
// frame type, and the configuration of a keyframe.
func (a *vp9Assembler) inspect() {
	key, ok := bitstream.VP9IsKeyframe(a.buf)
	if !ok {
		a.broken = true
		return
	}
	if !key {
		return
	}
	var h *vp9.Header
	if err := safeCall(func() error {
		var e error
		h, e = vp9.ParseFrameHeader(a.buf)
		return e
	}); err != nil || !h.KeyFrame {
		a.broken = true
		return
	}
	a.key = true
	pr, tr, mx := h.CICP()
	a.newCfg = vp9Config{
		profile: h.Profile, bitDepth: h.BitDepth, chroma: h.VpcCChromaSubsampling(), fullRange: h.ColorRange,
		colorSpace: h.ColorSpace, primaries: pr, transfer: tr, matrix: mx, width: h.Width, height: h.Height,
	}
	a.gotCfg = true
}

func (a *vp9Assembler) finish() videoFrame {
	f := videoFrame{data: a.buf, key: a.key, hasConfig: a.gotCfg}
	f.configChanged = a.gotCfg && (!a.have || a.newCfg != a.cfg)
	switch {
	case a.broken || a.inFrame:
		f.status = frameBroken
	case a.frames == 0:
		f.status = frameEmpty
	default:
		f.status = frameOK
	}
	return f
}

func (a *vp9Assembler) haveConfig() bool { return a.have }

func (a *vp9Assembler) reorderDepth() int { return 0 } // no reordering in RTP

func (a *vp9Assembler) commit() error {
	if !a.gotCfg {
		return errNoConfig
	}
	c := a.newCfg
	if c.width == 0 || c.height == 0 || c.width > 16384 || c.height > 16384 {
		return fmt.Errorf("remux: VP9 keyframe with picture size %dx%d", c.width, c.height)
	}
	a.cfg = c
	a.have = true
	a.level = vp9.Level(c.width, c.height, 30)
	a.codec = vp9CodecString(c, a.level)
	return nil
}

// vp9CodecString builds the codecs parameter of the VP9 ISO-BMFF binding
// (section "Codecs Parameter String"): vp09.PP.LL.DD, with the optional
// chroma, colour and range fields when they are known and not the defaults
// (4:2:0 colocated, BT.709, studio range).
func vp9CodecString(c vp9Config, level byte) string {
	s := fmt.Sprintf("vp09.%02d.%02d.%02d", c.profile, level, c.bitDepth)
	known := c.colorSpace != vp9.CSUnknown && c.colorSpace != vp9.CSReserved
	def := c.chroma == 1 && c.primaries == 1 && c.transfer == 1 && c.matrix == 1 && !c.fullRange
	if !known || def {
		return s
	}
	fr := 0
	if c.fullRange {
		fr = 1
	}
	return fmt.Sprintf("%s.%02d.%02d.%02d.%02d.%02d", s, c.chroma, c.primaries, c.transfer, c.matrix, fr)
}

func (a *vp9Assembler) addTrack(init *mp4.InitSegment) (tr Track, err error) {
	if !a.have {
		return tr, errNoConfig
	}
	c := a.cfg
	vpcC := &mp4.VppCBox{
		Version: 1, Profile: c.profile, Level: a.level, BitDepth: c.bitDepth, ChromaSubsampling: c.chroma,
		ColourPrimaries: c.primaries, TransferCharacteristics: c.transfer, MatrixCoefficients: c.matrix,
	}
	if c.fullRange {
		vpcC.VideoFullRangeFlag = 1
	}
	trak := init.AddEmptyTrack(90000, "video", "und")
	if err := safeCall(func() error { return trak.SetVPxDescriptor("vp09", vpcC, uint16(c.width), uint16(c.height)) }); err != nil {
		return tr, err
	}
	return Track{ID: trak.Tkhd.TrackID, Kind: "video", Codec: a.codec, Width: int(c.width), Height: int(c.height), Timescale: 90000}, nil
}
