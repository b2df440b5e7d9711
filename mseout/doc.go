// Package mseout owns the fan-out side of the gateway: the stream registry,
// one hub per stream (the current init segment, the GOP cache, the publisher
// of the moment) and the viewers' WebSocket protocol (PROTOCOL.md, "Watching").
//
// A fragment is turned into a WebSocket frame once per stream (frame.go) and
// every viewer's queue holds a reference to the same bytes, so a viewer costs
// one write per message. The fan-out writes to every viewer that keeps up
// itself, with one non-blocking writev per viewer and no lock held (split
// over the cores for large audiences); what a socket does not take at once,
// the join burst (init + GOP cache) and control messages are written by a
// per-viewer writer goroutine that exists only while there is something to
// write, with a write deadline, several queued messages per writev. Each
// viewer has a bounded queue; a viewer that falls behind skips to the next
// keyframe and one that keeps falling behind is closed with an error.
package mseout
