package relaywire

import "fmt"

// DefaultMaxTotal is the largest message payload a Joiner accepts when its
// MaxTotal is 0.
const DefaultMaxTotal = 64 << 20

// Joiner reassembles the wire messages of one subscription (one NATS subject,
// or one snapshot reply inbox) into Messages. The zero value is ready to use.
// A Joiner is not safe for concurrent use (NATS calls a subscription's
// handler on one goroutine).
//
// Parts of a message arrive in order on one subject, and messages are not
// interleaved, so a Joiner keeps at most one message in assembly: its memory
// is bounded by MaxTotal. The first part of any other message (another epoch
// or seq; a single-part message too) drops the message in assembly, which is
// counted in Stats().Dropped and is seen by the caller as a gap in Seq: the
// newest message wins, so a new epoch's message replaces an older epoch's
// leftovers. A later part of another message cannot start anything: it is
// refused with ErrIncomplete and leaves the message in assembly alone.
//
// What Add returns:
//
//   - (msg, true, nil): a message is complete. Its Init.Data, Segment.Data
//     and Segments[i].Data alias b (a single-part message) or a buffer the
//     Joiner allocated and no longer touches: the caller must not modify or
//     reuse b after Add. Empty byte fields and empty Tracks or Segments decode
//     as nil.
//   - (nil, false, nil): the part was taken (more parts to come) or ignored
//     as a duplicate: a part of the message in assembly that was already
//     added, or a part of the message last completed (counted in
//     Stats().Duplicates). Duplicates are never delivered twice.
//   - (nil, false, err) with errors.Is(err, ErrIncomplete): the part belongs
//     to a message that lost a part (a later part arrived after a missing
//     one, or a part came without its first part); that message is dropped
//     and the caller treats it as a gap. Every further part of it returns
//     ErrIncomplete too, but the message is counted once in Dropped.
//   - (nil, false, err) otherwise: the part was refused (ErrMagic, ErrVersion,
//     ErrTruncated, ErrTooLarge, ErrMalformed), counted in Stats().Refused.
//     A refused part that names a message (a readable header) still drops
//     the message in assembly, and its own message is dropped.
//
// A message dropped because a part of another message arrived is only
// counted: Add reports on the part it is given, which is fine. The caller
// sees every loss as a jump in Seq, as it must anyway: NATS may lose whole
// messages, which no Joiner can see.
type Joiner struct {
	// MaxTotal is the largest total payload accepted for one message, in
	// bytes; 0 means DefaultMaxTotal. A part declaring more is refused with
	// ErrTooLarge before anything is allocated.
	MaxTotal int

	active bool   // a message is in assembly
	hdr    Header // its header (Index: that of the first part)
	buf    []byte // its payload so far, capacity hdr.Total
	next   uint16 // the index of its next part

	done, lost       msgID // the message last completed / last dropped
	hasDone, hasLost bool

	stats JoinerStats
}

// JoinerStats counts what a Joiner did.
type JoinerStats struct {
	Messages   uint64 // complete messages returned
	Dropped    uint64 // messages dropped for a missing part (or a refused one)
	Duplicates uint64 // parts ignored as duplicates
	Refused    uint64 // parts refused with an error other than ErrIncomplete
}

// Stats returns the Joiner's counters.
func (j *Joiner) Stats() JoinerStats { return j.stats }

// msgID names a message: a snapshot may share its epoch and seq with a live
// message.
type msgID struct {
	kind  Kind
	epoch uint64
	seq   uint64
}

func idOf(h *Header) msgID { return msgID{h.Kind, h.Epoch, h.Seq} }

func (id msgID) String() string { return fmt.Sprintf("%v %d/%d", id.kind, id.epoch, id.seq) }

func (j *Joiner) maxTotal() uint64 {
	if j.MaxTotal <= 0 {
		return DefaultMaxTotal
	}
	return uint64(j.MaxTotal)
}

