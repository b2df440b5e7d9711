// Package remux converts the RTP packets of one published stream into
// fragmented MP4 (fMP4) that Media Source Extensions play from a single
// SourceBuffer.
//
// It owns, and only owns, pure conversion:
//
//   - RTP -> access units: per-track reorder window (sequence numbers wrap at
//     65536), duplicate and late packet rejection, loss detection, and a
//     per-codec frame assembler behind one seam (videoAssembler):
//     H.264 (RFC 6184: single NAL unit, STAP-A, FU-A; several slices per
//     frame), H.265 (RFC 7798 without DONL: single NAL unit, AP, FU), VP9
//     (RFC 9628 descriptor, flexible and non-flexible; spatial layer 0 only)
//     and AV1 (AV1 RTP spec: aggregation header Z/Y/W/N, fragmented OBU
//     elements; output in the low-overhead format with obu_size, without
//     temporal delimiters, tile lists or padding). A frame with missing data
//     is never emitted: after a loss every video frame is dropped until the
//     next keyframe (a non-key frame right after a gap too: the lost packets
//     may have been a whole frame it references) and Config.RequestKeyframe
//     is called.
//   - Opus: one RTP payload is one sample; its duration comes from the TOC
//     byte (RFC 6716 section 3.1). Invalid Opus packets are dropped.
//   - Timestamps: 32-bit RTP timestamps are unwrapped to 64 bits. Tracks are
//     first aligned by arrival time: the first packet of each track maps its
//     RTP timestamp to its arrival time relative to the stream's first
//     arrival, and each track then follows its own RTP clock. Once both
//     tracks have an RTCP sender report (PushSenderReport), audio follows
//     video on the sender's NTP clock: the audio timeline moves (empty Opus
//     frames fill forward, samples are dropped backward) so that what was
//     captured at the same instant plays at the same time; video, which
//     carries the keyframes, never moves. The shared timeline starts (time 0)
//     at the first emitted video keyframe (or the first audio sample of an
//     audio-only stream).
//   - fMP4: one init segment (ftyp+moov, built with mp4ff) holding every track
//     (track 1 = video, track 2 = audio; audio-only: track 1 = audio), codec
//     strings built from the bitstream (the H.264/H.265 SPS, the VP9 keyframe
//     header, the AV1 sequence header), and one media segment per video
//     frame, emitted the moment the frame's last packet arrives. Audio that
//     arrived since the previous video frame rides in the same segment (one
//     moof with a video traf then an audio traf, one mdat).
//
// Decoder configuration: H.264 SPS/PPS and H.265 VPS/SPS/PPS are taken out of
// the sample data and carried in avcC ("avc1") / hvcC ("hvc1"); VP9's vpcC
// ("vp09": profile, level, bit depth, chroma, colour) comes from each
// keyframe's uncompressed header; AV1's av1C ("av01") holds the sequence
// header OBU, which also stays in band. When the configuration changes (a
// browser stepping up its resolution sends a new SPS; a new VP9 frame size;
// a new AV1 sequence header), a new Init is emitted at the next keyframe,
// before that keyframe's segment, and decode times stay on the same
// timeline. AUD, filler data and end-of-sequence / end-of-stream NAL units
// are dropped; SEI is kept.
//
// Presentation time is the RTP timestamp (but for the frame that closes a
// short hole, below). A frame goes out the moment it is complete, before the
// next one tells how long it shows, so in a stream without B-frames a frame
// shows for its expected display time: the interval before it when that is
// a normal frame step, the typical step (the lower median of the last 8
// steps; 1/30 s at the start) when the interval before it is more than 1.5
// times that (the encoder skipped frames: openh264 rate control, Chromium
// under CPU load). A skip thus leaves a hole in the presentation timeline
// after the frame before it; WebKit keeps such holes in its buffered ranges
// and stalls in front of them (Chromium and Firefox bridge them). A hole of
// up to 0.3 s is closed: the frame after it is presented from the end of the
// frame before, its duration extended by the hole, so it still ends at its
// own timestamp + its display time (the shift does not accumulate; that one
// frame shows at most 0.3 s early). A longer hole (a paused publisher,
// frames dropped until the next keyframe) stays a hole; overlaps stay too.
// Decode times run without gaps inside a GOP (MSE drops frames after a
// decode-time jump on a non-sync sample), so after a hole that stays, a
// composition offset carries it until the next keyframe, where decode time
// meets presentation time again; decode time never passes presentation
// time.
//
// WebRTC encoders send no B-frames; other publishers may. When the first
// keyframe's SPS declares reordering (H.264 VUI max_num_reorder_frames,
// H.265 sps_max_num_reorder_pics), presentation of both tracks runs 50 ms
// per declared frame behind decode, which leaves decode times room below the
// B-frames' presentation times: every frame is presented at its own
// timestamp with a composition offset >= 0 (Stats.VideoReordered). Such a
// stream's frames show for the interval before them until the first B-frame
// (no hole is closed there: moving a frame could put it where a B-frame
// goes), then for the frame interval. Reordering deeper than declared, or
// repeated timestamps, cannot be presented that way: such frames show in
// decode order right after the latest frame (Stats.VideoOutOfOrder; the
// gateway logs a warning). No duration is ever zero.
//
// The package does no I/O and starts no goroutines. A Stream is safe for
// concurrent use: PushVideo and PushAudio may run on different goroutines;
// one mutex serialises them and the Sink is called with that mutex held, so a
// Sink must not call back into the Stream and should return quickly.
package remux
