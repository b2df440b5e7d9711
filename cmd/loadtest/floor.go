package main

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// recording is a stream as the gateway sent it to one viewer: the init
// (text + binary) and the media segments from a keyframe on, with their
// arrival times. The floor server replays it.
type recording struct {
	InitText []byte
	InitBin  []byte
	Segs     []recSeg
}

type recSeg struct {
	At       time.Duration // since the first segment
	Data     []byte
	Keyframe bool
	Stamp    int // offset of the stamp clock, -1 = none
}

// record watches url and keeps about d of its segments, starting at a
// keyframe received at least 500 ms after the join (past the GOP-cache
// burst) and ending before a keyframe, so the recording loops cleanly.
// Segments are timed by their video decode time (fps frames a second), not
// by when they arrived, so the floor replays at the media's own pace even
// when the publisher was late.
func record(ctx context.Context, url string, d time.Duration, fps int) (*recording, error) {
	ws, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	ws.SetReadLimit(64 << 20)
	go func() {
		<-ctx.Done()
		_ = ws.SetReadDeadline(time.Now())
	}()
	rec := &recording{}
	joined := time.Now()
	var videoID uint32
	var t0 time.Time
	var dts0 uint64
	var at time.Duration
	expectInit := false
	lastKey := -1
	for {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("recording: %w", err)
		}
		now := time.Now()
		if mt == websocket.TextMessage {
			var c ctlMsg
			if json.Unmarshal(data, &c) != nil {
				return nil, errors.New("recording: text message is not JSON")
			}
			switch c.Type {
			case "init":
				if rec.InitText != nil {
					return nil, errors.New("recording: the stream changed its init while recording")
				}
				rec.InitText, expectInit = data, true
				for _, t := range c.Tracks {
					if t.Kind == "video" {
						videoID = t.ID
					}
				}
			case "eos", "error":
				return nil, fmt.Errorf("recording: got %s", data)
			}
			continue
		}
		if expectInit {
			rec.InitBin, expectInit = data, false
			continue
		}
		sh, err := viewerclient.ParseSegmentHeader(data)
		if err != nil {
			return nil, fmt.Errorf("recording: %w", err)
		}
		key := sh.First.TrackID == videoID && viewerclient.IsSync(sh.First.SampleFlags)
		if len(rec.Segs) == 0 {
			if !key || now.Sub(joined) < 500*time.Millisecond {
				continue
			}
			t0, dts0 = now, sh.First.BaseTime
		}
		if sh.First.TrackID == videoID && sh.First.FirstDur > 0 && sh.First.BaseTime >= dts0 {
			timescale := uint64(sh.First.FirstDur) * uint64(fps)
			at = time.Duration((sh.First.BaseTime - dts0) * uint64(time.Second) / timescale)
		}
		if key {
			lastKey = len(rec.Segs)
			if now.Sub(t0) >= d {
				rec.Segs = rec.Segs[:lastKey]
				return rec, nil
			}
		}
		so := -1
		if sh.First.TrackID == videoID {
			so = stampOffset(data, sh)
		}
		rec.Segs = append(rec.Segs, recSeg{At: at, Data: data, Keyframe: key, Stamp: so})
	}
}

func (r *recording) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadRecording(path string) (*recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r recording
	if err := gob.NewDecoder(f).Decode(&r); err != nil {
		return nil, err
	}
	if len(r.Segs) == 0 || r.InitBin == nil {
		return nil, errors.New("empty recording")
	}
	return &r, nil
}

// floorServer is the bare reference the gateway is measured against: it
// replays a recording to every viewer of a stream with one
// websocket.PreparedMessage per fragment and one write per viewer (a
// goroutine per viewer fed by a channel). No WebRTC, no muxing. It keeps the
// GOP since the last keyframe so a new viewer starts at once, like the
// gateway. The only per-fragment work is refreshing the 10-byte send-time
// stamp, once for all viewers.
type floorServer struct {
	rec *recording
	ctx context.Context

	mu   sync.Mutex
	hubs map[string]*floorHub
}

type floorHub struct {
	mu       sync.Mutex
	initText *websocket.PreparedMessage
	initBin  *websocket.PreparedMessage
	gop      []*websocket.PreparedMessage
	viewers  map[chan *websocket.PreparedMessage]struct{}
}

const floorQueue = 256

var floorUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	WriteBufferPool:  &sync.Pool{},
	CheckOrigin:      func(*http.Request) bool { return true },
}

func newFloorServer(ctx context.Context, rec *recording) *floorServer {
	return &floorServer{rec: rec, ctx: ctx, hubs: map[string]*floorHub{}}
}

func (f *floorServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws/watch/{stream}", func(w http.ResponseWriter, r *http.Request) {
		f.serveViewer(w, r, f.hub(r.PathValue("stream")))
	})
	return mux
}

func (f *floorServer) hub(name string) *floorHub {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hubs[name]
	if h == nil {
		h = &floorHub{viewers: map[chan *websocket.PreparedMessage]struct{}{}}
		h.initText, _ = websocket.NewPreparedMessage(websocket.TextMessage, f.rec.InitText)
		h.initBin, _ = websocket.NewPreparedMessage(websocket.BinaryMessage, f.rec.InitBin)
		f.hubs[name] = h
		go h.replay(f.ctx, f.rec)
	}
	return h
}

// replay sends the recording at its recorded pace, looping; each loop starts
// with the init again (as a new publisher would), since decode times restart.
func (h *floorHub) replay(ctx context.Context, rec *recording) {
	loopLen := rec.Segs[len(rec.Segs)-1].At + time.Second/30
	start := time.Now()
	for loop := 0; ; loop++ {
		base := start.Add(time.Duration(loop) * loopLen)
		for i, s := range rec.Segs {
			if d := time.Until(base.Add(s.At)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else if ctx.Err() != nil {
				return
			}
			data := s.Data
			if s.Stamp >= 0 {
				data = append([]byte(nil), s.Data...)
				putClock(data[s.Stamp:s.Stamp], time.Now().UnixNano())
			}
			pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, data)
			if err != nil {
				return
			}
			h.mu.Lock()
			if s.Keyframe {
				clear(h.gop)
				h.gop = h.gop[:0]
			}
			h.gop = append(h.gop, pm)
			for ch := range h.viewers {
				if loop > 0 && i == 0 {
					h.send(ch, h.initText)
					h.send(ch, h.initBin)
				}
				h.send(ch, pm)
			}
			h.mu.Unlock()
		}
	}
}

// send queues pm for a viewer; a viewer whose queue is full is cut off.
func (h *floorHub) send(ch chan *websocket.PreparedMessage, pm *websocket.PreparedMessage) {
	select {
	case ch <- pm:
	default:
		delete(h.viewers, ch)
		close(ch)
	}
}

func (f *floorServer) serveViewer(w http.ResponseWriter, r *http.Request, h *floorHub) {
	conn, err := floorUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ch := make(chan *websocket.PreparedMessage, floorQueue)
	h.mu.Lock()
	ch <- h.initText
	ch <- h.initBin
	for _, pm := range h.gop {
		ch <- pm
	}
	h.viewers[ch] = struct{}{}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pm := range ch {
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := conn.WritePreparedMessage(pm); err != nil {
				conn.Close()
				break
			}
		}
		conn.Close()
	}()
	for {
		if _, _, err := conn.NextReader(); err != nil {
			break
		}
	}
	h.mu.Lock()
	if _, ok := h.viewers[ch]; ok {
		delete(h.viewers, ch)
		close(ch)
	}
	h.mu.Unlock()
	<-done
}
