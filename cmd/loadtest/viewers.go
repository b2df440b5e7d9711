package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// window is the measurement window of a phase: only what arrives inside it
// counts for latency, throughput, frames and skips.
type window struct {
	start, end time.Time
}

func (w *window) in(t time.Time) bool { return !t.Before(w.start) && t.Before(w.end) }

// viewerResult is what one load viewer saw.
type viewerResult struct {
	dialStart time.Time
	ttff      time.Duration // WS dial -> first media segment; 0 = none
	bytes     int64         // in the window
	frames    int           // video frames in the window
	skipped   int           // video frames missing (decode-time gaps) in the window
	lat       []uint32      // delivery latency per stamped video frame in the window, microseconds
	stamps    []int64       // with viewer.keepStamps: the send time of each frame in lat, same order
	badStamp  int           // video frames without a readable stamp
	inits     int
	err       string // a protocol or connection error
	serverErr string // an {"type":"error"} message from the server
	closed    bool   // the server closed the connection
	closedAt  time.Duration
}

type ctlMsg struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Tracks  []struct {
		ID   uint32 `json:"id"`
		Kind string `json:"kind"`
	} `json:"tracks"`
}

var dialer = websocket.Dialer{
	HandshakeTimeout: 15 * time.Second,
	ReadBufferSize:   16 << 10,
	WriteBufferSize:  1 << 10,
}

// slowDialer makes sockets with a small receive buffer, so a viewer that
// stops reading blocks the gateway's writes after ~rcvbuf bytes instead of
// after the tens of MiB loopback autotuning allows.
func slowDialer(rcvbuf int) *websocket.Dialer {
	d := dialer
	nd := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	d.NetDialContext = nd.DialContext
	return &d
}

// viewer is one load viewer: it reads every message, but only the first bytes
// of a media segment (moof + the stamp) are kept; the rest is discarded.
type viewer struct {
	url    string
	stream int // index of the stream watched (streamName)
	// keepStamps keeps each frame's send time next to its latency (the
	// cluster mode matches frames across nodes).
	keepStamps bool
	res        viewerResult
	win        *window
	mu         sync.Mutex
	conn       *websocket.Conn
	// events, when set, hears of every init, eos and video frame as it
	// arrives, whatever the window (the soak's live counters).
	events viewerEvents
}

// viewerEvents is told what a viewer receives, on the viewer's goroutine.
type viewerEvents interface {
	onInit(at time.Time)
	onEOS(at time.Time)
	// onVideoFrame gets the frame's delivery latency, or -1 when it has no stamp.
	onVideoFrame(at time.Time, latency time.Duration)
}

func (v *viewer) closeConn() {
	v.mu.Lock()
	if v.conn != nil {
		v.conn.Close()
	}
	v.mu.Unlock()
}

