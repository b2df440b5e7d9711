package cluster

import (
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
)

// Stream names and node ids are [A-Za-z0-9._-]{1,64}. KV keys are NATS
// subject tokens joined by dots, so ".cam", "cam." and "a..b" are valid names
// but not valid keys: a key is the name with every '.' written as '=', which
// no name contains, so the mapping is one to one.
func encodeKey(name string) string { return strings.ReplaceAll(name, ".", "=") }
func decodeKey(key string) string  { return strings.ReplaceAll(key, "=", ".") }

// nodeID returns the configured id, or the host name reduced to
// [A-Za-z0-9._-]{1,64}, or a random one.
func nodeID(configured string) string {
	if configured != "" {
		return configured
	}
	h, _ := os.Hostname()
	if id := sanitizeID(h); id != "" {
		return id
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "node-" + hex.EncodeToString(b)
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	id := b.String()
	if strings.Trim(id, "-") == "" {
		return ""
	}
	return id
}

// newEpoch returns a random non-zero epoch of 53 bits, so that it survives a
// trip through a JavaScript number.
func newEpoch() uint64 {
	for {
		if e := mrand.Uint64() >> 11; e != 0 {
			return e
		}
	}
}

// keyLocks serializes the directory writes of one stream (claim, announce,
// renewal, withdrawal) without serializing different streams.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
