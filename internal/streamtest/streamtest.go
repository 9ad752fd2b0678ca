// Package streamtest is a WebSocket application server for tests of live audio streams
// (package media/stream): it takes one stream connection after another on 127.0.0.1, keeps
// the start message, the audio per channel (nkbridge's binary PCM or Twilio's µ-law media
// events), DTMF and stop messages, and can talk back: play a tone, clear, mark, send garbage,
// stall (stop reading) or disconnect.
package streamtest

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/media/codec"
)

// App is a stream application server.
type App struct {
	t   testing.TB
	ln  net.Listener
	srv *http.Server
	// ReadBuffer, when > 0 before a connection arrives, sets its kernel receive buffer (a
	// small one makes a stall felt by the sender quickly).
	ReadBuffer int
	// Discard, set before connections arrive, counts frames without keeping the audio
	// (benchmarks).
	Discard bool

	mu     sync.Mutex
	conns  []*Conn
	notify chan struct{}
}

// Conn is one stream connection the App took.
type Conn struct {
	app *App
	ws  *websocket.Conn
	wmu sync.Mutex

	mu       sync.Mutex
	Start    map[string]any   // the start message (Twilio: the "start" event)
	Events   []map[string]any // every JSON message, in order
	channels int
	twilio   bool
	audio    [2][]int16 // per channel (Twilio: inbound, outbound track)
	frames   int
	closed   bool
	stall    chan struct{} // non-nil while reading is stalled
	done     chan struct{}
	discard  bool
}

// Start listens on 127.0.0.1 and serves until the test ends.
func Start(t testing.TB) *App {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &App{t: t, ln: ln, notify: make(chan struct{})}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if a.ReadBuffer > 0 {
			if tc, ok := ws.NetConn().(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(a.ReadBuffer)
			}
		}
		c := &Conn{app: a, ws: ws, done: make(chan struct{}), discard: a.Discard}
		a.mu.Lock()
		a.conns = append(a.conns, c)
		a.wake()
		a.mu.Unlock()
		c.read()
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	t.Cleanup(a.Close)
	return a
}

// URL is the ws:// URL of the server (path appended).
func (a *App) URL(path string) string { return "ws://" + a.ln.Addr().String() + path }

// Host is the server's host (for streams.allowed_hosts).
func (a *App) Host() string { return "127.0.0.1" }

// Close stops the server and closes every connection.
func (a *App) Close() {
	_ = a.srv.Close()
	a.mu.Lock()
	cs := append([]*Conn(nil), a.conns...)
	a.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (a *App) wake() {
	close(a.notify)
	a.notify = make(chan struct{})
}

// Conns returns the connections taken so far.
func (a *App) Conns() []*Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*Conn(nil), a.conns...)
}

// WaitConn waits for the n-th connection (from 1) until ctx ends.
func (a *App) WaitConn(ctx context.Context, n int) (*Conn, bool) {
	for {
		a.mu.Lock()
		if len(a.conns) >= n {
			c := a.conns[n-1]
			a.mu.Unlock()
			return c, true
		}
		w := a.notify
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-w:
		}
	}
}

func (c *Conn) read() {
	defer close(c.done)
	for {
		c.mu.Lock()
		st := c.stall
		c.mu.Unlock()
		if st != nil {
			<-st
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.mu.Unlock()
			c.app.mu.Lock()
			c.app.wake()
			c.app.mu.Unlock()
			return
		}
		c.mu.Lock()
		if mt == websocket.BinaryMessage && c.discard {
			c.frames++
		} else if mt == websocket.BinaryMessage {
			c.frames++
			ch := max(c.channels, 1)
			for i := 0; i+2*ch <= len(data); i += 2 * ch {
				for k := 0; k < ch && k < 2; k++ {
					c.audio[k] = append(c.audio[k], int16(binary.LittleEndian.Uint16(data[i+2*k:])))
				}
			}
		} else {
			var m map[string]any
			if json.Unmarshal(data, &m) == nil {
				c.Events = append(c.Events, m)
				c.event(m)
			}
		}
		c.mu.Unlock()
		c.app.mu.Lock()
		c.app.wake()
		c.app.mu.Unlock()
	}
}