func (v *viewer) run(ctx context.Context) {
	r := &v.res
	r.dialStart = time.Now()
	ws, _, err := dialer.DialContext(ctx, v.url, nil)
	if err != nil {
		if ctx.Err() == nil {
			r.err = "dial: " + err.Error()
		}
		return
	}
	v.mu.Lock()
	v.conn = ws
	v.mu.Unlock()
	if ctx.Err() != nil {
		ws.Close()
		return
	}
	ws.SetReadLimit(64 << 20)
	buf := make([]byte, 1024)
	var videoID uint32
	expectInit := false
	var nextDTS uint64 // decode time the next video frame should have; 0 = unknown
	for {
		mt, rd, err := ws.NextReader()
		if err != nil {
			if ctx.Err() == nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					r.closed = true
					r.closedAt = time.Since(r.dialStart)
					if r.serverErr == "" {
						r.err = "closed by server: " + err.Error()
					}
				} else {
					r.err = err.Error()
				}
			}
			return
		}
		now := time.Now()
		if mt == websocket.TextMessage {
			data, _ := io.ReadAll(io.LimitReader(rd, 1<<20))
			var c ctlMsg
			if err := json.Unmarshal(data, &c); err != nil {
				r.err = "text message is not JSON"
				return
			}
			switch c.Type {
			case "init":
				if v.events != nil {
					v.events.onInit(now)
				}
				expectInit = true
				r.inits++
				nextDTS = 0
				for _, t := range c.Tracks {
					if t.Kind == "video" {
						videoID = t.ID
					}
				}
			case "eos":
				if v.events != nil {
					v.events.onEOS(now)
				}
			case "error":
				r.serverErr = c.Message
			}
			continue
		}
		if expectInit {
			expectInit = false
			_, _ = io.Copy(io.Discard, rd)
			continue
		}
		n, err := io.ReadFull(rd, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			continue // the connection broke; NextReader reports it
		}
		msg := buf[:n]
		sh, perr := viewerclient.ParseSegmentHeader(msg)
		if errors.Is(perr, viewerclient.ErrShortSegment) && sh.MoofSize == 0 {
			// A moof longer than buf: keep it whole.
			need := 0
			if len(msg) >= 4 {
				need = int(uint32(msg[0])<<24|uint32(msg[1])<<16|uint32(msg[2])<<8|uint32(msg[3])) + stampPrefix
			}
			if need > len(buf) && need < 1<<20 {
				nb := make([]byte, need)
				copy(nb, msg)
				m, _ := io.ReadFull(rd, nb[n:])
				buf, msg = nb, nb[:n+m]
				sh, perr = viewerclient.ParseSegmentHeader(msg)
			}
		}
		rest, _ := io.Copy(io.Discard, rd)
		size := int64(n) + rest
		if perr != nil {
			r.err = "bad segment: " + perr.Error()
			return
		}
		if r.ttff == 0 {
			r.ttff = now.Sub(r.dialStart)
			// PROTOCOL.md: the first segment after an init starts with a keyframe.
			if sh.First.TrackID != videoID || !viewerclient.IsSync(sh.First.SampleFlags) {
				r.err = "first segment is not a video keyframe"
				return
			}
		}
		inWin := v.win.in(now)
		if inWin {
			r.bytes += size
		}
		if sh.First.TrackID != videoID || videoID == 0 {
			continue
		}
		dur := uint64(sh.First.FirstDur)
		if v.events != nil {
			lat := time.Duration(-1)
			if at, ok := readStamp(msg, sh); ok {
				lat = now.Sub(time.Unix(0, at))
			}
			v.events.onVideoFrame(now, lat)
		}
		if inWin {
			r.frames++
			if nextDTS != 0 && dur > 0 && sh.First.BaseTime > nextDTS+dur/2 {
				r.skipped += int((sh.First.BaseTime - nextDTS + dur/2) / dur)
			}
			if at, ok := readStamp(msg, sh); ok {
				d := now.UnixNano() - at
				r.lat = append(r.lat, uint32(min(max(d/1000, 0), 1<<31)))
				if v.keepStamps {
					r.stamps = append(r.stamps, at)
				}
			} else {
				r.badStamp++
			}
		}
		nextDTS = sh.First.BaseTime + dur
	}
}

// slowViewer connects and then never reads (rate 0), or reads at a trickle
// of rate bytes/s, until ctx ends. Then it drains what it can for a few
// seconds to learn whether the server closed it.
type slowViewer struct {
	url    string
	rate   int
	rcvbuf int
	res    viewerResult
	conn   *websocket.Conn
}

func (s *slowViewer) run(ctx context.Context) {
	r := &s.res
	r.dialStart = time.Now()
	ws, _, err := slowDialer(s.rcvbuf).DialContext(ctx, s.url, nil)
	if err != nil {
		if ctx.Err() == nil {
			r.err = "dial: " + err.Error()
		}
		return
	}
	s.conn = ws
	ws.SetReadLimit(64 << 20)
	if s.rate > 0 {
		defer ws.Close()
		// Trickle: read a chunk, sleep so the average is rate.
		go func() {
			<-ctx.Done()
			_ = ws.SetReadDeadline(time.Now())
		}()
		chunk := make([]byte, 1500)
		pause := time.Duration(float64(len(chunk)) / float64(s.rate) * float64(time.Second))
		for {
			mt, rd, err := ws.NextReader()
			if err != nil {
				if ctx.Err() == nil {
					r.closed, r.closedAt = true, time.Since(r.dialStart)
				}
				return
			}
			if mt == websocket.TextMessage {
				r.noteText(rd)
				continue
			}
			for {
				n, err := rd.Read(chunk)
				r.bytes += int64(n)
				if err != nil {
					break
				}
				t := time.NewTimer(pause)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
	<-ctx.Done()
}

// noteText reads a text message and keeps the server's error, if it is one.
func (r *viewerResult) noteText(rd io.Reader) {
	data, _ := io.ReadAll(rd)
	var c ctlMsg
	if json.Unmarshal(data, &c) == nil && c.Type == "error" {
		r.serverErr = c.Message
	}
}

// drain reads what the never-reading viewer has pending, for at most d, and
// records whether the server had sent an error and closed the connection.
func (s *slowViewer) drain(d time.Duration) {
	if s.conn == nil || s.rate > 0 {
		return
	}
	defer s.conn.Close()
	r := &s.res
	_ = s.conn.SetReadDeadline(time.Now().Add(d))
	for {
		mt, rd, err := s.conn.NextReader()
		if err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				r.closed = true
			}
			return
		}
		if mt == websocket.TextMessage {
			r.noteText(rd)
			continue
		}
		n, _ := io.Copy(io.Discard, rd)
		r.bytes += n
	}
}
