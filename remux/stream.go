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

// PushSenderReport feeds the NTP <-> RTP timestamp mapping of an RTCP sender
// report (RFC 3550 6.4.1) of the track of the given kind: ntpTime is the
// 64-bit NTP timestamp (32.32 fixed point), rtpTime the RTP timestamp of the
// same instant. Until both tracks have a report they are aligned by arrival
// time; from then on audio follows video on the sender's clock: the audio
// timeline moves (filled with empty frames forward, samples dropped backward)
// whenever the offset the reports imply changes by more than 5 ms. The video
// timeline, which holds the keyframes, never moves. Reports for a track that
// has not received a packet yet are ignored.
func (s *Stream) PushSenderReport(kind TrackKind, ntpTime uint64, rtpTime uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *trackClock
	switch {
	case kind == KindVideo && s.video != nil:
		c = &s.video.clk
	case kind == KindAudio && s.audio != nil:
		c = &s.audio.clk
	default:
		return
	}
	s.stats.SenderReports++
	if !c.started {
		return
	}
	c.srHave = true
	c.srNTP = ntpTime
	c.srExt = c.ext + int64(int32(rtpTime-c.lastTS))
	s.syncAudio()
}

// syncAudio sets the audio clock's offset so that audio and video samples
// captured at the same instant (per the sender reports) share a timeline
// position.
func (s *Stream) syncAudio() {
	if s.video == nil || s.audio == nil {
		return
	}
	v, a := &s.video.clk, &s.audio.clk
	if !v.srHave || !a.srHave {
		return
	}
	// Timeline position of the video report's instant, in 48 kHz ticks.
	tlV := v.srExt + v.offset
	tlV48 := floorDiv(tlV*48000, 90000)
	// NTP difference between the two reports (32.32 fixed point, signed),
	// in 48 kHz ticks; bounded so the product cannot overflow.
	d := int64(a.srNTP - v.srNTP)
	if d > 1<<44 || d < -(1<<44) {
		return // reports more than an hour apart: wait for fresh ones
	}
	dTicks := floorDiv(d*48000, 1<<32)
	want := tlV48 + dTicks - a.srExt
	diff := want - a.offset
	if diff < 0 {
		diff = -diff
	}
	if diff <= durToTicks(syncTolerance, 48000) {
		return
	}
	a.offset = want
	s.stats.SyncCorrections++
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Stats returns a snapshot of the Stream's counters.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Stream) start(arrival time.Time) {
	if !s.started {
		s.started = true
		s.t0 = arrival
	}
}

func (s *Stream) requestKeyframe() {
	s.stats.KeyframeRequests++
	if s.rkf != nil {
		s.rkf()
	}
}

// setOrigin makes timeline position tl (in clk's ticks) decode time 0.
func (s *Stream) setOrigin(clk *trackClock, tl int64) {
	s.originSet = true
	s.origin = ticksToDur(tl, clk.rate)
	if s.video != nil {
		s.video.clk.originTicks = durToTicks(s.origin, 90000)
	}
	if s.audio != nil {
		s.audio.clk.originTicks = durToTicks(s.origin, 48000)
	}
	clk.originTicks = tl // exact for the track that sets it
}

func (s *Stream) emitInit() bool {
	var va videoAssembler
	if s.video != nil {
		va = s.video.asm
	}
	var ai *audioTrackInfo
	if s.audio != nil {
		ai = &s.audio.info
	}
	var in *Init
	err := safeCall(func() error {
		var e error
		in, e = buildInit(va, ai)
		return e
	})
	if err != nil {
		return false
	}
	s.initDone = true
	s.stats.InitsEmitted++
	s.stats.BytesEmitted += uint64(len(in.Data))
	s.sink.WriteInit(in)
	return true
}

// emit writes one segment made of the given video sample (if vsize > 0 ...)
// and the pending audio.
func (s *Stream) emitSegment(seg *Segment, video *trafData) {
	n := 0
	if video != nil {
		s.trafs[n] = *video
		n++
	}
	if a := s.audio; a != nil && len(a.samples) > 0 {
		s.trafs[n] = trafData{
			trackID:  a.trackID(),
			baseTime: uint64(a.batchStart),
			samples:  a.samples,
			data:     a.data,
		}
		n++
		s.stats.AudioSamplesEmitted += uint64(a.real)
		if video == nil {
			seg.Time = ticksToDur(a.batchStart, 48000)
			seg.Duration = ticksToDur(a.end-a.batchStart, 48000)
		}
	}
	if n == 0 {
		return
	}
	s.seq++
	seg.Data = s.fw.build(s.seq, s.trafs[:n])
	for i := range s.trafs[:n] {
		s.trafs[i] = trafData{}
	}
	if a := s.audio; a != nil {
		a.clear()
	}
	s.stats.SegmentsEmitted++
	s.stats.BytesEmitted += uint64(len(seg.Data))
	s.sink.WriteSegment(seg)
}

