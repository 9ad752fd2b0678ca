package embedded_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = netip.MustParseAddr("127.0.0.1")

// testLogger logs at info level to t.Log until the test is over.
func testLogger(t testing.TB) *slog.Logger { return peers.TestLoggerLevel(t, slog.LevelInfo) }

// env is an in-process nkbridge: the signalling core, the real WebSocket API
// on 127.0.0.1:0 (also serving the test page at /page.html) and the embedded
// backend on a real media engine.
type env struct {
	t      testing.TB
	eng    *media.Engine
	be     *embedded.Backend
	core   *signaling.Core
	base   string // http://127.0.0.1:port
	ws     string // ws://127.0.0.1:port/
	stop   func()
	recDir string
}

func newEnv(t testing.TB, mod func(*media.Config)) *env {
	t.Helper()
	log := testLogger(t)
	base := 30000 + 2*rand.IntN(15000)
	rec := t.TempDir()
	cfg := media.Config{BindIP: loopback, RTPPortMin: base, RTPPortMax: base + 100, Quarantine: 200 * time.Millisecond,
		MediaTimeout: 20 * time.Second, RecordDir: rec, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	eng, err := media.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	be := embedded.New(eng, log)
	backends := signaling.NewBackends()
	backends.Register(embedded.Name, be, embedded.Types()...)
	core := signaling.New(signaling.Options{Logger: log, Backends: backends})
	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, apiTestPage)
	})
	srv := wsapi.New(wsapi.Config{Handler: mux, Admins: []string{"watcher", "watch"}}, core, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			core.Close()
			be.Close()
			_ = eng.Close()
		})
	}
	t.Cleanup(stop)
	return &env{t: t, eng: eng, be: be, core: core, base: "http://" + ln.Addr().String(),
		ws: "ws://" + ln.Addr().String() + "/", stop: stop, recDir: rec}
}

// waitIdle waits until the engine and the backend hold no session.
func (e *env) waitIdle(what string) {
	e.t.Helper()
	peers.WaitFor(e.t, 5*time.Second, what+": engine and backend idle", func() bool {
		return e.eng.Sessions() == 0 && e.be.Sessions() == 0
	})
}

// ---- a Go control-API client (gorilla/websocket) ----

