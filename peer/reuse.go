package peer

import (
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// Pion's interceptors (NACK generator, receiver reports, TWCC) each ask a
// packet's interceptor.Attributes for its parsed RTP header; the first to
// ask makes the map and the header: two or three allocations per packet,
// most of the gateway's garbage at ingest. The connection's innermost
// interceptor (connTap) hands them instead one map and one header per
// stream, filled afresh for every packet, once the stream is read by the
// session's own track reader (pumpRTP), which keeps neither. Streams read by
// Pion's goroutines (a simulcast stream probed before its track is known,
// an RTX repair stream, whose attributes Pion queues) are never reused.

// rtpHeaderKey is the key under which interceptor.Attributes.GetRTPHeader
// keeps a parsed header. Pion does not export it: it is read once from a
// map GetRTPHeader filled. nil (reuse off) if that ever stops working.
var rtpHeaderKey = func() any {
	a := interceptor.Attributes{}
	if _, err := a.GetRTPHeader([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}); err != nil || len(a) != 1 {
		return nil
	}
	for k := range a {
		return k
	}
	return nil
}()

// reusedReads is one remote stream's reused attributes.
type reusedReads struct {
	owned atomic.Bool // read by the session's track reader only
	attr  interceptor.Attributes
	hdr   rtp.Header
}

// streamReads holds a connection's remote streams by SSRC.
type streamReads struct {
	mu     sync.Mutex
	bySSRC map[uint32]*reusedReads
}

// BindRemoteStream wraps the SRTP read stream of one remote SSRC: the
// interceptors above it get the stream's reused attributes, with the
// header parsed, once the session owns the stream's reads.
func (c *connTap) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	if rtpHeaderKey == nil {
		return reader
	}
	r := &reusedReads{attr: make(interceptor.Attributes, 1)}
	c.reads.mu.Lock()
	if c.reads.bySSRC == nil {
		c.reads.bySSRC = map[uint32]*reusedReads{}
	}
	c.reads.bySSRC[info.SSRC] = r
	c.reads.mu.Unlock()
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil || attr != nil || !r.owned.Load() {
			return n, attr, err
		}
		if _, err := r.hdr.Unmarshal(b[:n]); err != nil {
			return n, nil, nil // the interceptors above see the error as before
		}
		clear(r.attr)
		r.attr[rtpHeaderKey] = &r.hdr
		return n, r.attr, nil
	})
}

// UnbindRemoteStream forgets a stream Pion closed.
func (c *connTap) UnbindRemoteStream(info *interceptor.StreamInfo) {
	c.reads.mu.Lock()
	delete(c.reads.bySSRC, info.SSRC)
	c.reads.mu.Unlock()
}

// ownReads tells that the stream ssrc is from now on read only by the
// calling goroutine, which keeps no attributes past its next read.
func (c *connTap) ownReads(ssrc uint32) {
	if c == nil {
		return
	}
	c.reads.mu.Lock()
	r := c.reads.bySSRC[ssrc]
	c.reads.mu.Unlock()
	if r != nil {
		r.owned.Store(true)
	}
}
