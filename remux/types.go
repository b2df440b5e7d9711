package remux

import "time"

// Track describes one track of an init segment, as announced to viewers.
type Track struct {
	ID         uint32 `json:"id"`
	Kind       string `json:"kind"`  // "video" or "audio"
	Codec      string `json:"codec"` // RFC 6381 codec string built from the bitstream, e.g. "avc1.42c01f", "opus"
	Width      int    `json:"width,omitempty"`
	Height     int    `json:"height,omitempty"`
	SampleRate int    `json:"sampleRate,omitempty"`
	Channels   int    `json:"channels,omitempty"`
	Timescale  uint32 `json:"-"`
}

// Init is an fMP4 initialization segment (ftyp+moov) holding every track of a
// stream, with the MIME type a player passes to MediaSource.addSourceBuffer.
// It is immutable once emitted.
type Init struct {
	MIME   string  // e.g. `video/mp4; codecs="avc1.42c01f,opus"`
	Tracks []Track // in track ID order
	Data   []byte  // ftyp+moov
}

// Segment is one media segment: one or more complete moof+mdat pairs. Data is
// immutable once emitted, so every viewer can share it.
type Segment struct {
	Data []byte
	// Keyframe is true when the segment starts with a video sync sample, or
	// always for an audio-only stream: a viewer may start at this segment.
	Keyframe bool
	// HasVideo is true when the segment carries a video sample.
	HasVideo bool
	// Time is the presentation time of the segment's first sample on the
	// stream's shared timeline (zero = the stream's first sample).
	Time time.Duration
	// Duration is the span the segment covers on that timeline.
	Duration time.Duration
}

// Sink receives what a Stream produces, synchronously, on the goroutine that
// pushed the packet. An Init is always followed by a Segment with Keyframe set.
type Sink interface {
	WriteInit(*Init)
	WriteSegment(*Segment)
}
