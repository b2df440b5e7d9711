package peer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/remux"
)

// Simulcast: a publisher may send one video as several encodings (layers,
// told apart by RID), each its own RTP stream. MSE viewers get one, so the
// session remuxes one layer at a time: the first that arrives (a fast
// start), then the largest picture among the layers that flow (sizes come
// from the layers' SPS, H.264 and H.265; for other codecs, the layer that
// carries the most bits; a flowing layer whose size is not known yet is
// asked for a keyframe, whose SPS tells it). Browsers turn their top layers
// off when bandwidth drops and on again when it returns, so the choice is
// revisited every layerCheckInterval; a switch starts the new layer at its
// next keyframe (asked for at once), and the remuxer's new init follows its
// size.
const (
	layerCheckInterval = 2 * time.Second
	// layerSwitchRatio is how much more a layer must carry than the
	// current one to take over (no flapping between similar layers).
	layerSwitchRatio = 1.5
	// layerSizeAsks is how many keyframes a flowing layer whose size is not
	// known yet is asked for, one per check: its first keyframe's SPS can
	// be lost, and browsers send the next only when asked.
	layerSizeAsks = 3
)

// simulcastLayers tracks a session's simulcast layers.
type simulcastLayers struct {
	mu      sync.Mutex
	layers  []*simulcastLayer
	current atomic.Pointer[simulcastLayer]
	started bool // the selector goroutine runs
}

type simulcastLayer struct {
	rid    string
	ssrc   uint32
	bytes  atomic.Int64 // payload bytes since the last check
	pixels atomic.Int64 // width x height from the layer's last SPS; 0 = not known
	rate   float64      // bytes/s at the last check

	sizeReadable bool // its codec's SPS gives the size (remux.PictureSizeReadable)
	sizeAsks     int  // keyframes asked for to learn the size (selectLayers only)
}

// readSimulcastLayer reads one layer until the connection ends; only the
// current layer's packets reach the remuxer.
func (s *Session) readSimulcastLayer(track *webrtc.TrackRemote) {
	mime := track.Codec().MimeType
	l := &simulcastLayer{rid: track.RID(), ssrc: uint32(track.SSRC()), sizeReadable: remux.PictureSizeReadable(mime)}
	ls := &s.layers
	ls.mu.Lock()
	ls.layers = append(ls.layers, l)
	first := ls.current.CompareAndSwap(nil, l)
	if !ls.started {
		ls.started = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer contain.Recover(s.log, "publisher simulcast", s.markDone)
			s.selectLayers()
		}()
	}
	ls.mu.Unlock()
	s.log.Info("simulcast layer", "rid", l.rid, "ssrc", l.ssrc, "remuxed", first)
	if first {
		s.useLayer(l)
	}
	s.tap.ownReads(l.ssrc)
	pumpRTP(track.Read, func(pkt *rtp.Packet, at time.Time) {
		l.bytes.Add(int64(len(pkt.Payload)))
		if w, h, ok := remux.PictureSize(mime, pkt.Payload); ok {
			l.pixels.Store(int64(w) * int64(h))
		}
		if ls.current.Load() == l {
			s.stream.PushVideo(pkt, at)
		}
	})
}

// useLayer makes l the remuxed layer; keyframe requests go to it.
func (s *Session) useLayer(l *simulcastLayer) {
	s.layers.current.Store(l)
	s.videoSSRC.Store(l.ssrc)
	s.lastPLI.Store(0) // the new layer's keyframe is wanted now
	s.RequestKeyframe()
}

// selectLayers moves the remuxer to the layer carrying the most bits,
// every layerCheckInterval, until the session ends.
func (s *Session) selectLayers() {
	t := time.NewTicker(layerCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ls := &s.layers
		ls.mu.Lock()
		cur := ls.current.Load()
		for _, l := range ls.layers {
			l.rate = float64(l.bytes.Swap(0)) / layerCheckInterval.Seconds()
		}
		best := cur
		for _, l := range ls.layers {
			if l.rate > 0 && betterLayer(l, best) {
				best = l
			}
		}
		ask := layersToSize(ls.layers)
		ls.mu.Unlock()
		for _, l := range ask {
			s.log.Info("simulcast layer size not known: keyframe asked", "rid", l.rid, "ssrc", l.ssrc, "ask", l.sizeAsks)
			s.sendPLI(l.ssrc)
		}
		if best != cur {
			s.log.Info("simulcast layer switch", "from", cur.rid, "to", best.rid,
				"from_kbps", int(cur.rate*8/1000), "to_kbps", int(best.rate*8/1000))
			s.useLayer(best)
		}
	}
}

// betterLayer reports whether l should replace cur: cur stopped flowing, or
// l has a larger picture, or (sizes unknown) l carries clearly more bits.
func betterLayer(l, cur *simulcastLayer) bool {
	if cur.rate == 0 {
		return true
	}
	lp, cp := l.pixels.Load(), cur.pixels.Load()
	if lp > 0 && cp > 0 {
		return lp > cp
	}
	return l.rate > cur.rate*layerSwitchRatio
}

// layersToSize returns the flowing layers whose picture size is not known
// and that may be asked for a keyframe again (counted here).
func layersToSize(layers []*simulcastLayer) []*simulcastLayer {
	var ask []*simulcastLayer
	for _, l := range layers {
		if l.rate > 0 && l.sizeReadable && l.pixels.Load() == 0 && l.sizeAsks < layerSizeAsks {
			l.sizeAsks++
			ask = append(ask, l)
		}
	}
	return ask
}
