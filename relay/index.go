package relay

import (
	"sync"

	"github.com/mseway/mseway/mseout"
)

// relayed records the publications an Edge feeds in a registry, so that an
// Origin on the same registry never serves (and never republishes) a stream
// this node only relays: two nodes would then both publish it. Lookups take
// no lock of the package or of the registry, so an Output may make them from
// inside a hub callback.
var relayed sync.Map // relayKey -> *mseout.Publication

type relayKey struct {
	reg    *mseout.Registry
	stream string
}

func markRelayed(reg *mseout.Registry, stream string, p *mseout.Publication) {
	relayed.Store(relayKey{reg, stream}, p)
}

func unmarkRelayed(reg *mseout.Registry, stream string, p *mseout.Publication) {
	relayed.CompareAndDelete(relayKey{reg, stream}, p)
}

// isRelayed reports whether stream's publisher in reg is an Edge's
// publication that is still current (not closed nor taken over).
func isRelayed(reg *mseout.Registry, stream string) bool {
	v, ok := relayed.Load(relayKey{reg, stream})
	if !ok {
		return false
	}
	select {
	case <-v.(*mseout.Publication).Done():
		return false
	default:
		return true
	}
}

// isOrigin reports whether this node is the origin of stream: it has a
// publisher in reg that is not a relay.
func isOrigin(reg *mseout.Registry, stream string) bool {
	live, _ := reg.State(stream)
	return live && !isRelayed(reg, stream)
}