// flushAudio emits the pending audio alone.
func (s *Stream) flushAudio() {
	if !s.initDone {
		return
	}
	seg := &Segment{Keyframe: s.video == nil}
	s.emitSegment(seg, nil)
}

// trackClock maps a track's RTP timestamps onto the stream's timeline.
type trackClock struct {
	rate        int64 // ticks per second
	started     bool
	lastTS      uint32
	ext         int64 // unwrapped lastTS
	offset      int64 // timeline ticks = ext + offset
	originTicks int64 // decode time 0, in ticks

	// Latest RTCP sender report: its NTP time and its RTP time unwrapped
	// like ext.
	srHave bool
	srNTP  uint64
	srExt  int64
}

// timeline returns the timeline position, in ticks, of RTP timestamp ts. The
// first call anchors the track at its arrival time relative to t0.
func (c *trackClock) timeline(ts uint32, arrival, t0 time.Time) int64 {
	if !c.started {
		c.started = true
		c.lastTS = ts
		c.ext = int64(ts)
		c.offset = durToTicks(arrival.Sub(t0), c.rate) - int64(ts)
	} else {
		c.ext += int64(int32(ts - c.lastTS))
		c.lastTS = ts
	}
	return c.ext + c.offset
}

func ticksToDur(t, rate int64) time.Duration {
	return time.Duration(t/rate)*time.Second + time.Duration(t%rate)*time.Second/time.Duration(rate)
}

func durToTicks(d time.Duration, rate int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*rate + rem*rate/int64(time.Second)
}

// videoTrack is the codec-independent part of the video path: frame
// boundaries, loss, keyframe gating and timing.
type videoTrack struct {
	s   *Stream
	rb  reorderBuffer
	asm videoAssembler
	clk trackClock

	inFrame   bool
	curTS     uint32
	curTL     int64 // timeline position of curTS, in ticks
	curBroken bool
	curAfter  bool // the current frame started right after a gap
	gapNext   bool // a gap was seen outside a frame: the next frame follows it
	needKey   bool

	emitted bool  // a frame was emitted
	lastPTS int64 // presentation time of the last emitted frame
	maxPTS  int64 // the latest presentation time emitted (> lastPTS after B-frames)
	lastDTS int64 // decode time of the last emitted frame (<= lastPTS)
	lastDur int64

	// B-frames (presentation order != decode order). delay is the
	// presentation delay that leaves decode times room below presentation
	// times: set once, at the first keyframe, from the reorder depth the
	// bitstream declares. reordered is set once a frame came older than
	// one before it; sample durations are then the frame interval (step).
	delay     int64
	reordered bool
	steps     [8]int64 // recent positive timestamp steps between consecutive frames
	stepsN    int
	recentPTS [8]int64 // presentation times recently emitted (no two frames share one)
	recentN   int

	sample [1]sampleEntry
}

func (v *videoTrack) handlePacket(ts uint32, marker bool, payload []byte, bad bool, arrival time.Time, lost int) {
	if bad {
		lost++ // unusable data: as if the packet were lost
	}
	if lost > 0 {
		if v.inFrame {
			v.curBroken = true // its tail or middle may be what was lost
		}
		if !v.inFrame || ts != v.curTS {
			v.gapNext = true
		}
	}
	if len(payload) == 0 {
		return // padding-only packet (bandwidth probing)
	}
	if v.inFrame && ts != v.curTS {
		v.finishFrame() // boundary by timestamp change (marker lost or not set)
	}
	if !v.inFrame {
		v.beginFrame(ts, arrival)
	}
	v.asm.add(payload)
	if marker {
		v.finishFrame()
	}
}

// beginFrame starts the frame of timestamp ts.
func (v *videoTrack) beginFrame(ts uint32, arrival time.Time) {
	v.inFrame = true
	v.curTS = ts
	v.curBroken = false
	v.curAfter = v.gapNext
	v.gapNext = false
	v.curTL = v.clk.timeline(ts, arrival, v.s.t0)
	v.asm.reset()
}

func (v *videoTrack) drop() {
	s := v.s
	v.needKey = true
	s.stats.VideoFramesDropped++
	s.requestKeyframe()
}

