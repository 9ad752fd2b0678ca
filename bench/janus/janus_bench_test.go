//go:build janusbench

package janus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/media/codec"
)

// setup is read from the environment run.sh prepares.
type setup struct {
	netns, janusIP, clientIP, iface, nkbridge string
	listeners, mixer                          []int
	window                                    time.Duration
	video                                     bool // the SFU publisher also sends VP8
}

func envSetup(b *testing.B) setup {
	s := setup{netns: os.Getenv("NKB_JANUS_NETNS"), janusIP: os.Getenv("NKB_JANUS_IP"),
		clientIP: os.Getenv("NKB_JANUS_CLIENT_IP"), iface: os.Getenv("NKB_JANUS_IFACE"),
		nkbridge: os.Getenv("NKB_JANUS_NKBRIDGE"), window: 10 * time.Second}
	if s.netns == "" || s.janusIP == "" || s.clientIP == "" || s.iface == "" {
		b.Skip("run through bench/janus/run.sh (needs root, janus and a network namespace)")
	}
	ints := func(env, def string) []int {
		v := os.Getenv(env)
		if v == "" {
			v = def
		}
		var out []int
		if v == "none" {
			return nil
		}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 200 {
				b.Fatalf("%s: bad count %q (1..200)", env, f)
			}
			out = append(out, n)
		}
		return out
	}
	s.listeners = ints("NKB_JANUS_LISTENERS", "10,40,100")
	s.mixer = ints("NKB_JANUS_MIXER", "5,10,20")
	s.video = os.Getenv("NKB_JANUS_VIDEO") == "1"
	if v := os.Getenv("NKB_JANUS_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 2*time.Minute {
			b.Fatalf("NKB_JANUS_WINDOW %q: want 1s..2m", v)
		}
		s.window = d
	}
	return s
}

// ---- /proc CPU time --------------------------------------------------------------------

// cpuTicks is utime+stime (fields 14 and 15 of /proc/PID/stat) in clock ticks (USER_HZ=100).
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, fmt.Errorf("bad stat %q", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat %q", s)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad stat %q", s)
	}
	return u + st, nil
}

const userHZ = 100

// ---- pion peers ------------------------------------------------------------------------

type quiet struct{}

func (quiet) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, io.Discard)
}

// newPC is a pion peer whose ICE uses only the given IPv4 address: no mDNS, no STUN.
func newPC(b *testing.B, ip string) *webrtc.PeerConnection {
	want := net.ParseIP(ip)
	var se webrtc.SettingEngine
	se.LoggerFactory = quiet{}
	se.SetIPFilter(func(a net.IP) bool { return a.Equal(want) })
	se.SetIncludeLoopbackCandidate(want.IsLoopback())
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		b.Fatal(err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8,
		ClockRate: 90000, RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		b.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pc.Close() })
	return pc
}

// local sets the local description and waits for all candidates (no trickle).
func local(b *testing.B, pc *webrtc.PeerConnection, d webrtc.SessionDescription, err error) string {
	if err != nil {
		b.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.Fatal("ICE gathering timed out")
	}
	return pc.LocalDescription().SDP
}

// sender adds an Opus track to pc and returns a function that writes the next 20 ms frame.
func sender(b *testing.B, pc *webrtc.PeerConnection, frames [][]byte) func() {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "nkb")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		b.Fatal(err)
	}
	var seq uint16
	var ts uint32
	n := 0
	return func() {
		seq++
		ts += 960
		_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts, SSRC: 0x4e4b4201}, Payload: frames[n%len(frames)]})
		n++
	}
}

// videoSender adds a VP8 track that sends one 900-byte packet per call (one frame per 20 ms),
// a keyframe (VP8 key frame header, 640x360) every 50 frames. The payload is not decodable
// video: SFUs forward it without decoding, which is what is measured.
func videoSender(b *testing.B, pc *webrtc.PeerConnection) func() {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "nkb")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 900)
	// payload descriptor: S=1, partition 0; frame tag: key frame, version 0, shown; start code; 640x360
	copy(key, []byte{0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01})
	delta := make([]byte, 900)
	copy(delta, []byte{0x10, 0x11, 0x02, 0x00})
	var seq uint16
	var ts uint32
	n := 0
	return func() {
		seq++
		ts += 1800
		pl := delta
		if n%50 == 0 {
			pl = key
		}
		n++
		_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Marker: true, SequenceNumber: seq, Timestamp: ts, SSRC: 0x4e4b4202}, Payload: pl})
	}
}

