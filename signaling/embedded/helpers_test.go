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

	"github.com/pion/rtp"
	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
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

// apiEvent is an event the API connection received.
type apiEvent struct {
	Type, ObjID string
	Body        map[string]any
}

// apiClient is an API connection (apitest) with the request helpers these tests use.
type apiClient struct{ *apitest.Conn }

func dialAPI(t testing.TB, e *env, user string) *apiClient {
	t.Helper()
	c := apitest.Dial(t, e.ws, nkclient.Options{})
	c.Login(user, "x")
	return &apiClient{c}
}

// send makes a request and returns its data (nil if not an object), or an *nkclient.APIError.
func (c *apiClient) send(class, subclass, cmd string, data map[string]any) (map[string]any, error) {
	var raw json.RawMessage
	if err := c.Req(class, subclass, cmd, data, &raw); err != nil {
		return nil, err
	}
	var d map[string]any
	_ = json.Unmarshal(raw, &d)
	return d, nil
}

func (c *apiClient) media(cmd string, data map[string]any) (map[string]any, error) {
	sub, cmd, _ := strings.Cut(cmd, "/")
	return c.send("media", sub, cmd, data)
}

// waitEvent takes the next event of type typ about objID (apitest.EventTimeout).
func (c *apiClient) waitEvent(typ, objID string) apiEvent {
	return apiEvent{Type: typ, ObjID: objID, Body: c.Event(nkclient.Selector{Type: typ, ObjID: objID}, nil)}
}

func codeOf(err error) int {
	var e *nkclient.APIError
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
