// Package mseout owns the fan-out side of the gateway: the stream registry,
// one hub per stream (the current init segment, the GOP cache, the publisher
// of the moment) and the viewers' WebSocket protocol (PROTOCOL.md, "Watching").
//
// A fragment is turned into a WebSocket frame once per stream (frame.go) and
// every viewer's queue holds a reference to the same bytes, so a viewer costs
// one write per message. The fan-out writes to every viewer that keeps up
// itself, without blocking and with no lock held (split over the cores for
// large audiences); what a connection does not take at once, the join burst
// (init + GOP cache) and control messages are written by a per-viewer writer
// goroutine that exists only while there is something to write, with a write
// deadline, several queued messages per write. Each viewer has a bounded
// queue; a viewer that falls behind skips to the next keyframe and one that
// keeps falling behind is closed with an error.
//
// How bytes reach a viewer depends on its connection (transport.go): a raw
// TCP socket gets one non-blocking writev per batch; TLS over a socket
// accepted by DirectWriteListener gets its batch sealed into full records and
// sent without blocking; any other connection (TLS from another listener, a
// platform without writev, a proxy's pipe) is written by the writer goroutine
// only. Every event (media, init, eos, takeover, skip, close, shutdown) takes
// the same path on each. A panic while writing to one viewer closes that
// viewer (package contain logs and counts it); the stream goes on.
package mseout
