// Package relay owns the media between gateway nodes: a stream published on
// one node (its origin) is watched on others (edges) through NATS. The bytes
// are relaywire messages; this package moves them and feeds the hubs
// (mseout). Which node is the origin of a stream, and when an edge should
// follow it, is the directory's business (package cluster), not this one's.
//
// # Subjects
//
// A stream name is [A-Za-z0-9._-]{1,64}; '.' separates NATS tokens, so in a
// subject each '.' of a name is written '~' (never in a name): "cam.1" is
// token "cam~1" (Token).
//
//	mseway.media.<token>  the stream's live messages (Init, Segment, End),
//	                      published by its origin, once whatever the edges
//	mseway.snap.<token>   snapshot requests; the origin replies to the
//	                      request's reply subject with one Snapshot message,
//	                      in one or more parts (see Joining)
//	mseway.want.<token>   an edge's interest, sent when it starts following
//	                      and every period (2 s by default) while it follows
//	mseway.key.<token>    an edge's keyframe request (a gap, a viewer with
//	                      nothing to start from), at most one per 500 ms per
//	                      stream and edge, and passed on to the publisher at
//	                      most once per 500 ms per stream
//
// Every node's Origin hears every snap, want and key message; only the
// stream's origin (the node where it has a publisher that is not itself a
// relay) acts on them. Others stay silent: a snapshot request nobody answers
// is retried by the edge.
//
// # Origin
//
// On the first want or snapshot request for one of its live streams, an
// Origin attaches an mseout.Output to the stream's hub, once per stream. The
// Output numbers the stream: an epoch (random at attach, +1 per init: a new
// publisher or a codec change starts one) and a seq (+1 per Init, Segment,
// End of the epoch; the Init is seq 1). It keeps the current init and the
// segments since the newest keyframe (at most OriginOptions.GOPBytes) to
// answer snapshots, and queues each message (bounded; overflow drops and
// counts, edges see a gap) for a goroutine that publishes it split to the
// server's max_payload. When no want came for 3 periods, or the node has
// not been the stream's origin at two checks in a row, the Output is
// detached and publishing stops.
//
// # Joining
//
// An edge (Edge.Follow) publishes the stream in its own registry (Protocol
// "relay"), subscribes to the live subject first, then asks for a snapshot
// on an inbox of its own (replies are joined by a relaywire.Joiner: a plain
// request would only see a reply's first part). The snapshot is the init and
// GOP with the seq of the newest message it includes; the edge writes the
// init and GOP, then the live messages it buffered meanwhile and those that
// follow, dropping those of the snapshot's epoch with seq <= the snapshot's
// and those of older epochs (a queue's leftovers). Every live message then
// has the seq after the last one applied: no gap, no duplicate. A live Init
// of a new epoch is as good a start as a snapshot.
//
// # Gaps
//
// NATS delivers at most once. A seq that jumps (a lost message, a message
// that lost a part, an origin queue overflow) makes the edge drop segments
// until the next keyframe, which it asks the origin for, as a slow viewer
// skips on one node. A new epoch seen without its Init makes it ask for a new
// snapshot. Both count in gateway_relay_gaps_total.
//
// # End of stream
//
// An End closes the edge's Publication: its viewers get eos. The next
// epoch's Init (a new publisher at the origin) publishes a new Publication
// with that init, so viewers that waited see eos then a new init, as on one
// node. A takeover at the origin (no End) reaches them as a new init.
//
// # Limits
//
// The Output learns a stream's init from the hub at attach only with its
// GOP (mseout.Registry.Attach gives an init only with segments after it): a
// stream whose hub has an init but no GOP (gop_cache off, or a GOP that
// outgrew gop_cache_max_bytes) cannot be snapshotted. Its origin then leaves
// snapshot requests unanswered and attaches again every period; the edge
// starts at the stream's next init, or at the next attach that finds a GOP.
package relay
