package remux

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// MIME types of the codecs a Stream accepts (the values of pion/webrtc's
// MimeTypeH264 and MimeTypeOpus, without importing pion/webrtc here; VP9,
// AV1 and H.265 are next to their assemblers).
const (
	MimeTypeH264 = "video/H264"
	MimeTypeOpus = "audio/opus"
)

// maxRTPPayload bounds what is copied from one packet. A larger payload is
// taken as lost data.
const maxRTPPayload = 1 << 16

// B-frames: a declared reorder depth is capped at maxReorderDepth frames,
// and each frame of it delays presentation by reorderFrameTicks (90 kHz;
// 50 ms, enough for 20 fps and up).
const (
	maxReorderDepth   = 4
	reorderFrameTicks = 4500
)

// ErrUnsupportedCodec is returned (wrapped) by NewStream for a codec the
// package cannot remux.
var ErrUnsupportedCodec = errors.New("remux: unsupported codec")

// CodecParams describes one negotiated RTP track.
type CodecParams struct {
	MimeType  string // "video/H264", "video/VP9", "video/AV1", "video/H265" or "audio/opus" (case-insensitive)
	ClockRate uint32 // 90000 for video, 48000 for opus; 0 means that default
	Channels  uint16 // opus: 2; 0 means 2
}

// Config configures a Stream.
type Config struct {
	Video *CodecParams // nil: stream has no video
	Audio *CodecParams // nil: stream has no audio
	Sink  Sink         // receives Init and Segments synchronously
	// RequestKeyframe is called when the stream needs a keyframe (start,
	// loss, unrecoverable gap). It is called with the Stream's lock held, on
	// the pushing goroutine, possibly once per dropped frame: the caller
	// throttles it and must not call back into the Stream. May be nil.
	RequestKeyframe func()
}

// Stats are a Stream's counters since it was created.
type Stats struct {
	VideoPackets       uint64 // video RTP packets pushed
	AudioPackets       uint64 // audio RTP packets pushed
	VideoBytes         uint64 // RTP payload bytes of the video packets pushed
	AudioBytes         uint64 // RTP payload bytes of the audio packets pushed
	VideoLost          uint64 // video sequence numbers given up as lost
	AudioLost          uint64 // audio sequence numbers given up as lost
	Duplicates         uint64 // duplicate or too-late packets ignored (both tracks)
	Resyncs            uint64 // sequence number jumps taken as a new sequence space
	VideoFramesEmitted uint64
	VideoFramesDropped uint64 // incomplete, or not decodable (waiting for a keyframe)
	// VideoReordered counts B-frames presented at their timestamp, before
	// frames decoded ahead of them.
	VideoReordered uint64
	// VideoOutOfOrder counts frames that could not be presented at their
	// timestamp (reordering deeper than the bitstream declared, repeated
	// timestamps): they are presented in decode order.
	VideoOutOfOrder     uint64
	Keyframes           uint64 // keyframes emitted
	AudioSamplesEmitted uint64 // Opus packets emitted (fillers not counted)
	AudioSamplesDropped uint64 // invalid, or before the first video keyframe
	AudioFillers        uint64 // empty Opus frames inserted to cover lost audio
	KeyframeRequests    uint64 // calls to RequestKeyframe
	SenderReports       uint64 // RTCP sender reports pushed (both tracks)
	SyncCorrections     uint64 // audio timeline moves made to follow sender reports
	InitsEmitted        uint64
	SegmentsEmitted     uint64
	BytesEmitted        uint64 // init and segment bytes
}

const (
	videoReorderSlots = 256 // a 720p keyframe can be well over 100 packets
	videoReorderWait  = 150 * time.Millisecond
	audioReorderSlots = 32
	audioReorderWait  = 60 * time.Millisecond

	audioAloneAfter     = 60 * time.Millisecond // flush audio without video after this
	syncTolerance       = 5 * time.Millisecond  // audio/video offset change below which SR sync leaves audio alone
	audioOnlyBatch      = 2                     // audio-only: Opus packets per segment
	maxPendingAudio     = 128                   // samples held for the next segment
	maxPendingAudioData = 256 << 10
	maxAudioFill        = 100 // filler frames for one gap (2 s of 20 ms frames)
)

// Stream remuxes the RTP packets of one published stream into fMP4. Create
// it with NewStream. Its methods are safe for concurrent use; the Sink and
// RequestKeyframe are called with the Stream's mutex held.
type Stream struct {
	mu   sync.Mutex
	sink Sink
	rkf  func()

	started bool
	t0      time.Time // first arrival of any packet

	video *videoTrack
	audio *audioTrack

	initDone  bool // an Init was emitted
	originSet bool
	origin    time.Duration // timeline position of decode time 0
	seq       uint32        // moof sequence number

	trafs [2]trafData
	fw    fragmentWriter
	stats Stats
}