// counter counts RTP packets of every remote track of pc; with a probe it also decodes them.
func counter(pc *webrtc.PeerConnection, c *atomic.Int64, p *probe) {
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p := p
		if tr.Kind() != webrtc.RTPCodecTypeAudio {
			p = nil
		}
		go func() {
			buf := make([]byte, 1500)
			var pkt rtp.Packet
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				c.Add(1)
				if p != nil && pkt.Unmarshal(buf[:n]) == nil {
					p.add(pkt.Payload)
				}
			}
		}()
	})
}

// probe decodes what one client hears and keeps the last second of it, to check the tones.
type probe struct {
	mu  sync.Mutex
	dec *codec.OpusDecoder
	pcm []int16
	tmp []int16
}

func newProbe(b *testing.B) *probe {
	d, err := codec.NewOpusDecoder(48000, 1)
	if err != nil {
		b.Fatal(err)
	}
	return &probe{dec: d, tmp: make([]int16, 5760)}
}

func (p *probe) add(payload []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := p.dec.Decode(payload, p.tmp)
	if err != nil {
		return
	}
	p.pcm = append(p.pcm, p.tmp[:n]...)
	if len(p.pcm) > 96000 {
		p.pcm = append(p.pcm[:0], p.pcm[len(p.pcm)-48000:]...)
	}
}

// level is the Goertzel level of hz in the last second heard, in dBFS.
func (p *probe) level(hz float64) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.pcm
	if len(x) > 48000 {
		x = x[len(x)-48000:]
	}
	if len(x) == 0 {
		return -200
	}
	w := 2 * math.Pi * hz / 48000
	coef := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v)/32768 + coef*s1 - s2
		s2, s1 = s1, s0
	}
	pow := s1*s1 + s2*s2 - coef*s1*s2
	amp := 2 * math.Sqrt(math.Max(pow, 0)) / float64(len(x))
	return 20 * math.Log10(amp+1e-12)
}

// checkTones: the probe hears want (above -45 dBFS) and not own (at least 20 dB under want).
func checkTones(b *testing.B, p *probe, want, own float64) string {
	w, o := p.level(want), p.level(own)
	msg := fmt.Sprintf("hears %.0f Hz at %.0f dBFS", want, w)
	if own > 0 {
		msg += fmt.Sprintf(", own %.0f Hz at %.0f", own, o)
	}
	if w < -45 || (own > 0 && w-o < 20) {
		b.Errorf("tone check failed: %s", msg)
	}
	return msg
}

// toneFrames encodes one second of a sine tone as 50 Opus frames of 20 ms (48 kHz mono).
func toneFrames(b *testing.B, hz float64) [][]byte {
	enc, err := codec.NewOpusEncoder(48000, 1)
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	pcm := make([]int16, 960)
	for f := 0; f < 50; f++ {
		for i := range pcm {
			t := float64(f*960+i) / 48000
			pcm[i] = int16(6000 * math.Sin(2*math.Pi*hz*t))
		}
		buf := make([]byte, 400)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, buf[:n])
	}
	return out
}

// toneOf: participant 0 alone sends tones[0] (500 Hz: its own tone, must be absent from what
// it hears), participant 1 alone tones[1] (1000 Hz: must be present; one sender, so no phase
// cancellation), the others alternate tones[2] and tones[3] (2000, 3000 Hz). All but the first
// are multiples of 1000 Hz, so neither clipping nor intermodulation in a mix makes 500 Hz.
func toneOf(tones [][][]byte, i int) [][]byte {
	if i < 2 {
		return tones[i]
	}
	return tones[2+i%2]
}

// pace calls every send function once per 20 ms (50 packets/s each) until ctx ends.
func pace(ctx context.Context, sends []func()) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, s := range sends {
				s()
			}
		}
	}
}

// ---- Janus -----------------------------------------------------------------------------

type janus struct {
	b      *testing.B
	base   string // http://IP:PORT/janus
	hc     *http.Client
	pid    int
	sess   int64
	mu     sync.Mutex
	queues map[int64]chan map[string]any
	tx     atomic.Int64
}

