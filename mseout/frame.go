package mseout

import (
	"encoding/binary"
	"encoding/json"
)

// WebSocket frames (RFC 6455 section 5.2) are built here once per message and
// shared by every viewer: a server frame is unmasked and, without
// compression, the same bytes for every connection. A viewer's writer sends
// its queued frames with one writev, bypassing gorilla's one-write-per-message
// path (and its write deadline per message); gorilla still does the handshake
// and reads.

const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
	finBit   = 0x80
)

// appendFrame appends one final, unmasked frame holding payload to dst.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, finBit|op, byte(n))
	case n <= 0xffff:
		dst = append(dst, finBit|op, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, finBit|op, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// frameSize is the size of the frame appendFrame makes for n payload bytes.
func frameSize(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= 0xffff:
		return 4 + n
	}
	return 10 + n
}

// newFrame returns a frame in an exactly sized slice.
func newFrame(op byte, payload []byte) []byte {
	return appendFrame(make([]byte, 0, frameSize(len(payload))), op, payload)
}

// Control messages shared by every viewer.
var (
	frameWaiting = newFrame(opText, []byte(`{"type":"waiting"}`))
	frameEOS     = newFrame(opText, []byte(`{"type":"eos"}`))
	framePing    = newFrame(opPing, nil)
	// frameClose is a close frame with status 1008 (policy violation).
	frameClose = newFrame(opClose, []byte{0x03, 0xf0})
)

// goawayFrames returns {"type":"goaway","reason":...,"url":...} (PROTOCOL.md,
// "Drain"; url omitted when empty) and a close frame with status 1001
// (going away), back to back.
func goawayFrames(reason, url string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
		URL    string `json:"url,omitempty"`
	}{"goaway", reason, url})
	out := newFrame(opText, b)
	return appendFrame(out, opClose, []byte{0x03, 0xe9})
}

// errorFrame returns the text frame {"type":"error","message":msg}.
func errorFrame(msg string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{"error", msg})
	return newFrame(opText, b)
}
