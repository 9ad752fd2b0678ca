// Package browsertest drives Debian's Chromium from Go tests through playwright-core, with the
// loopback-only flags of shared/notes/real-peers.md, a fake microphone playing a per-browser
// tone, and the browser-side helpers of testdata/browser/rtc-helpers.js (window.nkb) injected
// into every page.
//
// A Node process (testdata/browser/driver.mjs) speaks line-delimited JSON with the Go side:
//
//	b := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
//	p := b.NewPage(ctx, srv.URL+"/page.html")       // URL must use an IP literal (127.0.0.1)
//	var res struct{ DominantHz float64 }
//	err := p.Eval(ctx, `(async () => { ... return await nkb.measureAudio(stream) })()`, &res)
//	err = p.EvalArg(ctx, `(offer) => answer(offer)`, offer, &answer)
//	err = p.WaitFor(ctx, `window.done === true`, nil)
//	err = p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "page.png"))
//
// Launch skips the test (or fails it when NKB_REQUIRE_PEERS=1) when chromium, node or
// node_modules/playwright-core is missing; scripts/test.sh installs them. Browser, driver and
// every Chromium process are killed and reaped by t.Cleanup.
//
// The network rule: pages must load from 127.0.0.1 (names other than localhost resolve to
// nothing), SDP must go through nkb.loopbackSDP / nkb.localSDP / nkb.candidateInit before it
// leaves the page (host candidates rewritten to 127.0.0.1, IPv6/TCP/others dropped), and
// RTCPeerConnections get no ICE servers (nkb.newPC).
//
// Options.LoopbackPC patches RTCPeerConnection in every page (nkb.installLoopbackPC) for
// libraries that do their own signalling, such as the Verto client and sip.js.
//
// window.nkb (see testdata/browser/rtc-helpers.js for details):
//
//	getUserMedia(opts)               microphone with echoCancellation/noiseSuppression/AGC off
//	newPC(config)                    RTCPeerConnection with no ICE servers
//	loopbackSDP(sdp)                 c= and host candidates -> 127.0.0.1; IPv6/TCP/srflx dropped
//	candidateInit(c)                 the same for one trickled candidate (null = drop it)
//	waitIceComplete(pc, ms)          resolves when gathering is complete
//	localSDP(pc, ms)                 {type, sdp}: gathered, rewritten local description
//	installLoopbackPC()              patch RTCPeerConnection (see above)
//	playRemote(stream)               plays it in an <audio autoplay> element
//	keepLastStream(pc)               pc.nkbLastStream: the stream of the last ontrack event
//	heardStream(stream, pc, freqs, ms) plays and measures stream: {audio, stats} (Heard); throws
//	                                  when there is no stream or no audio track in it
//	measureAudio(stream, {ms, freqs}) FFT: {dominantHz, dominantDb, rmsDb, binHz, levels{hz: dB}}
//	audioStats(pc)                   {packetsReceived, packetsSent, bytes*, packetsLost, jitter,
//	                                  audioLevel, totalAudioEnergy, codec}
//	waitFor(fn, ms), sleep(ms)
//	new ApiClient(url, {onEvent, onRequest, onClose})   control API client: open(), login(user,
//	                                  pass), send(class, subclass, cmd, data) -> data | throws
//	                                  Error{code}, waitEvent(match), events[], close()
//
// Assets serves rtc-helpers.js, sip.js (as ES modules) and the Verto client bundle to pages.
package browsertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// Options configures a browser.
type Options struct {
	// ToneHz is the frequency of the sine the fake microphone plays (default 1000). Give each
	// party of a call its own tone so the direction of audio can be proven.
	ToneHz float64
	// ToneAmplitude is the tone's peak amplitude, 0..32767 (default 8000, about -12 dBFS).
	ToneAmplitude float64
	// AudioFile, if set, is a 16-bit PCM WAV the fake microphone plays instead of a tone.
	AudioFile string
	// ExtraArgs are appended to Chromium's command line. Use ExtraDisableFeatures for
	// features: a second --disable-features switch would cancel the first.
	ExtraArgs []string
	// ExtraDisableFeatures are added to the single merged --disable-features list.
	ExtraDisableFeatures []string
	// NoHelpers leaves window.nkb (rtc-helpers.js) out of pages.
	NoHelpers bool
	// LoopbackPC calls nkb.installLoopbackPC() at the start of every page, so libraries that
	// create their own RTCPeerConnection (Verto, sip.js) send only loopback candidates.
	LoopbackPC bool
	// Logger receives driver output and page console lines; default: t.Log.
	Logger *slog.Logger
}

// LoopbackArgs returns the Chromium switches every test browser gets (besides --headless and
// --user-data-dir, which playwright adds, and the per-browser fake audio file). They keep
// Chromium off the network: no DNS (host-resolver-rules), no QUIC, no background services,
// one WebRTC socket on the any-address whose host candidate pages rewrite to 127.0.0.1.
func LoopbackArgs() []string {
	return []string{
		"--no-sandbox",
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-default-apps",
		"--disable-extensions",
		"--disable-domain-reliability",
		"--disable-client-side-phishing-detection",
		"--no-pings",
		"--use-fake-device-for-media-stream",
		"--use-fake-ui-for-media-stream",
		"--allow-loopback-in-peer-connection",
		"--autoplay-policy=no-user-gesture-required",
		"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
		"--webrtc-ip-handling-policy=default_public_and_private_interfaces",
	}
}

// LoopbackDisabledFeatures returns the features merged with playwright-core's own list into
// the one --disable-features switch (Chromium honours only the last one).
func LoopbackDisabledFeatures() []string {
	return []string{
		"WebRtcHideLocalIpsWithMdns",
		"OptimizationHints",
		"NetworkTimeServiceQuerying",
		"Translate",
		"MediaRouter",
		"DialMediaRouteProvider",
		"OptimizationGuideModelDownloading",
		"AutofillServerCommunication",
		"CertificateTransparencyComponentUpdater",
	}
}

// Browser is one Chromium instance with its own profile and fake microphone.
type Browser struct {
	t       testing.TB
	log     *slog.Logger
	proc    *peers.Process
	stdin   io.WriteCloser
	toneHz  float64
	dir     string
	pid     int
	cmdline []string

	wmu     sync.Mutex // serialises writes to stdin
	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan reply
	console map[int][]string
	exited  chan struct{}

	closeOnce sync.Once
}

type reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

type inbound struct {
	ID    *int64 `json:"id"`
	Event string `json:"event"`
	Page  int    `json:"page"`
	Type  string `json:"type"`
	Text  string `json:"text"`
	reply
}

// executable prefers the real binary over Debian's /usr/bin/chromium wrapper script, which
// sources /etc/chromium.d (Google API keys, remote extensions) and adds flags of its own.
func executable(t testing.TB) string {
	const real = "/usr/lib/chromium/chromium"
	wrapper := peers.Need(t, "chromium")
	if st, err := os.Stat(real); err == nil && st.Mode()&0o111 != 0 {
		return real
	}
	return wrapper
}

// Launch starts a browser for the test. It skips or fails (NKB_REQUIRE_PEERS=1) when the
// tools are missing, and fails the test when the browser cannot start. Call it from the test
// goroutine. t.Cleanup closes the browser and kills every process it started.
func Launch(t testing.TB, opts Options) *Browser {
	t.Helper()
	root := peers.RepoRoot(t)
	exe := executable(t)
	node := peers.Need(t, "node")
	peers.NeedFile(t, filepath.Join(root, "node_modules", "playwright-core", "package.json"), "npm ci at the repository root")
	driver := filepath.Join(root, "testdata", "browser", "driver.mjs")
	helpersJS, err := os.ReadFile(filepath.Join(root, "testdata", "browser", "rtc-helpers.js"))
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}

	log := opts.Logger
	if log == nil {
		log = peers.TestLogger(t)
	}
	dir := t.TempDir()
	if opts.ToneHz == 0 {
		opts.ToneHz = 1000
	}
	if opts.ToneAmplitude == 0 {
		opts.ToneAmplitude = 8000
	}
	wav := opts.AudioFile
	if wav != "" {
		if wav, err = filepath.Abs(wav); err != nil { // Chromium runs in the repository root
			t.Fatalf("browsertest: %v", err)
		}
	} else {
		wav = filepath.Join(dir, "tone.wav")
		// 5 s of tone: a whole number of periods for any integer frequency, so the loop that
		// Chromium plays has no click at the seam.
		const rate = 48000
		if err := audiotest.WriteWAV(wav, audiotest.Tone(opts.ToneHz, rate, 5*rate, opts.ToneAmplitude), rate); err != nil {
			t.Fatalf("browsertest: write tone: %v", err)
		}
	}
	profile := filepath.Join(dir, "profile")

	cmd := exec.Command(node, driver)
	cmd.Dir = root
	// Chromium's crash handler (a detached process) keeps its database under the config
	// home: keep that inside the test's directory too, where Close can find it.
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1",
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	b := &Browser{
		t:       t,
		log:     log,
		stdin:   stdin,
		toneHz:  opts.ToneHz,
		dir:     dir,
		pending: map[int64]chan reply{},
		console: map[int][]string{},
		exited:  make(chan struct{}),
	}
	// The driver's stdout carries the protocol: read it here, not through peers' logging.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	cmd.Stdout = pw
	proc, err := peers.StartProcess(t, "browser-driver", cmd, log)
	pw.Close()
	if err != nil {
		pr.Close()
		t.Fatalf("browsertest: %v", err)
	}
	go b.readLoop(pr)
	b.proc = proc
	t.Cleanup(b.Close)

	args := append(LoopbackArgs(), "--use-file-for-fake-audio-capture="+wav)
	args = append(args, opts.ExtraArgs...)
	req := map[string]any{
		"op":              "launch",
		"executablePath":  exe,
		"userDataDir":     profile,
		"args":            args,
		"disableFeatures": append(LoopbackDisabledFeatures(), opts.ExtraDisableFeatures...),
		"permissions":     []string{"microphone", "camera", "local-network-access"},
		"timeoutMs":       60000,
	}
	switch {
	case opts.NoHelpers:
	case opts.LoopbackPC:
		req["initScript"] = "window.nkbAutoLoopbackPC = true;\n" + string(helpersJS)
	default:
		req["initScript"] = string(helpersJS)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var res struct {
		Pid                        int      `json:"pid"`
		Cmdline                    []string `json:"cmdline"`
		PlaywrightDisabledFeatures []string `json:"playwrightDisabledFeatures"`
	}
	if err := b.call(ctx, req, &res); err != nil {
		t.Fatalf("browsertest: launch chromium: %v\n%s", err, proc.Output())
	}
	b.pid, b.cmdline = res.Pid, res.Cmdline
	if err := CheckCommandLine(res.Cmdline, append(res.PlaywrightDisabledFeatures, LoopbackDisabledFeatures()...), wav); err != nil {
		t.Fatalf("browsertest: unsafe chromium command line: %v\n%q", err, res.Cmdline)
	}
	log.Debug("chromium launched", "pid", b.pid, "tone_hz", opts.ToneHz)
	return b
}

// CheckCommandLine verifies a Chromium command line carries every loopback switch, the fake
// audio file and exactly one --disable-features holding all of features.
func CheckCommandLine(cmdline []string, features []string, wav string) error {
	var df []string
	for _, a := range cmdline {
		if v, ok := strings.CutPrefix(a, "--disable-features="); ok {
			df = append(df, v)
		}
	}
	if len(df) != 1 {
		return fmt.Errorf("%d --disable-features switches (Chromium honours only the last); "+
			"playwright-core's default list changed? update PLAYWRIGHT_DISABLED_FEATURES in testdata/browser/driver.mjs", len(df))
	}
	have := strings.Split(df[0], ",")
	for _, f := range features {
		if !slices.Contains(have, f) {
			return fmt.Errorf("--disable-features lacks %s", f)
		}
	}
	want := append(LoopbackArgs(), "--use-file-for-fake-audio-capture="+wav, "--headless")
	for _, w := range want {
		if !slices.Contains(cmdline, w) {
			return fmt.Errorf("missing switch %s", w)
		}
	}
	return nil
}

// Leftovers lists live processes (other than the test binary) whose command line names this
// browser's private directory: empty after Close.
func (b *Browser) Leftovers() []int { return peers.Matching(b.dir) }

// Pid is the Chromium browser process id (also its process group id).
func (b *Browser) Pid() int { return b.pid }

// CommandLine is Chromium's real command line, read from /proc after launch.
func (b *Browser) CommandLine() []string { return slices.Clone(b.cmdline) }

// ToneHz is the frequency of this browser's fake microphone.
func (b *Browser) ToneHz() float64 { return b.toneHz }

func (b *Browser) readLoop(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for s.Scan() {
		var m inbound
		if err := json.Unmarshal(s.Bytes(), &m); err != nil {
			b.log.Warn("driver: unparsable line", "line", s.Text())
			continue
		}
		if m.ID != nil {
			b.mu.Lock()
			ch := b.pending[*m.ID]
			delete(b.pending, *m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m.reply
			}
			continue
		}
		line := fmt.Sprintf("[%s] %s", m.Type, m.Text)
		if m.Event != "console" {
			line = fmt.Sprintf("[%s] %s", m.Event, m.Text)
		}
		b.mu.Lock()
		if len(b.console[m.Page]) < 10000 {
			b.console[m.Page] = append(b.console[m.Page], line)
		}
		b.mu.Unlock()
		b.log.Info("page", "page", m.Page, "msg", line)
	}
	_, _ = io.Copy(io.Discard, r)
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	close(b.exited)
}

// call sends one request and decodes the result into out (if non-nil).
func (b *Browser) call(ctx context.Context, req map[string]any, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan reply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	if dl, ok := ctx.Deadline(); ok {
		if _, set := req["timeoutMs"]; !set {
			req["timeoutMs"] = max(1, time.Until(dl).Milliseconds())
		}
	}
	req["id"] = id
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	_, err = b.stdin.Write(append(line, '\n'))
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("browsertest: driver gone: %w", err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			return fmt.Errorf("browsertest: %s: %s", req["op"], r.Error)
		}
		if out != nil && len(r.Result) > 0 {
			if err := json.Unmarshal(r.Result, out); err != nil {
				return fmt.Errorf("browsertest: %s: decode result %s: %w", req["op"], truncate(r.Result), err)
			}
		}
		return nil
	case <-b.exited:
		return errors.New("browsertest: driver exited")
	case <-ctx.Done():
		return fmt.Errorf("browsertest: %s: %w", req["op"], ctx.Err())
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// NewPage opens a page at url (skip url with "" for about:blank) and waits for its load event.
// It fails the test on error; call it from the test goroutine.
func (b *Browser) NewPage(ctx context.Context, url string) *Page {
	b.t.Helper()
	p, err := b.OpenPage(ctx, url)
	if err != nil {
		b.t.Fatalf("%v", err)
	}
	return p
}

// OpenPage is NewPage returning the error instead of failing the test.
func (b *Browser) OpenPage(ctx context.Context, url string) (*Page, error) {
	var res struct {
		Page int `json:"page"`
	}
	if err := b.call(ctx, map[string]any{"op": "newPage", "url": url}, &res); err != nil {
		return nil, err
	}
	return &Page{b: b, id: res.Page}, nil
}

// Close closes the browser and kills the driver, Chromium and all their processes. t.Cleanup
// calls it; calling it earlier is fine.
func (b *Browser) Close() {
	b.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := b.call(ctx, map[string]any{"op": "close"}, nil)
		cancel()
		if err != nil {
			b.log.Warn("browsertest: close", "err", err)
		}
		_ = b.stdin.Close()
		b.proc.Stop(5 * time.Second)
		if b.pid > 0 {
			peers.KillGroup(b.pid) // chromium is its own process group leader
		}
		// Detached helpers (the crash handler runs in a session of its own) name the test's
		// directory on their command line.
		peers.KillMatching(b.dir)
	})
}

// Page is one tab.
type Page struct {
	b  *Browser
	id int
}

// Eval evaluates js in the page and decodes its JSON result into out (nil to discard). js is
// an expression; a Promise is awaited; if it evaluates to a function, that is called with no
// arguments. Results must be JSON-serialisable.
func (p *Page) Eval(ctx context.Context, js string, out any) error {
	return p.b.call(ctx, map[string]any{"op": "eval", "page": p.id, "expr": js}, out)
}

// EvalArg evaluates fn, a function expression such as `async (x) => ...`, with arg
// (JSON-encoded) as its argument, and decodes the result into out.
func (p *Page) EvalArg(ctx context.Context, fn string, arg, out any) error {
	return p.b.call(ctx, map[string]any{"op": "eval", "page": p.id, "expr": fn, "arg": arg, "hasArg": true}, out)
}

// WaitFor polls the expression js in the page (every 100 ms) until it is truthy or ctx ends,
// and decodes its last value into out (nil to discard).
func (p *Page) WaitFor(ctx context.Context, js string, out any) error {
	return p.b.call(ctx, map[string]any{"op": "waitFor", "page": p.id, "expr": js}, out)
}

// Goto navigates the page to url and waits for the load event.
func (p *Page) Goto(ctx context.Context, url string) error {
	return p.b.call(ctx, map[string]any{"op": "goto", "page": p.id, "url": url}, nil)
}

// SetViewport resizes the page's viewport (CSS pixels), e.g. 390×844 for a phone.
func (p *Page) SetViewport(ctx context.Context, width, height int) error {
	return p.b.call(ctx, map[string]any{"op": "viewport", "page": p.id, "width": width, "height": height}, nil)
}

// Screenshot saves a PNG of the page to path.
func (p *Page) Screenshot(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return p.b.call(ctx, map[string]any{"op": "screenshot", "page": p.id, "path": abs, "fullPage": true}, nil)
}

// Close closes the page.
func (p *Page) Close(ctx context.Context) error {
	return p.b.call(ctx, map[string]any{"op": "closePage", "page": p.id}, nil)
}

// Console returns the page's console messages and errors so far, as "[type] text".
func (p *Page) Console() []string {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return slices.Clone(p.b.console[p.id])
}

// ArtifactDir returns test-artifacts/<test name>/ under the repository root (git-ignored),
// the place for screenshots a person may look at after a run.
func ArtifactDir(t testing.TB) string { return peers.ArtifactDir(t) }