func writeJanusConfig(b *testing.B, dir string, s setup) {
	files := map[string]string{
		"janus.jcfg": fmt.Sprintf(`general: {
	configs_folder = "%[1]s"
	plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
	transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
	events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
	loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
	debug_level = 3
	admin_secret = "nkbbench-unused"
	session_timeout = 120
	server_name = "nkbbench"
	interface = "%[3]s"
}
media: {
	ipv6 = false
	rtp_port_range = "30000-30999"
}
nat: {
	nice_debug = false
	ice_lite = true
	full_trickle = false
	ignore_mdns = true
	ice_tcp = false
	ice_enforce_list = "%[2]s"
}
plugins: {
	disable = "libjanus_echotest.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_nosip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so,libjanus_lua.so,libjanus_duktape.so"
}
transports: {
	disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
	disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so"
}
`, dir, s.iface, s.janusIP),
		"janus.transport.http.jcfg": fmt.Sprintf(`general: {
	base_path = "/janus"
	http = true
	port = 8088
	ip = "%s"
	https = false
}
admin: {
	admin_base_path = "/admin"
	admin_http = false
	admin_https = false
}
`, s.janusIP),
		"janus.plugin.videoroom.jcfg":   "general: {\n}\n",
		"janus.plugin.audiobridge.jcfg": "general: {\n}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// startJanus runs janus inside the namespace and opens one API session with a long-poll loop.
func startJanus(ctx context.Context, b *testing.B, s setup) *janus {
	dir := b.TempDir()
	writeJanusConfig(b, dir, s)
	cmd := exec.Command("ip", "netns", "exec", s.netns, "janus", "-F", dir, "-o", "-N", "-L", filepath.Join(dir, "janus.log"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "janus.log")); err == nil {
				b.Logf("janus.log (tail):\n%s", tail(string(log), 3000))
			}
		}
	})
	j := &janus{b: b, base: "http://" + net.JoinHostPort(s.janusIP, "8088") + "/janus", pid: cmd.Process.Pid,
		hc: &http.Client{Timeout: 40 * time.Second}, queues: map[int64]chan map[string]any{}}
	var err error
	for i := 0; i < 100; i++ {
		var r map[string]any
		if r, err = j.post(ctx, "", map[string]any{"janus": "create"}); err == nil {
			j.sess = int64(num(dig(r, "data", "id")))
			break
		}
		time.Sleep(100 * time.Millisecond) // benchmark: retry pause while Janus starts
	}
	if err != nil || j.sess == 0 {
		b.Fatalf("janus did not start: %v", err)
	}
	go j.poll(ctx)
	return j
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func num(v any) float64 { f, _ := v.(float64); return f }

func (j *janus) post(ctx context.Context, path string, body map[string]any) (map[string]any, error) {
	body["transaction"] = fmt.Sprintf("t%d", j.tx.Add(1))
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.base+path, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	resp, err := j.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil {
		return nil, err
	}
	if r["janus"] == "error" {
		return r, fmt.Errorf("janus error: %v", r["error"])
	}
	return r, nil
}

func (j *janus) queue(h int64) chan map[string]any {
	j.mu.Lock()
	defer j.mu.Unlock()
	q := j.queues[h]
	if q == nil {
		q = make(chan map[string]any, 64)
		j.queues[h] = q
	}
	return q
}

// poll long-polls the session's events and routes them to their handle's queue.
func (j *janus) poll(ctx context.Context) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/%d?maxev=20", j.base, j.sess), nil)
		resp, err := j.hc.Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // benchmark: retry pause of the long poll
			continue
		}
		var evs []map[string]any
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&evs)
		resp.Body.Close()
		for _, e := range evs {
			if e["janus"] != "event" {
				continue
			}
			select {
			case j.queue(int64(num(e["sender"]))) <- e:
			default: // nobody waits for it
			}
		}
	}
}

func (j *janus) attach(ctx context.Context, plugin string) int64 {
	r, err := j.post(ctx, fmt.Sprintf("/%d", j.sess), map[string]any{"janus": "attach", "plugin": plugin})
	if err != nil {
		j.b.Fatalf("attach %s: %v", plugin, err)
	}
	return int64(num(dig(r, "data", "id")))
}

// msg sends a plugin message; for async requests it waits for the plugin event of the same
// transaction. It returns the plugin data and the event's jsep (if any).
func (j *janus) msg(ctx context.Context, h int64, body, jsep map[string]any) (map[string]any, map[string]any) {
	d, js, err := j.tryMsg(ctx, h, body, jsep)
	if err != nil {
		j.b.Fatal(err)
	}
	return d, js
}

