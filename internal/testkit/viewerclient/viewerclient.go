// Package viewerclient is a minimal client of the viewer socket
// (GET /ws/watch/{stream}, PROTOCOL.md) for tests and the load tool.
package viewerclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mseway/mseway/remux"
)

// Control is a text message from the gateway.
type Control struct {
	Type    string        `json:"type"`
	MIME    string        `json:"mime,omitempty"`
	Tracks  []remux.Track `json:"tracks,omitempty"`
	Message string        `json:"message,omitempty"`
	Reason  string        `json:"reason,omitempty"` // goaway
	URL     string        `json:"url,omitempty"`    // goaway: where to reconnect
}

// Message is one message received: Control for text, Binary otherwise.
type Message struct {
	Control *Control
	Binary  []byte
	At      time.Time
}

// Conn is one viewer connection. A goroutine reads the socket (a gorilla
// read that times out breaks the connection, so deadlines are applied to the
// channel, not the socket); it stops when the socket closes.
type Conn struct {
	ws   *websocket.Conn
	msgs chan Message
	err  error // set before msgs is closed
}

// ErrTimeout is returned by Next when nothing arrived in time.
var ErrTimeout = errors.New("viewerclient: timeout")

// Dial opens a viewer socket, e.g. ws://127.0.0.1:8080/ws/watch/demo.
func Dial(ctx context.Context, url string) (*Conn, *http.Response, error) {
	return DialTLS(ctx, url, nil)
}

// DialTLS is Dial with the TLS config a wss:// URL is dialled with (nil:
// the system's roots).
func DialTLS(ctx context.Context, url string, tlsConfig *tls.Config) (*Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if tlsConfig != nil {
		d.TLSClientConfig = tlsConfig.Clone() // never one an http.Transport holds (it adds "h2")
	}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(64 << 20)
	c := &Conn{ws: ws, msgs: make(chan Message, 4096)}
	go c.readLoop()
	return c, resp, nil
}

func (c *Conn) readLoop() {
	defer close(c.msgs)
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		m := Message{At: time.Now()}
		if mt == websocket.TextMessage {
			var ctl Control
			if err := json.Unmarshal(data, &ctl); err != nil {
				c.err = fmt.Errorf("viewerclient: text message is not JSON: %q", data)
				return
			}
			m.Control = &ctl
		} else {
			m.Binary = data
		}
		c.msgs <- m
	}
}

// Next returns the next message, waiting at most timeout (ErrTimeout).
func (c *Conn) Next(timeout time.Duration) (Message, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return Message{}, c.err
		}
		return m, nil
	case <-t.C:
		return Message{}, ErrTimeout
	}
}

// SendText sends a text message (stats, or anything a test needs).
func (c *Conn) SendText(s string) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// Close closes the socket.
func (c *Conn) Close() error { return c.ws.Close() }

// LocalAddr is the client side's address (what the server sees as remote).
func (c *Conn) LocalAddr() string { return c.ws.LocalAddr().String() }
