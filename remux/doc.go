// Package remux converts the RTP packets of one published stream into
// fragmented MP4 (fMP4) that Media Source Extensions play from a single
// SourceBuffer.
//
// It owns, and only owns, pure conversion:
//
//   - RTP -> access units: per-track reorder window (sequence numbers wrap at
//     65536), duplicate and late packet rejection, loss detection, and a
//     per-codec frame assembler (H.264 today: single NAL unit, STAP-A and FU-A
//     packets, several slices per frame). A frame with missing data is never
//     emitted: after a loss every video frame is dropped until the next
//     keyframe and Config.RequestKeyframe is called.
//   - Opus: one RTP payload is one sample; its duration comes from the TOC
//     byte (RFC 6716 section 3.1). Invalid Opus packets are dropped.
//   - Timestamps: 32-bit RTP timestamps are unwrapped to 64 bits. Until RTCP
//     sender-report sync exists, tracks are aligned by arrival time: the first
//     packet of each track maps its RTP timestamp to its arrival time relative
//     to the stream's first arrival, and each track then follows its own RTP
//     clock. The shared timeline starts (time 0) at the first emitted video
//     keyframe (or the first audio sample of an audio-only stream).
//   - fMP4: one init segment (ftyp+moov, built with mp4ff) holding every track
//     (track 1 = video, track 2 = audio; audio-only: track 1 = audio), codec
//     strings built from the bitstream (the H.264 SPS), and one media segment
//     per video frame, emitted the moment the frame's last packet arrives.
//     Audio that arrived since the previous video frame rides in the same
//     segment (one moof with a video traf then an audio traf, one mdat).
//
// H.264 parameter sets (SPS/PPS, NAL types 7 and 8) are taken out of the
// sample data and carried in the init segment's avcC ("avc1"); when they
// change (a browser stepping up its resolution sends a new SPS), a new Init is
// emitted at the next keyframe, before that keyframe's segment, and decode
// times stay on the same timeline. AUD, filler data and end-of-sequence /
// end-of-stream NAL units are dropped; SEI is kept.
//
// Presentation time equals decode time (no composition offsets): WebRTC
// publishers send no B-frames. A video sample's duration is not known until
// the next frame arrives, so a frame is emitted at once with the previous
// inter-frame delta as its duration (1/30 s at the start), never zero.
//
// The package does no I/O and starts no goroutines. A Stream is safe for
// concurrent use: PushVideo and PushAudio may run on different goroutines;
// one mutex serialises them and the Sink is called with that mutex held, so a
// Sink must not call back into the Stream and should return quickly.
package remux