// NewStream validates cfg and returns a Stream. It fails with an error
// wrapping ErrUnsupportedCodec for anything but H.264, VP9, AV1 or H.265
// video (90 kHz) and Opus audio.
func NewStream(cfg Config) (*Stream, error) {
	if cfg.Sink == nil {
		return nil, errors.New("remux: Config.Sink is nil")
	}
	if cfg.Video == nil && cfg.Audio == nil {
		return nil, errors.New("remux: stream has neither video nor audio")
	}
	s := &Stream{sink: cfg.Sink, rkf: cfg.RequestKeyframe}
	if v := cfg.Video; v != nil {
		var asm videoAssembler
		switch {
		case strings.EqualFold(v.MimeType, MimeTypeH264):
			asm = newH264Assembler()
		case strings.EqualFold(v.MimeType, MimeTypeVP9):
			asm = newVP9Assembler()
		case strings.EqualFold(v.MimeType, MimeTypeAV1):
			asm = newAV1Assembler()
		case strings.EqualFold(v.MimeType, MimeTypeH265):
			asm = newH265Assembler()
		default:
			return nil, fmt.Errorf("%w: video %q", ErrUnsupportedCodec, v.MimeType)
		}
		if v.ClockRate != 0 && v.ClockRate != 90000 {
			return nil, fmt.Errorf("%w: %s with clock rate %d", ErrUnsupportedCodec, v.MimeType, v.ClockRate)
		}
		s.video = &videoTrack{
			s:       s,
			rb:      newReorderBuffer(videoReorderSlots, videoReorderWait),
			asm:     asm,
			clk:     trackClock{rate: 90000},
			needKey: true,
			gapNext: true,
		}
	}
	if a := cfg.Audio; a != nil {
		if !strings.EqualFold(a.MimeType, MimeTypeOpus) {
			return nil, fmt.Errorf("%w: audio %q", ErrUnsupportedCodec, a.MimeType)
		}
		if a.ClockRate != 0 && a.ClockRate != 48000 {
			return nil, fmt.Errorf("%w: opus with clock rate %d", ErrUnsupportedCodec, a.ClockRate)
		}
		ch := a.Channels
		if ch == 0 {
			ch = 2
		}
		if ch > 2 {
			return nil, fmt.Errorf("%w: opus with %d channels", ErrUnsupportedCodec, ch)
		}
		s.audio = &audioTrack{
			s:    s,
			rb:   newReorderBuffer(audioReorderSlots, audioReorderWait),
			clk:  trackClock{rate: 48000},
			info: audioTrackInfo{channels: ch},
			data: make([]byte, 0, 4<<10),
		}
	}
	return s, nil
}

// PushVideo feeds one video RTP packet. arrival is when it was received.
// It is a no-op for a stream without video or a nil packet.
func (s *Stream) PushVideo(pkt *rtp.Packet, arrival time.Time) {
	if pkt == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.video == nil {
		return
	}
	s.start(arrival)
	s.stats.VideoPackets++
	s.stats.VideoBytes += uint64(len(pkt.Payload))
	s.stats.VideoLost += s.pushReordered(&s.video.rb, s.video, pkt, arrival)
}

// pushReordered hands pkt to a track's reorder window (an oversized payload
// is passed on as lost data) and returns how many packets it gave up as lost.
// s.mu must be held.
func (s *Stream) pushReordered(rb *reorderBuffer, h packetHandler, pkt *rtp.Packet, arrival time.Time) uint64 {
	dup, lost, rs := rb.duplicates, rb.lost, rb.resyncs
	payload, bad := pkt.Payload, false
	if len(payload) > maxRTPPayload {
		payload, bad = nil, true
	}
	rb.push(h, pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, payload, bad, arrival)
	s.stats.Duplicates += rb.duplicates - dup
	s.stats.Resyncs += rb.resyncs - rs
	return rb.lost - lost
}

// PushAudio feeds one audio RTP packet. arrival is when it was received.
// It is a no-op for a stream without audio or a nil packet.
func (s *Stream) PushAudio(pkt *rtp.Packet, arrival time.Time) {
	if pkt == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.audio == nil {
		return
	}
	s.start(arrival)
	s.stats.AudioPackets++
	s.stats.AudioBytes += uint64(len(pkt.Payload))
	a := s.audio
	s.stats.AudioLost += s.pushReordered(&a.rb, a, pkt, arrival)
	s.audioAlone(arrival)
}

// audioAlone flushes audio that waited too long for video (video paused):
// audio is never held back. s.mu must be held.
func (s *Stream) audioAlone(arrival time.Time) {
	if a := s.audio; s.video != nil && len(a.samples) > 0 && arrival.Sub(a.pendingSince) > audioAloneAfter {
		s.flushAudio()
	}
}

// PushVideoFrame feeds one whole encoded video frame: an H.264 or H.265
// access unit in Annex-B form, a VP9 frame, or an AV1 temporal unit (OBUs
// with their size fields), with its 90 kHz timestamp. It is the entry point
// for sources that have frames, not packets (local capture): the same
// assembler the RTP path depacketizes into checks and stores it, without a
// reorder window (frames come in order). A no-op for a stream without video
// or an empty frame.
func (s *Stream) PushVideoFrame(frame []byte, ts uint32, arrival time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.video
	if v == nil || len(frame) == 0 {
		return
	}
	s.start(arrival)
	if v.inFrame {
		v.finishFrame() // a frame left open by packets pushed before
	}
	v.beginFrame(ts, arrival)
	if len(frame) > maxFrameBytes {
		v.curBroken = true
	} else {
		v.asm.addFrame(frame)
	}
	v.finishFrame()
}

// PushAudioFrame feeds one Opus packet with its 48 kHz timestamp: the audio
// counterpart of PushVideoFrame. A no-op for a stream without audio.
func (s *Stream) PushAudioFrame(packet []byte, ts uint32, arrival time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.audio == nil || len(packet) == 0 {
		return
	}
	s.start(arrival)
	s.audio.handlePacket(ts, true, packet, len(packet) > maxRTPPayload, arrival, 0)
	s.audioAlone(arrival)
}

// TrackKind names one of a Stream's tracks.
type TrackKind int

// Track kinds.
const (
	KindVideo TrackKind = iota + 1
	KindAudio
)
