// Package mseout owns the fan-out side of the gateway: the stream registry,
// one hub per stream (the current init segment, the GOP cache, the publisher
// of the moment) and the viewers' WebSocket protocol (PROTOCOL.md, "Watching").
//
// A fragment is turned into a WebSocket frame once per stream
// (websocket.PreparedMessage) and every viewer's queue holds a reference to the
// same bytes, so a viewer costs one write per message. Each viewer has a
// bounded queue; a viewer that falls behind skips to the next keyframe and one
// that keeps falling behind is closed with an error. No lock is held across a
// network write.
package mseout