type apiError struct {
	Code int    `json:"code"`
	Text string `json:"error"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Text) }

type apiEvent struct {
	Class    string         `json:"class"`
	Subclass string         `json:"subclass"`
	Type     string         `json:"type"`
	ObjID    string         `json:"obj_id"`
	Body     map[string]any `json:"body"`
}

type apiClient struct {
	t    testing.TB
	ws   *websocket.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	tid  int
	pend map[int]chan map[string]any
	evs  []apiEvent
	done chan struct{}
}

func dialAPI(t testing.TB, e *env, user string) *apiClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &apiClient{t: t, ws: ws, pend: map[int]chan map[string]any{}, done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	if _, err := c.send("core", "user", "login", map[string]any{"user": user, "password": "x"}); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

func (c *apiClient) close() {
	_ = c.ws.Close()
	<-c.done
}

func (c *apiClient) write(v any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteJSON(v)
}

func (c *apiClient) read() {
	defer close(c.done)
	for {
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			c.mu.Lock()
			for _, ch := range c.pend {
				close(ch)
			}
			c.pend = map[int]chan map[string]any{}
			c.mu.Unlock()
			return
		}
		tid, _ := m["tid"].(float64)
		if _, isReq := m["cmd"]; isReq {
			if m["cmd"] == "event" {
				b, _ := json.Marshal(m["data"])
				var ev apiEvent
				_ = json.Unmarshal(b, &ev)
				c.mu.Lock()
				c.evs = append(c.evs, ev)
				c.mu.Unlock()
			}
			c.write(map[string]any{"result": "ok", "tid": tid})
			continue
		}
		if _, isAck := m["ack"]; isAck {
			continue
		}
		c.mu.Lock()
		ch := c.pend[int(tid)]
		delete(c.pend, int(tid))
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// send makes a request and returns its data, or an *apiError.
func (c *apiClient) send(class, subclass, cmd string, data map[string]any) (map[string]any, error) {
	c.mu.Lock()
	c.tid++
	tid := c.tid
	ch := make(chan map[string]any, 1)
	c.pend[tid] = ch
	c.mu.Unlock()
	req := map[string]any{"class": class, "cmd": cmd, "data": data, "tid": tid}
	if subclass != "" {
		req["subclass"] = subclass
	}
	c.write(req)
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, errors.New("connection closed")
		}
		d, _ := m["data"].(map[string]any)
		if m["result"] != "ok" {
			b, _ := json.Marshal(d)
			var e apiError
			_ = json.Unmarshal(b, &e)
			return nil, &e
		}
		return d, nil
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("no reply to %s/%s/%s", class, subclass, cmd)
	}
}

func (c *apiClient) media(cmd string, data map[string]any) (map[string]any, error) {
	sub, cmd, _ := strings.Cut(cmd, "/")
	return c.send("media", sub, cmd, data)
}

// waitEvent returns the first event matching typ and objID.
func (c *apiClient) waitEvent(typ, objID string, d time.Duration) apiEvent {
	c.t.Helper()
	var got apiEvent
	peers.WaitFor(c.t, d, "event "+typ+" "+objID, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ev := range c.evs {
			if ev.Type == typ && ev.ObjID == objID {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

func codeOf(err error) int {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// ---- a plain RTP peer (a UDP socket and pion/rtp; PCMU + telephone-event) ----

type rtpPeer struct {
	t    testing.TB
	conn *net.UDPConn
	ssrc uint32

	mu   sync.Mutex
	to   netip.AddrPort
	pcm  []int16 // PCMU received, decoded
	pkts int
	te   []rune
	det  dtmf.Detector
	done chan struct{}
	seq  uint16
	ts   uint32
}

func newRTPPeer(t testing.TB) *rtpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &rtpPeer{t: t, conn: conn, ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(), done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() { conn.Close(); <-p.done })
	return p
}

func (p *rtpPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// sdp is the peer's offer or answer: PCMU and telephone-event/8000 (PT 101).
func (p *rtpPeer) sdp(direction string) string {
	if direction == "" {
		direction = "sendrecv"
	}
	return fmt.Sprintf("v=0\r\no=peer 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"+
		"a=fmtp:101 0-15\r\na=ptime:20\r\na=%s\r\n", p.port(), direction)
}

var (
	reMAudio = regexp.MustCompile(`(?m)^m=audio (\d+) `)
	reConn   = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
)

// use points the peer at the address of nkbridge's SDP.
func (p *rtpPeer) use(sdp string) {
	p.t.Helper()
	m, c := reMAudio.FindStringSubmatch(sdp), reConn.FindStringSubmatch(sdp)
	if m == nil || c == nil {
		p.t.Fatalf("no audio address in SDP:\n%s", sdp)
	}
	port, _ := strconv.Atoi(m[1])
	ip, err := netip.ParseAddr(c[1])
	if err != nil || ip != loopback {
		p.t.Fatalf("SDP address %q is not 127.0.0.1", c[1])
	}
	p.mu.Lock()
	p.to = netip.AddrPortFrom(ip, uint16(port))
	p.mu.Unlock()
}

func (p *rtpPeer) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		p.mu.Lock()
		p.pkts++
		switch pkt.PayloadType {
		case 0:
			for _, b := range pkt.Payload {
				p.pcm = append(p.pcm, codec.UlawToLinear(b))
			}
		case 101:
			if d, ok := p.det.Push(pkt.Timestamp, pkt.Payload); ok {
				p.te = append(p.te, d)
			}
		}
		p.mu.Unlock()
	}
}

func (p *rtpPeer) write(pt uint8, marker bool, ts uint32, payload []byte) {
	p.mu.Lock()
	to := p.to
	p.seq++
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: p.seq,
		Timestamp: ts, SSRC: p.ssrc}, Payload: payload}
	p.mu.Unlock()
	b, _ := pkt.Marshal()
	_, _ = p.conn.WriteToUDPAddrPort(b, to)
}

// sendTone sends a PCMU sine at freq for d (or until ctx ends), 20 ms packets.
func (p *rtpPeer) sendTone(ctx context.Context, freq float64, d time.Duration) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	n := 0
	for time.Now().Before(end) {
		payload := make([]byte, 160)
		for i := range payload {
			s := 8000 * math.Sin(2*math.Pi*freq*float64(n*160+i)/8000)
			payload[i] = codec.LinearToUlaw(int16(s))
		}
		p.mu.Lock()
		p.ts += 160
		ts := p.ts
		p.mu.Unlock()
		p.write(0, n == 0, ts, payload)
		n++
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sendDigit sends one RFC 4733 event (PT 101).
func (p *rtpPeer) sendDigit(d rune) {
	pkts, err := dtmf.Generate(d, 100, 20, 8000)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ts += 160
	ts := p.ts
	p.mu.Unlock()
	start := time.Now()
	for _, k := range pkts {
		time.Sleep(time.Until(start.Add(time.Duration(k.SendMS) * time.Millisecond))) // real-time pacing of the digit's packets
		p.write(101, k.Marker, ts, k.Payload)
	}
}

// heard returns a copy of the decoded audio and the packet count.
func (p *rtpPeer) heard() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}

// waitHeard waits (up to 10 s) until the peer has decoded at least samples
// samples and returns them.
func (p *rtpPeer) waitHeard(samples int) ([]int16, int) {
	end := time.Now().Add(10 * time.Second)
	for {
		pcm, n := p.heard()
		if len(pcm) >= samples || time.Now().After(end) {
			return pcm, n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *rtpPeer) digits() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.te)
}

func (p *rtpPeer) reset() {
	p.mu.Lock()
	p.pcm, p.pkts = nil, 0
	p.mu.Unlock()
}
