package auth

import "strings"

// Match reports whether name matches pattern, in which '*' matches any run
// of characters (including none) and every other character itself. It runs
// in time linear in the inputs (no backtracking): the pattern's pieces
// between stars are found in order, each at its leftmost place, which is
// always as good as any other.
func Match(pattern, name string) bool {
	first, rest, star := strings.Cut(pattern, "*")
	if !star {
		return pattern == name
	}
	if !strings.HasPrefix(name, first) {
		return false
	}
	name = name[len(first):]
	for {
		piece, after, more := strings.Cut(rest, "*")
		if !more {
			// The last piece ends the name.
			return strings.HasSuffix(name, piece)
		}
		rest = after
		if piece == "" {
			continue
		}
		i := strings.Index(name, piece)
		if i < 0 {
			return false
		}
		name = name[i+len(piece):]
	}
}
