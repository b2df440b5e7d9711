// Package relaywire owns the relay's wire format: the bytes one gateway node
// sends another over NATS about a live stream (its init segment and
// announcement, its media segments, its end, and the snapshot an edge asks
// for when it joins).
//
// It owns, and only owns, pure encoding and decoding:
//
//   - Message: Init, Segment, End and Snapshot, each stamped with the
//     stream's epoch (a new one per publish, so an edge can tell a new
//     publish from a gap) and a sequence number (+1 per Init, Segment or End
//     of an epoch, so an edge can drop duplicates and see gaps).
//   - Encode: a Message to one or more wire messages, each at most the NATS
//     max_payload, behind a fixed versioned header (see wire.go for the
//     layout).
//   - Joiner: reassembles the parts of one subject's messages, bounded in
//     memory (one message in assembly, a configured maximum size), and drops
//     a message that lost a part (NATS delivers at most once).
//
// It does no I/O and starts no goroutines. Decoding never panics, checks
// every length against the bytes left, allocates no more than a small
// multiple of a bounded declared size, and returns errors that errors.Is
// matches (ErrMagic, ErrVersion, ErrTruncated, ErrTooLarge, ErrMalformed,
// ErrIncomplete). Decoded segment and init data alias the bytes handed to the
// Joiner (zero copy). The Joiner and the decoder are fuzzed (FuzzJoiner,
// FuzzDecodeRoundTrip).
package relaywire
