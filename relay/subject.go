package relay

import (
	"strings"

	"github.com/mseway/mseway/configs"
)

// Subject prefixes. A stream's subject is the prefix followed by its token
// (see Token).
const (
	MediaPrefix = "mseway.media." // live messages of a stream, from its origin
	SnapPrefix  = "mseway.snap."  // snapshot requests (request/reply)
	WantPrefix  = "mseway.want."  // edges' interest, refreshed every period
	KeyPrefix   = "mseway.key."   // keyframe requests from edges
)

// escape stands for '.' in a subject token: '.' separates NATS tokens, and
// '~' is valid in a NATS subject but never in a stream name, so the mapping
// is one to one.
const escape = "~"

// Token returns the NATS subject token of a stream name: the name with every
// '.' replaced by '~' ("cam.1" -> "cam~1").
func Token(stream string) string { return strings.ReplaceAll(stream, ".", escape) }

// streamOf returns the stream named by a subject of the given prefix, or ""
// when the subject names no valid stream.
func streamOf(subject, prefix string) string {
	tok, ok := strings.CutPrefix(subject, prefix)
	if !ok || strings.Contains(tok, ".") {
		return ""
	}
	name := strings.ReplaceAll(tok, escape, ".")
	if !configs.ValidStreamName(name) {
		return ""
	}
	return name
}