func (j *janus) tryMsg(ctx context.Context, h int64, body, jsep map[string]any) (map[string]any, map[string]any, error) {
	m := map[string]any{"janus": "message", "body": body}
	if jsep != nil {
		m["jsep"] = jsep
	}
	q := j.queue(h)
	r, err := j.post(ctx, fmt.Sprintf("/%d/%d", j.sess, h), m)
	if err != nil {
		return nil, nil, fmt.Errorf("janus %v: %v %v", body["request"], err, r)
	}
	if r["janus"] == "success" {
		d, _ := dig(r, "plugindata", "data").(map[string]any)
		if d["error"] != nil {
			return nil, nil, fmt.Errorf("janus %v: %v", body["request"], d)
		}
		return d, nil, nil
	}
	tx := r["transaction"]
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-q:
			if e["transaction"] != tx {
				continue
			}
			d, _ := dig(e, "plugindata", "data").(map[string]any)
			if d["error"] != nil {
				return nil, nil, fmt.Errorf("janus %v: %v", body["request"], d)
			}
			js, _ := e["jsep"].(map[string]any)
			return d, js, nil
		case <-deadline:
			return nil, nil, fmt.Errorf("janus %v: no event", body["request"])
		}
	}
}

// ---- nkbridge (the real binary, NkMEDIA control API) ------------------------------------

type nkb struct {
	b    *testing.B
	pid  int
	ws   *websocket.Conn
	wmu  sync.Mutex
	tid  atomic.Int64
	mu   sync.Mutex
	wait map[int64]chan map[string]any
}

func freePort(b *testing.B, network string) int {
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startNKB(ctx context.Context, b *testing.B, s setup) *nkb {
	bin := s.nkbridge
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "nkbridge")
		if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/nkbridge").CombinedOutput(); err != nil {
			b.Fatalf("build nkbridge: %v\n%s", err, out)
		}
	}
	api := fmt.Sprintf("127.0.0.1:%d", freePort(b, "tcp"))
	cmd := exec.Command(bin, "-api-listen", api, "-metrics-listen", "", "-log-level", "error")
	cmd.Env = append(os.Environ(), "NKB_SIP_ENABLED=false", "NKB_VERTO_LISTEN=", "NKB_DEMO_ENABLED=false",
		fmt.Sprintf("NKB_MEDIA_UDP_PORT=%d", freePort(b, "udp")), "NKB_MEDIA_ROOM_EMPTY_GRACE=1s")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(35 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var ws *websocket.Conn
	var err error
	for i := 0; i < 100; i++ {
		if ws, _, err = websocket.DefaultDialer.DialContext(ctx, "ws://"+api+"/", nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // benchmark: retry pause while the daemon starts
	}
	if err != nil {
		b.Fatalf("nkbridge did not start: %v", err)
	}
	n := &nkb{b: b, pid: cmd.Process.Pid, ws: ws, wait: map[int64]chan map[string]any{}}
	b.Cleanup(func() { _ = ws.Close() })
	go n.read()
	n.req("core", "user", "login", map[string]any{"user": "bench", "password": "bench"})
	return n
}

func (n *nkb) send(m map[string]any) {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	_ = n.ws.WriteJSON(m)
}

func (n *nkb) read() {
	for {
		var m map[string]any
		if err := n.ws.ReadJSON(&m); err != nil {
			return
		}
		if m["cmd"] != nil { // a server request or event: acknowledge it
			if m["tid"] != nil {
				n.send(map[string]any{"result": "ok", "tid": m["tid"]})
			}
			continue
		}
		if m["result"] == nil || m["ack"] != nil {
			continue
		}
		n.mu.Lock()
		c := n.wait[int64(num(m["tid"]))]
		n.mu.Unlock()
		if c != nil {
			c <- m
		}
	}
}

func (n *nkb) req(class, sub, cmd string, data map[string]any) map[string]any {
	tid := n.tid.Add(1)
	c := make(chan map[string]any, 1)
	n.mu.Lock()
	n.wait[tid] = c
	n.mu.Unlock()
	n.send(map[string]any{"class": class, "subclass": sub, "cmd": cmd, "data": data, "tid": tid})
	select {
	case r := <-c:
		if r["result"] != "ok" {
			n.b.Fatalf("nkbridge %s/%s/%s: %v", class, sub, cmd, r)
		}
		d, _ := r["data"].(map[string]any)
		return d
	case <-time.After(15 * time.Second):
		n.b.Fatalf("nkbridge %s/%s/%s: no answer", class, sub, cmd)
		return nil
	}
}

// ---- the scenarios ---------------------------------------------------------------------

type result struct {
	server, scenario string
	n                int
	cpu              float64 // CPU seconds of the server process in the window
	pkts             int64   // packets received by the clients in the window
	window           time.Duration
	heard            string // tone check of one client
}

// measure runs the load for the window after a warm-up and reads the server's CPU time.
func measure(b *testing.B, pid int, got *atomic.Int64, warm, window time.Duration, minWarm int64) (float64, int64) {
	deadline := time.Now().Add(15 * time.Second)
	for got.Load() < minWarm {
		if time.Now().After(deadline) {
			b.Fatalf("media did not flow: %d packets after warm-up (want %d)", got.Load(), minWarm)
		}
		time.Sleep(100 * time.Millisecond) // benchmark: poll interval of the warm-up
	}
	time.Sleep(warm) // benchmark: the warm-up period
	c0, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	p0 := got.Load()
	time.Sleep(window) // benchmark: the measured window
	c1, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(c1-c0) / userHZ, got.Load() - p0
}

// onlyAt fails unless every ICE candidate of a server's SDP is at ip (the network rule: Janus
// only on its veth address inside the namespace, nkbridge only on loopback).
func onlyAt(b *testing.B, sdp, ip string) string {
	n := 0
	for _, l := range strings.Split(sdp, "\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 6 || f[4] != ip {
			b.Fatalf("server candidate not at %s: %q", ip, l)
		}
		n++
	}
	if n == 0 {
		b.Fatalf("server SDP without candidates:\n%s", sdp)
	}
	return sdp
}