// event handles a JSON message (c.mu held).
func (c *Conn) event(m map[string]any) {
	switch m["event"] {
	case "start":
		c.Start = m
		if f, ok := m["format"].(map[string]any); ok {
			if n, ok := f["channels"].(float64); ok {
				c.channels = int(n)
			}
		}
		if _, ok := m["start"]; ok {
			c.twilio = true
		}
	case "media":
		md, _ := m["media"].(map[string]any)
		p, _ := md["payload"].(string)
		raw, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			return
		}
		k := 0
		if md["track"] == "outbound" {
			k = 1
		}
		c.frames++
		for _, b := range raw {
			c.audio[k] = append(c.audio[k], codec.UlawToLinear(b))
		}
	}
}

// Frames is how many audio frames (Twilio: media events) arrived.
func (c *Conn) Frames() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// Audio returns a copy of channel ch's samples (Twilio: 0 inbound, 1 outbound).
func (c *Conn) Audio(ch int) []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.audio[ch]...)
}

// EventsOf returns the JSON messages whose event is ev.
func (c *Conn) EventsOf(ev string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, m := range c.Events {
		if m["event"] == ev {
			out = append(out, m)
		}
	}
	return out
}

// Closed reports whether the connection has ended.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Tone returns the dominant frequency among candidates of channel ch's last d of audio at rate,
// its ratio to the next, and its RMS.
func (c *Conn) Tone(ch, rate int, d time.Duration, candidates ...float64) (freq, ratio, rms float64) {
	a := c.Audio(ch)
	n := int(d.Seconds() * float64(rate))
	if len(a) > n {
		a = a[len(a)-n:]
	}
	if len(a) == 0 {
		return 0, 0, 0
	}
	f, r := audiotest.Dominant(a, float64(rate), candidates...)
	return f, r, audiotest.RMS(a)
}

// Stall stops reading until Resume (the kernel buffers fill, the sender must drop).
func (c *Conn) Stall() {
	c.mu.Lock()
	if c.stall == nil {
		c.stall = make(chan struct{})
	}
	c.mu.Unlock()
}

// Resume reads again after Stall.
func (c *Conn) Resume() {
	c.mu.Lock()
	if c.stall != nil {
		close(c.stall)
		c.stall = nil
	}
	c.mu.Unlock()
}

// Close closes the connection (the application disconnecting).
func (c *Conn) Close() {
	c.Resume()
	_ = c.ws.Close()
}

// Send writes a raw message (binary or text).
func (c *Conn) Send(binaryMsg bool, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	mt := websocket.TextMessage
	if binaryMsg {
		mt = websocket.BinaryMessage
	}
	return c.ws.WriteMessage(mt, data)
}

// SendJSON writes one JSON text message.
func (c *Conn) SendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Send(false, b)
}

// PlayTone sends d of a tone at rate: binary PCM in 100 ms messages, or Twilio media events
// of µ-law (rate must be 8000 then).
func (c *Conn) PlayTone(freq float64, rate int, d time.Duration, twilio bool, streamSid string) error {
	pcm := audiotest.Tone(freq, float64(rate), int(d.Seconds()*float64(rate)), 8000)
	step := rate / 10
	for i := 0; i < len(pcm); i += step {
		chunk := pcm[i:min(i+step, len(pcm))]
		var err error
		if twilio {
			u := make([]byte, len(chunk))
			for k, v := range chunk {
				u[k] = codec.LinearToUlaw(v)
			}
			err = c.SendJSON(map[string]any{"event": "media", "streamSid": streamSid,
				"media": map[string]any{"payload": base64.StdEncoding.EncodeToString(u)}})
		} else {
			b := make([]byte, 0, 2*len(chunk))
			for _, v := range chunk {
				b = binary.LittleEndian.AppendUint16(b, uint16(v))
			}
			err = c.Send(true, b)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }
