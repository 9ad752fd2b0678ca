package peers

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
)

// BaresipOptions describes one baresip instance (a softphone with a WAV file for a microphone
// and a recorder for a speaker).
type BaresipOptions struct {
	// User is the account's user part (default "baresip"). The default account line is
	// <sip:USER@127.0.0.1>;regint=0;answermode=AnswerMode;audio_codecs=Codec plus
	// AccountParams.
	User string
	// Account replaces the whole account line, e.g. to register with nkbridge:
	// "<sip:bob@127.0.0.1:5070>;auth_pass=secret;regint=60;answermode=auto;audio_codecs=pcmu".
	Account string
	// AccountParams are appended to the default account line (";outbound=...", ...).
	AccountParams string
	// Codec is "pcmu" (default), "pcma" or "opus" (mono, 48 kHz).
	Codec string
	// AnswerMode is "auto" (default), "manual" or "early".
	AnswerMode string
	// ToneHz is the frequency baresip sends (default 1000).
	ToneHz float64
	// ToneSeconds is the length of the tone file (default 60). baresip hangs up when its
	// audio file ends, so make it longer than the call.
	ToneSeconds int
	// AudioFile replaces the tone: a 16-bit mono WAV at the codec's rate (8 kHz for G.711,
	// 48 kHz for Opus; baresip does not resample).
	AudioFile string
	// SIPPort is the SIP listen port on 127.0.0.1 (UDP and TCP); 0 picks a free one.
	SIPPort int
	// Config holds extra lines for baresip's config file.
	Config []string
	// Logger receives baresip's output at debug level; default: t.Log.
	Logger *slog.Logger
}

// Baresip is a running baresip, controlled over its ctrl_tcp socket.
type Baresip struct {
	t        testing.TB
	proc     *Process
	dir      string
	recDir   string
	sipPort  int
	ctrlPort int
	user     string
	codec    string
	rate     int

	conn    net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	token   int
	waiters map[string]chan BaresipResponse
	events  []BaresipEvent
	notify  chan struct{} // closed and replaced on every event
	readErr error
	readEnd chan struct{}
}

// BaresipEvent is an event baresip reports on ctrl_tcp, e.g. Type "CALL_ESTABLISHED",
// "CALL_CLOSED", "CALL_INCOMING", "REGISTER_OK".
type BaresipEvent struct {
	Type       string          `json:"type"`
	Class      string          `json:"class"`
	AccountAOR string          `json:"accountaor"`
	Direction  string          `json:"direction"`
	PeerURI    string          `json:"peeruri"`
	ID         string          `json:"id"`
	Param      string          `json:"param"`
	Raw        json.RawMessage `json:"-"`
}

// BaresipResponse is the answer to a ctrl_tcp command.
type BaresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// StartBaresip starts baresip with a fresh config directory, waits until its ctrl_tcp socket
// answers, and binds it to the test's lifetime. It skips or fails (NKB_REQUIRE_PEERS=1) the
// test when baresip is missing.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin := Need(t, "baresip")
	const modDir = "/usr/lib/baresip/modules"
	NeedFile(t, filepath.Join(modDir, "ctrl_tcp.so"), "apt-get install baresip-core")

	if o.User == "" {
		o.User = "baresip"
	}
	if o.Codec == "" {
		o.Codec = "pcmu"
	}
	if o.AnswerMode == "" {
		o.AnswerMode = "auto"
	}
	if o.ToneHz == 0 {
		o.ToneHz = 1000
	}
	if o.ToneSeconds == 0 {
		o.ToneSeconds = 60
	}
	rate, codecSpec := 8000, o.Codec+"/8000/1"
	switch o.Codec {
	case "pcmu", "pcma":
	case "opus":
		rate, codecSpec = 48000, "opus/48000/1"
	default:
		t.Fatalf("peers.StartBaresip: unknown codec %q (pcmu, pcma, opus)", o.Codec)
	}
	log := o.Logger
	if log == nil {
		log = TestLogger(t)
	}

	// sndfile builds recording names in a 128-byte buffer: keep the paths short.
	dir, err := os.MkdirTemp("", "nkb-baresip-")
	if err != nil {
		t.Fatalf("peers.StartBaresip: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	recDir := filepath.Join(dir, "rec")
	if err := os.Mkdir(recDir, 0o755); err != nil {
		t.Fatalf("peers.StartBaresip: %v", err)
	}
	wav := o.AudioFile
	if wav == "" {
		wav = filepath.Join(dir, "tone.wav")
		if err := audiotest.WriteWAV(wav, audiotest.Tone(o.ToneHz, float64(rate), o.ToneSeconds*rate, 8000), rate); err != nil {
			t.Fatalf("peers.StartBaresip: %v", err)
		}
	} else if wav, err = filepath.Abs(wav); err != nil {
		t.Fatalf("peers.StartBaresip: %v", err)
	}

	b := &Baresip{
		t: t, dir: dir, recDir: recDir, user: o.User, codec: o.Codec, rate: rate,
		waiters: map[string]chan BaresipResponse{}, notify: make(chan struct{}), readEnd: make(chan struct{}),
	}
	account := o.Account
	if account == "" {
		account = fmt.Sprintf("<sip:%s@127.0.0.1>;regint=0;answermode=%s;audio_codecs=%s%s",
			o.User, o.AnswerMode, codecSpec, o.AccountParams)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account+"\n"), 0o644); err != nil {
		t.Fatalf("peers.StartBaresip: %v", err)
	}
	for attempt := 1; ; attempt++ {
		b.sipPort, b.ctrlPort = o.SIPPort, FreeTCPPort(t)
		if b.sipPort == 0 {
			b.sipPort = FreePort(t)
		}
		err := b.start(t, bin, wav, modDir, o.Config, log)
		if err == nil {
			break
		}
		// 98 is EADDRINUSE: a port chosen here was taken before baresip bound it.
		if attempt == 3 || b.proc == nil || b.proc.ExitCode() != 98 {
			out := ""
			if b.proc != nil {
				out = b.proc.Output()
			}
			t.Fatalf("peers.StartBaresip: %v\n%s", err, out)
		}
		log.Warn("baresip could not bind its ports; retrying with others", "attempt", attempt)
	}
	t.Cleanup(b.close)
	go b.readLoop()
	return b
}

// start writes the config, starts baresip and connects to ctrl_tcp.
func (b *Baresip) start(t testing.TB, bin, wav, modDir string, extra []string, log *slog.Logger) error {
	if err := os.WriteFile(filepath.Join(b.dir, "config"), []byte(baresipConfig(b, wav, modDir, extra)), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "-4", "-f", b.dir)
	cmd.Dir = b.dir
	p, err := StartProcess(t, "baresip-"+b.user, cmd, log)
	if err != nil {
		return err
	}
	b.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ctrlPort)), time.Second)
		if err == nil {
			b.conn = c
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("baresip exited (%d) before ctrl_tcp listened", p.ExitCode())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ctrl_tcp on 127.0.0.1:%d not up after 15 s", b.ctrlPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// baresipConfig renders the config file: loopback only, no DNS servers but 127.0.0.1:53 (so
// no lookup can leave the machine), no STUN/TURN/ICE modules, no audio player (sndfile
// records the decoded audio), the tone file as the microphone.
func baresipConfig(b *Baresip, wav, modDir string, extra []string) string {
	lines := []string{
		"poll_method\tepoll",
		"sip_listen\t127.0.0.1:" + strconv.Itoa(b.sipPort),
		"call_local_timeout\t120",
		"call_max_calls\t4",
		"audio_source\taufile," + wav,
		"audio_level\tno",
		"audio_buffer\t20-160",
		"rtp_tos\t0",
		"rtcp_mux\tno",
		"jitter_buffer_delay\t1-10",
		"rtp_stats\tno",
		"dns_server\t127.0.0.1:53",
		"net_interface\t127.0.0.1",
		"module_path\t" + modDir,
		"module\tg711.so",
		"module\topus.so",
		"module\taufile.so",
		"module\tsndfile.so",
		"module_tmp\tuuid.so",
		"module_tmp\taccount.so",
		"module_app\tmenu.so",
		"module_app\tctrl_tcp.so",
		"ctrl_tcp_listen\t127.0.0.1:" + strconv.Itoa(b.ctrlPort),
		"snd_path\t" + b.recDir,
		"opus_stereo\tno",
		"opus_sprop_stereo\tno",
	}
	lines = append(lines, extra...)
	return strings.Join(lines, "\n") + "\n"
}

// URI is the SIP URI that reaches this instance directly: sip:USER@127.0.0.1:PORT.
func (b *Baresip) URI() string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", b.user, b.sipPort) }

// SIPPort is baresip's SIP port on 127.0.0.1.
func (b *Baresip) SIPPort() int { return b.sipPort }

// Rate is the sample rate of the codec this instance uses (8000 or 48000).
func (b *Baresip) Rate() int { return b.rate }

// Dir is the instance's config directory.
func (b *Baresip) Dir() string { return b.dir }

// Process is the underlying child process.
func (b *Baresip) Process() *Process { return b.proc }

// netstring framing: "<len>:<payload>,".
func writeNetstring(w io.Writer, payload []byte) error {
	_, err := fmt.Fprintf(w, "%d:%s,", len(payload), payload)
	return err
}

const maxNetstring = 1 << 20

func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > maxNetstring {
		return nil, fmt.Errorf("bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring not terminated by ','")
	}
	return buf[:n], nil
}

func (b *Baresip) readLoop() {
	defer close(b.readEnd)
	r := bufio.NewReader(b.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			b.mu.Lock()
			b.readErr = err
			for tok, ch := range b.waiters {
				close(ch)
				delete(b.waiters, tok)
			}
			b.mu.Unlock()
			return
		}
		var kind struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		_ = json.Unmarshal(msg, &kind)
		switch {
		case kind.Response:
			var resp BaresipResponse
			if json.Unmarshal(msg, &resp) != nil {
				continue
			}
			b.mu.Lock()
			ch := b.waiters[resp.Token]
			delete(b.waiters, resp.Token)
			b.mu.Unlock()
			if ch != nil {
				ch <- resp
			}
		case kind.Event:
			var ev BaresipEvent
			if json.Unmarshal(msg, &ev) != nil {
				continue
			}
			ev.Raw = slices.Clone(msg)
			b.mu.Lock()
			if len(b.events) < 10000 {
				b.events = append(b.events, ev)
			}
			close(b.notify)
			b.notify = make(chan struct{})
			b.mu.Unlock()
		}
	}
}

// Command runs a baresip command (as typed at its prompt, long form: "dial", "hangup",
// "accept", "hold", "resume", "sndcode", "reginfo", "listcalls", ...) with params and
// returns its output.
func (b *Baresip) Command(ctx context.Context, command, params string) (string, error) {
	b.mu.Lock()
	b.token++
	tok := "nkb" + strconv.Itoa(b.token)
	ch := make(chan BaresipResponse, 1)
	if b.readErr != nil {
		err := b.readErr
		b.mu.Unlock()
		return "", fmt.Errorf("baresip ctrl_tcp: %w", err)
	}
	b.waiters[tok] = ch
	b.mu.Unlock()
	msg, err := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	if err != nil {
		return "", err
	}
	b.wmu.Lock()
	err = writeNetstring(b.conn, msg)
	b.wmu.Unlock()
	if err != nil {
		return "", fmt.Errorf("baresip ctrl_tcp: %w", err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return "", errors.New("baresip ctrl_tcp: connection closed")
		}
		if !resp.OK {
			return resp.Data, fmt.Errorf("baresip %s %s: failed: %s", command, params, strings.TrimSpace(resp.Data))
		}
		return resp.Data, nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiters, tok)
		b.mu.Unlock()
		return "", fmt.Errorf("baresip %s: %w", command, ctx.Err())
	}
}

// Dial calls uri (e.g. another instance's URI(), or nkbridge's "sip:echo@127.0.0.1:5060").
func (b *Baresip) Dial(ctx context.Context, uri string) error {
	_, err := b.Command(ctx, "dial", uri)
	return err
}

// Hangup hangs up the current call.
func (b *Baresip) Hangup(ctx context.Context) error {
	_, err := b.Command(ctx, "hangup", "")
	return err
}

// Accept answers the incoming call (AnswerMode "manual").
func (b *Baresip) Accept(ctx context.Context) error {
	_, err := b.Command(ctx, "accept", "")
	return err
}

// Events returns the events received so far.
func (b *Baresip) Events() []BaresipEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.events)
}

// WaitEvent waits for the first event (received before or after the call) of type typ
// whose index is at least from (use len(Events()) before an action to wait only for what
// follows it), and returns it with its index.
func (b *Baresip) WaitEvent(ctx context.Context, typ string, from int) (BaresipEvent, int, error) {
	for {
		b.mu.Lock()
		for i := from; i < len(b.events); i++ {
			if b.events[i].Type == typ {
				ev := b.events[i]
				b.mu.Unlock()
				return ev, i, nil
			}
		}
		notify, rerr := b.notify, b.readErr
		b.mu.Unlock()
		if rerr != nil {
			return BaresipEvent{}, -1, fmt.Errorf("baresip: waiting for %s: ctrl_tcp closed: %w", typ, rerr)
		}
		select {
		case <-notify:
		case <-b.readEnd:
		case <-ctx.Done():
			return BaresipEvent{}, -1, fmt.Errorf("baresip: waiting for %s: %w (events so far: %s)", typ, ctx.Err(), b.eventTypes())
		}
	}
}

func (b *Baresip) eventTypes() string {
	var s []string
	for _, e := range b.Events() {
		s = append(s, e.Type)
	}
	return strings.Join(s, ",")
}

// Recordings lists the WAV files sndfile wrote, oldest first: "...-dec.wav" holds what
// baresip heard (decoded from the network), "...-enc.wav" what it sent. Files are named by
// the second a call's audio started.
func (b *Baresip) Recordings() []string {
	ents, _ := os.ReadDir(b.recDir)
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wav") {
			out = append(out, filepath.Join(b.recDir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// Heard returns the audio of the latest call that baresip received (its newest
// "-dec.wav" recording) and its sample rate. Read it after the call has closed: libsndfile
// completes the WAV header only then (a header still saying 0 bytes is tolerated).
func (b *Baresip) Heard() ([]int16, int, error) { return b.latest("-dec.wav") }

// WaitHeard waits until the newest "-dec.wav" recording holds at least d of audio (or ctx
// ends): talk for a length of received audio, not of wall-clock time, which a loaded machine
// stretches.
func (b *Baresip) WaitHeard(ctx context.Context, d time.Duration) error {
	for {
		s, rate, err := b.Heard()
		if err == nil && rate > 0 && time.Duration(len(s))*time.Second/time.Duration(rate) >= d {
			return nil
		}
		select {
		case <-ctx.Done():
			got := 0.0
			if rate > 0 {
				got = float64(len(s)) / float64(rate)
			}
			return fmt.Errorf("baresip %s: %.2f s of audio received, waiting for %v: %w", b.user, got, d, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Sent returns the audio of the latest call that baresip sent ("-enc.wav").
func (b *Baresip) Sent() ([]int16, int, error) { return b.latest("-enc.wav") }

func (b *Baresip) latest(suffix string) ([]int16, int, error) {
	var last string
	for _, f := range b.Recordings() {
		if strings.HasSuffix(f, suffix) {
			last = f
		}
	}
	if last == "" {
		return nil, 0, fmt.Errorf("baresip: no *%s recording in %s", suffix, b.recDir)
	}
	raw, err := os.ReadFile(last)
	if err != nil {
		return nil, 0, err
	}
	return audiotest.DecodeWAV(fixWAVLength(raw))
}

// fixWAVLength makes the data chunk of a WAV that is still being written (its header not
// yet patched) span the rest of the file.
func fixWAVLength(b []byte) []byte {
	if len(b) < 12 || string(b[0:4]) != "RIFF" {
		return b
	}
	out := slices.Clone(b)
	for p := 12; p+8 <= len(out); {
		id := string(out[p : p+4])
		size := int(binary.LittleEndian.Uint32(out[p+4:]))
		if id == "data" {
			if rest := len(out) - p - 8; size == 0 || size > rest {
				binary.LittleEndian.PutUint32(out[p+4:], uint32(rest))
			}
			return out
		}
		if size < 0 || p+8+size > len(out) {
			return out
		}
		p += 8 + size + size%2
	}
	return out
}

// close stops baresip (SIGTERM lets it hang up and finish its recordings) and reaps it.
func (b *Baresip) close() {
	if b.conn != nil {
		b.conn.Close()
		<-b.readEnd
	}
	b.proc.Stop(3 * time.Second)
}