func waitConnected(b *testing.B, pc *webrtc.PeerConnection) {
	for i := 0; pc.ConnectionState() != webrtc.PeerConnectionStateConnected; i++ {
		if i == 150 {
			b.Fatalf("publisher not connected: %v", pc.ConnectionState())
		}
		time.Sleep(100 * time.Millisecond) // benchmark: poll interval of the connection state
	}
}

// sfuJanus: one VideoRoom publisher, n subscribers. It returns the publisher's send function
// and the subscribers' packet counter.
func sfuJanus(ctx context.Context, b *testing.B, s setup, j *janus, n, room int, frames [][]byte) (func(), *atomic.Int64, *probe) {
	ph := j.attach(ctx, "janus.plugin.videoroom")
	j.msg(ctx, ph, map[string]any{"request": "create", "room": room, "publishers": 1, "audiocodec": "opus", "videocodec": "vp8", "is_private": false}, nil)
	joined, _ := j.msg(ctx, ph, map[string]any{"request": "join", "ptype": "publisher", "room": room, "display": "pub"}, nil)
	feed := joined["id"]
	pub := newPC(b, s.clientIP)
	send := sender(b, pub, frames)
	if s.video {
		audio, video := send, videoSender(b, pub)
		send = func() { audio(); video() }
	}
	o, err := pub.CreateOffer(nil)
	sdp := local(b, pub, o, err)
	_, ans := j.msg(ctx, ph, map[string]any{"request": "publish", "audio": true, "video": s.video}, map[string]any{"type": "offer", "sdp": sdp, "trickle": false})
	if ans == nil {
		b.Fatal("videoroom publish: no answer")
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: onlyAt(b, ans["sdp"].(string), s.janusIP)}); err != nil {
		b.Fatal(err)
	}
	// The feed exists for subscribers once the publisher's PeerConnection is up.
	waitConnected(b, pub)
	var got atomic.Int64
	pr := newProbe(b)
	for i := 0; i < n; i++ {
		h := j.attach(ctx, "janus.plugin.videoroom")
		var off map[string]any
		for try := 0; ; try++ {
			_, off, err = j.tryMsg(ctx, h, map[string]any{"request": "join", "ptype": "subscriber", "room": room, "streams": []any{map[string]any{"feed": feed}}}, nil)
			if err == nil || try == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond) // benchmark: retry pause until the publisher's feed is joinable
		}
		if err != nil {
			b.Fatal(err)
		}
		if off == nil {
			b.Fatal("videoroom subscribe: no offer")
		}
		pc := newPC(b, s.clientIP)
		var p *probe
		if i == 0 {
			p = pr
		}
		counter(pc, &got, p)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: onlyAt(b, off["sdp"].(string), s.janusIP)}); err != nil {
			b.Fatal(err)
		}
		a, err := pc.CreateAnswer(nil)
		j.msg(ctx, h, map[string]any{"request": "start", "room": room}, map[string]any{"type": "answer", "sdp": local(b, pc, a, err), "trickle": false})
	}
	return send, &got, pr
}