func (v *videoTrack) finishFrame() {
	s := v.s
	v.inFrame = false
	f := v.asm.finish()
	if f.status == frameEmpty && !v.curBroken {
		return
	}
	if v.curBroken || f.status != frameOK {
		v.drop()
		return
	}
	// A non-key frame right after a gap may reference a frame that was lost
	// whole (one packet, or all of its packets): it is not decodable.
	if !f.key && (v.needKey || f.configChanged || v.curAfter) {
		v.drop()
		return
	}
	// A keyframe right after a gap may have lost parameter sets sent ahead
	// of it: take it only when it carries its own.
	if f.key && v.curAfter && !f.hasConfig {
		v.drop()
		return
	}
	if f.key && (f.configChanged || !v.asm.haveConfig() || !s.initDone) {
		if err := v.asm.commit(); err != nil {
			v.drop()
			return
		}
		if !s.originSet {
			// Presentation runs delay behind decode, for video and audio
			// alike (one origin), so that B-frames decode before they show.
			v.delay = int64(v.asm.reorderDepth()) * reorderFrameTicks
			s.setOrigin(&v.clk, v.curTL-v.delay)
		}
		if !s.emitInit() {
			v.drop()
			return
		}
	}

	if !s.originSet { // cannot happen: the first emitted frame is a keyframe
		s.setOrigin(&v.clk, v.curTL)
	}
	pts := v.curTL - v.clk.originTicks
	dur := int64(90000 / 30)
	if v.emitted {
		delta := pts - v.maxPTS
		if delta > 10*90000 || delta <= -90000 {
			// A jump (publisher restart, simulcast layer switch): rebase the
			// track's clock. The last sender report describes the old
			// timestamps: syncing audio with it would move audio by the jump.
			np := v.maxPTS + v.lastDur
			v.clk.offset += np - pts
			v.clk.srHave = false
			pts = np
		}
		if step := pts - v.lastPTS; step > 0 {
			v.steps[v.stepsN%len(v.steps)] = step
			v.stepsN++
		}
		switch {
		case pts > v.maxPTS && !v.reordered:
			dur = pts - v.maxPTS // gaps stay gaps
		case pts > v.maxPTS:
			dur = v.step()
		case pts < v.maxPTS && pts > v.lastDTS && !v.emittedPTS(pts):
			// A B-frame: presented before frames decoded ahead of it.
			v.reordered = true
			s.stats.VideoReordered++
			dur = v.step()
		default:
			// Older than the room below it allows (reordering deeper than
			// the bitstream declared, or a repeated timestamp): presented
			// right after the latest frame, in decode order.
			if pts < v.maxPTS {
				v.reordered = true
			}
			s.stats.VideoOutOfOrder++
			pts = v.maxPTS + 1
			dur = v.lastDur
		}
	} else if pts < 0 {
		pts = 0
	}
	// The decode timeline runs without gaps inside a GOP: MSE (coded frame
	// processing, step 6) treats a decode-time jump of more than twice the
	// previous sample's duration as a discontinuity and drops every frame
	// until the next keyframe; encoders skip frames all the time. So a frame
	// after a gap decodes right after its predecessor and is presented at its
	// real time (composition offset = the gap so far). A keyframe, where a
	// discontinuity costs nothing, brings decode time back to presentation
	// time less the B-frame delay.
	dts := pts - v.delay
	if v.emitted && !f.key {
		dts = min(v.lastDTS+v.lastDur, pts)
	}
	if v.emitted && dts <= v.lastDTS {
		dts = v.lastDTS + 1 // <= pts: every branch above leaves pts > lastDTS
	}
	if dts < 0 {
		dts = 0
	}
	v.recentPTS[v.recentN%len(v.recentPTS)] = pts
	v.recentN++
	v.maxPTS = max(v.maxPTS, pts)
	v.emitted = true
	v.lastPTS, v.lastDTS, v.lastDur = pts, dts, dur
	if f.key {
		v.needKey = false
		s.stats.Keyframes++
	}
	flags := uint32(flagsNonSync)
	if f.key {
		flags = flagsSync
	}
	v.sample[0] = sampleEntry{size: uint32(len(f.data)), dur: uint32(dur), flags: flags, cto: uint32(pts - dts)}
	seg := &Segment{
		Keyframe: f.key,
		HasVideo: true,
		Time:     ticksToDur(pts, 90000),
		Duration: ticksToDur(dur, 90000),
	}
	s.stats.VideoFramesEmitted++
	s.emitSegment(seg, &trafData{trackID: 1, baseTime: uint64(dts), samples: v.sample[:], data: f.data, withCTO: true})
}

// step is the frame interval of a stream with B-frames: the smallest
// recent step between consecutive timestamps (decode order jumps over the
// B-frames, so most steps are larger).
func (v *videoTrack) step() int64 {
	n := min(v.stepsN, len(v.steps))
	if n == 0 {
		return int64(90000 / 30)
	}
	m := v.steps[0]
	for _, st := range v.steps[1:n] {
		m = min(m, st)
	}
	return m
}

