package remux

import "time"

// packetHandler consumes packets in sequence order. payload is only valid
// during the call; bad marks a packet whose payload was refused (too large). lost is the number of sequence numbers given up as lost
// just before this packet (0 when the packet follows its predecessor).
type packetHandler interface {
	handlePacket(ts uint32, marker bool, payload []byte, bad bool, arrival time.Time, lost int)
}

type rtpSlot struct {
	used    bool
	marker  bool
	bad     bool
	seq     uint16
	ts      uint32
	arrival time.Time
	buf     []byte
}

// resyncDistance is the sequence distance beyond which a packet is not taken
// as late or early but as a new sequence-number space (publisher restart).
const resyncDistance = 3000

// reorderBuffer puts the packets of one track back in sequence order. A
// packet that follows the last delivered one is handed over at once, without
// a copy; packets ahead of a gap are copied into a fixed ring of slots. The
// gap is given up as lost when the ring would overflow or when the oldest
// waiting packet has waited maxWait. It never grows beyond len(slots)
// packets of at most maxPayload bytes each.
type reorderBuffer struct {
	slots     []rtpSlot
	mask      uint16
	maxWait   time.Duration
	started   bool
	next      uint16 // next sequence number to deliver
	n         int    // packets waiting in slots
	waitSince time.Time

	duplicates uint64 // duplicate or too-late packets dropped
	lost       uint64 // sequence numbers given up
	resyncs    uint64
}

func newReorderBuffer(size int, maxWait time.Duration) reorderBuffer {
	// size must be a power of two, at most 32768.
	return reorderBuffer{slots: make([]rtpSlot, size), mask: uint16(size - 1), maxWait: maxWait}
}

// inOrder delivers the packet the window waits for, then what waited behind it.
func (r *reorderBuffer) inOrder(h packetHandler, ts uint32, marker bool, payload []byte, bad bool, arrival time.Time) {
	r.next++
	h.handlePacket(ts, marker, payload, bad, arrival, 0)
	if r.n > 0 {
		r.drain(h, 0)
		r.expire(h, arrival)
	}
}

func (r *reorderBuffer) push(h packetHandler, seq uint16, ts uint32, marker bool, payload []byte, bad bool, arrival time.Time) {
	if !r.started {
		r.started = true
		r.next = seq
	}
	d := int(int16(seq - r.next))
	size := len(r.slots)
	switch {
	case d == 0:
		r.inOrder(h, ts, marker, payload, bad, arrival)
		return
	case d < 0 && d > -resyncDistance:
		r.duplicates++ // already delivered or given up
		return
	case d < 0 || d >= resyncDistance:
		// A new sequence space: hand over what waits, then restart.
		r.resyncs++
		for r.n > 0 {
			r.skip(h)
		}
		r.next = seq + 1
		r.lost++
		h.handlePacket(ts, marker, payload, bad, arrival, 1)
		return
	}
	// Ahead of a gap.
	for d >= size && r.n > 0 {
		// The ring cannot hold it: give up the oldest gap.
		r.skip(h)
		d = int(int16(seq - r.next))
	}
	if d >= size {
		// Nothing waits: everything before this packet is given up.
		r.next = seq + 1
		r.lost += uint64(d)
		h.handlePacket(ts, marker, payload, bad, arrival, d)
		return
	}
	if d == 0 {
		r.inOrder(h, ts, marker, payload, bad, arrival)
		return
	}
	if d < 0 {
		r.duplicates++
		return
	}
	s := &r.slots[seq&r.mask]
	if s.used {
		r.duplicates++
		return
	}
	s.used = true
	s.seq = seq
	s.ts = ts
	s.marker = marker
	s.bad = bad
	s.arrival = arrival
	s.buf = append(s.buf[:0], payload...)
	if r.n == 0 || arrival.Before(r.waitSince) {
		r.waitSince = arrival
	}
	r.n++
	r.expire(h, arrival)
}

// expire gives up gaps whose first waiting packet arrived more than maxWait
// before now.
func (r *reorderBuffer) expire(h packetHandler, now time.Time) {
	for r.n > 0 && now.Sub(r.waitSince) > r.maxWait {
		r.skip(h)
	}
}

// skip gives up the gap before the first waiting packet and delivers the
// run of consecutive packets that follows it. r.n must be > 0.
func (r *reorderBuffer) skip(h packetHandler) {
	lost := 0
	for i := 0; i < len(r.slots); i++ {
		s := &r.slots[r.next&r.mask]
		if s.used && s.seq == r.next {
			break
		}
		r.next++
		lost++
	}
	r.lost += uint64(lost)
	r.drain(h, lost)
}

// drain delivers consecutive waiting packets starting at r.next; the first
// one carries lost.
func (r *reorderBuffer) drain(h packetHandler, lost int) {
	for r.n > 0 {
		s := &r.slots[r.next&r.mask]
		if !s.used || s.seq != r.next {
			break
		}
		s.used = false
		r.n--
		r.next++
		h.handlePacket(s.ts, s.marker, s.buf, s.bad, s.arrival, lost)
		lost = 0
	}
	if r.n > 0 {
		// The oldest waiting packet sets the deadline of the next gap.
		first := true
		for i := range r.slots {
			s := &r.slots[i]
			if s.used && (first || s.arrival.Before(r.waitSince)) {
				r.waitSince = s.arrival
				first = false
			}
		}
	}
}