func sfuNKB(ctx context.Context, b *testing.B, s setup, k *nkb, n int, frames [][]byte) (func(), *atomic.Int64, *probe) {
	pub := newPC(b, "127.0.0.1")
	send := sender(b, pub, frames)
	if s.video {
		audio, video := send, videoSender(b, pub)
		send = func() { audio(); video() }
	}
	o, err := pub.CreateOffer(nil)
	r := k.req("media", "session", "start", map[string]any{"type": "publish", "offer": map[string]any{"sdp": local(b, pub, o, err)}})
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: onlyAt(b, dig(r, "answer", "sdp").(string), "127.0.0.1")}); err != nil {
		b.Fatal(err)
	}
	pid := r["session_id"]
	var got atomic.Int64
	pr := newProbe(b)
	for i := 0; i < n; i++ {
		lr := k.req("media", "session", "start", map[string]any{"type": "listen", "publisher_id": pid})
		pc := newPC(b, "127.0.0.1")
		var p *probe
		if i == 0 {
			p = pr
		}
		counter(pc, &got, p)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: onlyAt(b, dig(lr, "offer", "sdp").(string), "127.0.0.1")}); err != nil {
			b.Fatal(err)
		}
		a, err := pc.CreateAnswer(nil)
		k.req("media", "session", "set_answer", map[string]any{"session_id": lr["session_id"], "answer": map[string]any{"sdp": local(b, pc, a, err)}})
	}
	return send, &got, pr
}

func mixJanus(ctx context.Context, b *testing.B, s setup, j *janus, n, room int, tones [][][]byte) ([]func(), *atomic.Int64, *probe) {
	var got atomic.Int64
	pr := newProbe(b)
	var sends []func()
	for i := 0; i < n; i++ {
		h := j.attach(ctx, "janus.plugin.audiobridge")
		if i == 0 {
			j.msg(ctx, h, map[string]any{"request": "create", "room": room, "sampling_rate": 48000, "is_private": false}, nil)
		}
		j.msg(ctx, h, map[string]any{"request": "join", "room": room, "display": fmt.Sprintf("p%d", i)}, nil)
		pc := newPC(b, s.clientIP)
		sends = append(sends, sender(b, pc, toneOf(tones, i)))
		var p *probe
		if i == 0 {
			p = pr
		}
		counter(pc, &got, p)
		o, err := pc.CreateOffer(nil)
		_, ans := j.msg(ctx, h, map[string]any{"request": "configure", "muted": false}, map[string]any{"type": "offer", "sdp": local(b, pc, o, err), "trickle": false})
		if ans == nil {
			b.Fatal("audiobridge configure: no answer")
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: onlyAt(b, ans["sdp"].(string), s.janusIP)}); err != nil {
			b.Fatal(err)
		}
	}
	return sends, &got, pr
}

func mixNKB(ctx context.Context, b *testing.B, k *nkb, n int, tones [][][]byte) ([]func(), *atomic.Int64, *probe) {
	var got atomic.Int64
	pr := newProbe(b)
	var sends []func()
	room := ""
	for i := 0; i < n; i++ {
		pc := newPC(b, "127.0.0.1")
		sends = append(sends, sender(b, pc, toneOf(tones, i)))
		var p *probe
		if i == 0 {
			p = pr
		}
		counter(pc, &got, p)
		o, err := pc.CreateOffer(nil)
		req := map[string]any{"type": "mcu", "offer": map[string]any{"sdp": local(b, pc, o, err)}}
		if room != "" {
			req["room_id"] = room
		}
		r := k.req("media", "session", "start", req)
		if room == "" {
			room, _ = r["room_id"].(string)
			if room == "" {
				b.Fatalf("mcu start: no room_id in %v", r)
			}
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: onlyAt(b, dig(r, "answer", "sdp").(string), "127.0.0.1")}); err != nil {
			b.Fatal(err)
		}
	}
	return sends, &got, pr
}