// Add adds one wire message (one part) and returns the message it completes,
// if any. See Joiner for what it returns.
func (j *Joiner) Add(b []byte) (*Message, bool, error) {
	h, err := ParseHeader(b)
	if err != nil {
		j.stats.Refused++
		return nil, false, err
	}
	id, p := idOf(&h), b[HeaderSize:]
	if j.active && idOf(&j.hdr) == id {
		return j.more(&h, p)
	}
	if j.hasDone && j.done == id {
		j.stats.Duplicates++
		return nil, false, nil
	}
	if h.Index != 0 {
		// Its first part was lost, refused, or came before a first part of
		// another message: it cannot complete. It leaves the message in
		// assembly alone (an older message's leftover must not drop a newer
		// one).
		j.lose(id)
		return nil, false, fmt.Errorf("%w: %v part %d of %d without its first part", ErrIncomplete, id, h.Index, h.Count)
	}
	if j.active {
		j.drop()
	}
	if uint64(h.Total) > j.maxTotal() {
		return j.refuse(id, fmt.Errorf("%w: %v declares %d bytes (max %d)", ErrTooLarge, id, h.Total, j.maxTotal()))
	}
	if h.Count == 1 {
		if uint64(len(p)) < uint64(h.Total) {
			return j.refuse(id, fmt.Errorf("%w: %v has %d of %d payload bytes", ErrTruncated, id, len(p), h.Total))
		}
		if uint64(len(p)) > uint64(h.Total) {
			return j.refuse(id, fmt.Errorf("%w: %v has %d bytes past its %d payload bytes", ErrMalformed, id, uint64(len(p))-uint64(h.Total), h.Total))
		}
		return j.complete(&h, p)
	}
	if err := checkPart(&h, 0, len(p)); err != nil {
		return j.refuse(id, err)
	}
	j.active, j.hdr, j.next = true, h, 1
	j.buf = append(make([]byte, 0, h.Total), p...)
	return nil, false, nil
}

// more adds part h of the message in assembly.
func (j *Joiner) more(h *Header, p []byte) (*Message, bool, error) {
	id := idOf(h)
	if h.Flags != j.hdr.Flags || h.Count != j.hdr.Count || h.Total != j.hdr.Total {
		j.drop()
		j.stats.Refused++
		return nil, false, fmt.Errorf("%w: %v part %d disagrees with part 0 (flags %#x/%#x, count %d/%d, total %d/%d)",
			ErrMalformed, id, h.Index, h.Flags, j.hdr.Flags, h.Count, j.hdr.Count, h.Total, j.hdr.Total)
	}
	if h.Index < j.next {
		j.stats.Duplicates++
		return nil, false, nil
	}
	if h.Index > j.next {
		j.drop()
		return nil, false, fmt.Errorf("%w: %v part %d of %d missing", ErrIncomplete, id, j.next, h.Count)
	}
	if err := checkPart(h, len(j.buf), len(p)); err != nil {
		j.drop()
		j.stats.Refused++
		return nil, false, err
	}
	j.buf = append(j.buf, p...)
	j.next++
	if j.next < h.Count {
		return nil, false, nil
	}
	buf := j.buf
	j.active, j.buf = false, nil
	return j.complete(h, buf)
}

// checkPart checks that part h, of n payload bytes after have bytes, leaves
// at least one byte for each later part and, if it is the last, ends the
// payload.
func checkPart(h *Header, have, n int) error {
	later := uint64(h.Count - 1 - h.Index)
	sum := uint64(have) + uint64(n)
	switch {
	case n == 0:
		return fmt.Errorf("%w: %v part %d of %d is empty", ErrMalformed, idOf(h), h.Index, h.Count)
	case sum+later > uint64(h.Total):
		return fmt.Errorf("%w: %v part %d of %d overruns the %d payload bytes", ErrMalformed, idOf(h), h.Index, h.Count, h.Total)
	case later == 0 && sum < uint64(h.Total):
		return fmt.Errorf("%w: %v ends after %d of %d payload bytes", ErrTruncated, idOf(h), sum, h.Total)
	}
	return nil
}

// complete decodes the payload p of message h.
func (j *Joiner) complete(h *Header, p []byte) (*Message, bool, error) {
	j.done, j.hasDone = idOf(h), true
	m, err := decode(h, p)
	if err != nil {
		j.stats.Refused++
		return nil, false, err
	}
	j.stats.Messages++
	return m, true, nil
}

// drop drops the message in assembly.
func (j *Joiner) drop() {
	j.lose(idOf(&j.hdr))
	j.active, j.buf = false, nil
}

// lose counts message id as dropped, once.
func (j *Joiner) lose(id msgID) {
	if j.hasLost && j.lost == id {
		return
	}
	j.lost, j.hasLost = id, true
	j.stats.Dropped++
}

// refuse refuses the first part of message id with err.
func (j *Joiner) refuse(id msgID, err error) (*Message, bool, error) {
	j.stats.Refused++
	j.lose(id)
	return nil, false, err
}