// emittedPTS reports whether a recent frame was presented at pts.
func (v *videoTrack) emittedPTS(pts int64) bool {
	for _, p := range v.recentPTS[:min(v.recentN, len(v.recentPTS))] {
		if p == pts {
			return true
		}
	}
	return false
}

// audioTrack holds Opus samples until the next segment.
type audioTrack struct {
	s    *Stream
	rb   reorderBuffer
	clk  trackClock
	info audioTrackInfo

	samples      []sampleEntry
	data         []byte
	real         int   // samples that are not fillers
	batchStart   int64 // decode time of samples[0]
	end          int64 // decode time where the next sample is expected
	haveEnd      bool
	pendingSince time.Time
	lastTOC      byte
}

func (a *audioTrack) trackID() uint32 {
	if a.s.video != nil {
		return 2
	}
	return 1
}

func (a *audioTrack) clear() {
	a.samples = a.samples[:0]
	a.data = a.data[:0]
	a.real = 0
}

func (a *audioTrack) handlePacket(ts uint32, _ bool, payload []byte, bad bool, arrival time.Time, _ int) {
	s := a.s
	tl := a.clk.timeline(ts, arrival, s.t0) // anchor the clock on the first packet
	if bad {
		s.stats.AudioSamplesDropped++
		return
	}
	if len(payload) == 0 {
		return
	}
	dur, err := opusDuration(payload)
	if err != nil {
		s.stats.AudioSamplesDropped++
		return
	}
	if !s.originSet {
		if s.video != nil {
			s.stats.AudioSamplesDropped++ // before the first video keyframe
			return
		}
		s.setOrigin(&a.clk, tl)
	}
	if !s.initDone && !s.emitInit() {
		s.stats.AudioSamplesDropped++
		return
	}
	dt := tl - a.clk.originTicks
	if !a.haveEnd {
		if dt < 0 {
			s.stats.AudioSamplesDropped++ // older than the first video keyframe
			return
		}
	} else {
		gap := dt - a.end
		switch {
		case gap == 0:
		case gap < 0 && gap > -int64(dur)/2:
			// Overlap of less than half a sample: keep samples back to back.
			dt = a.end
		case gap < 0 && gap > -10*48000:
			// The timeline already covers this sample (sender-report sync
			// moved audio back): drop it.
			s.stats.AudioSamplesDropped++
			return
		case gap > 0 && gap <= maxAudioFill*960:
			a.fill(gap, arrival)
			dt = a.end
		case gap > 0 && gap <= 10*48000:
			// Long silence (DTX, mute): keep sync, leave a hole.
			s.flushAudio()
		default:
			// A jump (publisher restart): rebase the track's clock.
			a.clk.offset += a.end - dt
			dt = a.end
		}
	}
	if len(a.samples) >= maxPendingAudio || len(a.data)+len(payload) > maxPendingAudioData {
		s.flushAudio()
	}
	a.add(dt, sampleEntry{size: uint32(len(payload)), dur: dur, flags: flagsSync}, payload, arrival)
	a.real++
	a.lastTOC = payload[0]
	if s.video == nil && a.real >= audioOnlyBatch {
		s.flushAudio()
	}
}

func (a *audioTrack) add(dt int64, e sampleEntry, payload []byte, arrival time.Time) {
	if len(a.samples) == 0 {
		a.batchStart = dt
		a.pendingSince = arrival
	}
	a.samples = append(a.samples, e)
	a.data = append(a.data, payload...)
	a.end = dt + int64(e.dur)
	a.haveEnd = true
}

// fill covers a gap of lost audio with empty Opus frames (a TOC byte alone:
// one frame of length zero, which decoders conceal), so that the track stays
// continuous: a hole in one track of a muxed SourceBuffer stalls playback
// and, when larger than two sample durations, makes MSE wait for a new video
// keyframe.
func (a *audioTrack) fill(gap int64, arrival time.Time) {
	if n := len(a.samples); n > 0 && gap < 960 {
		// Less than a frame: stretch the pending last sample.
		a.samples[n-1].dur += uint32(gap)
		a.end += gap
		return
	}
	toc := a.lastTOC &^ 3 // same configuration, code 0
	fd := int64(opusFrameSamples48k[toc>>3])
	for gap > 0 {
		if len(a.samples) >= maxPendingAudio {
			a.s.flushAudio()
		}
		d := fd
		if gap < 2*fd {
			d = gap // the last one takes the remainder
		}
		a.add(a.end, sampleEntry{size: 1, dur: uint32(d), flags: flagsSync}, []byte{toc}[:1:1], arrival)
		a.s.stats.AudioFillers++
		gap -= d
	}
}