// BenchmarkRoomsVsJanus runs every scenario against both servers, one after the other in
// one run, and prints the comparison table. Run it with -benchtime 1x through run.sh.
func BenchmarkRoomsVsJanus(b *testing.B) {
	s := envSetup(b)
	tones := [][][]byte{toneFrames(b, 500), toneFrames(b, 1000), toneFrames(b, 2000), toneFrames(b, 3000)}
	var results []result
	room := 4200
	for i := 0; i < b.N; i++ {
		sfu := "sfu"
		if s.video {
			sfu = "sfu+vp8"
		}
		for _, n := range s.listeners {
			for _, server := range []string{"janus", "nkbridge"} {
				room++
				b.Run(fmt.Sprintf("%s/%s/listeners=%d", sfu, server, n), func(b *testing.B) {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					var send func()
					var got *atomic.Int64
					var pr *probe
					var pid int
					if server == "janus" {
						j := startJanus(ctx, b, s)
						pid = j.pid
						send, got, pr = sfuJanus(ctx, b, s, j, n, room, tones[0])
					} else {
						k := startNKB(ctx, b, s)
						pid = k.pid
						send, got, pr = sfuNKB(ctx, b, s, k, n, tones[0])
					}
					lctx, lcancel := context.WithCancel(ctx)
					defer lcancel()
					go pace(lctx, []func(){send})
					cpu, pkts := measure(b, pid, got, 2*time.Second, s.window, int64(n)*10)
					lcancel()
					r := result{server: server, scenario: sfu, n: n, cpu: cpu, pkts: pkts, window: s.window, heard: checkTones(b, pr, 500, 0)}
					results = append(results, r)
					report(b, r)
				})
			}
		}
		for _, n := range s.mixer {
			for _, server := range []string{"janus", "nkbridge"} {
				room++
				b.Run(fmt.Sprintf("mixer/%s/participants=%d", server, n), func(b *testing.B) {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					var sends []func()
					var got *atomic.Int64
					var pr *probe
					var pid int
					if server == "janus" {
						j := startJanus(ctx, b, s)
						pid = j.pid
						sends, got, pr = mixJanus(ctx, b, s, j, n, room, tones)
					} else {
						k := startNKB(ctx, b, s)
						pid = k.pid
						sends, got, pr = mixNKB(ctx, b, k, n, tones)
					}
					lctx, lcancel := context.WithCancel(ctx)
					defer lcancel()
					go pace(lctx, sends)
					cpu, pkts := measure(b, pid, got, 2*time.Second, s.window, int64(n)*10)
					lcancel()
					r := result{server: server, scenario: "mixer", n: n, cpu: cpu, pkts: pkts, window: s.window, heard: checkTones(b, pr, 1000, 500)}
					results = append(results, r)
					report(b, r)
				})
			}
		}
	}
	table(b, results)
}

func report(b *testing.B, r result) {
	secs := r.window.Seconds()
	b.ReportMetric(r.cpu/secs*100, "%cpu")
	b.ReportMetric(float64(r.pkts)/secs, "rx-pkts/s")
	if r.cpu > 0 {
		b.ReportMetric(float64(r.pkts)/r.cpu, "rx-pkts/cpu-s")
	}
}

// table prints the side-by-side comparison (markdown).
func table(b *testing.B, rs []result) {
	var sb strings.Builder
	sb.WriteString("\n| scenario | server | N | server CPU (% of a core) | received pkts/s (all clients) | pkts/s per core | CPU per participant (% core) | participants per core | listener/participant 0 |\n")
	sb.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		secs := r.window.Seconds()
		core := r.cpu / secs // cores used
		perCore, perPart, partCore := "-", "-", "-"
		if core > 0 {
			perCore = fmt.Sprintf("%.0f", float64(r.pkts)/secs/core)
		}
		if r.scenario == "mixer" {
			perPart = fmt.Sprintf("%.2f", core*100/float64(r.n))
			if core > 0 {
				partCore = fmt.Sprintf("%.0f", float64(r.n)/core)
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %d | %.1f | %.0f | %s | %s | %s | %s |\n", r.scenario, r.server, r.n, core*100,
			float64(r.pkts)/secs, perCore, perPart, partCore, r.heard)
	}
	b.Log(sb.String())
	fmt.Print(sb.String())
}
