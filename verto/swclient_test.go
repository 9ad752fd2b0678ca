package verto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// This file runs the real @signalwire/js 1.5.0 Verto client in Chromium against the server.
// The media peer on the server side is a small pion echo in the test (the media engine is
// integrated later): it proves the signalling carries working SDP both ways, and the audio
// check proves it with the browser's own tone coming back.

// pionEcho answers or offers with pion and sends every RTP packet it receives back.
type pionEcho struct {
	api *webrtc.API
	rec *recorder

	mu  sync.Mutex
	pcs []*webrtc.PeerConnection
	pc  *webrtc.PeerConnection
	rx  atomic.Int64 // RTP packets received from the browser (all PCs)
}

func newPionEcho(rec *recorder) *pionEcho {
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	return &pionEcho{api: webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)), rec: rec}
}

// newPC makes a PeerConnection whose outgoing audio track echoes the incoming one.
func (p *pionEcho) newPC() (*webrtc.PeerConnection, error) {
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "echo")
	if err != nil {
		return nil, err
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return nil, err
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			p.rx.Add(1)
			_ = track.WriteRTP(pkt)
		}
	})
	p.mu.Lock()
	if p.pc != nil {
		_ = p.pc.Close() // the old leg of a re-attached call
	}
	p.pc = pc
	p.pcs = append(p.pcs, pc)
	p.mu.Unlock()
	return pc, nil
}

func localSDP(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return "", errors.New("ICE gathering timeout")
	}
	return pc.LocalDescription().SDP, nil
}

func (p *pionEcho) answer(offer string) (string, error) {
	pc, err := p.newPC()
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	return localSDP(pc, ans)
}

func (p *pionEcho) offer() (string, error) {
	pc, err := p.newPC()
	if err != nil {
		return "", err
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	return localSDP(pc, o)
}

func (p *pionEcho) setAnswer(sdp string) error {
	p.mu.Lock()
	pc := p.pc
	p.mu.Unlock()
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

func (p *pionEcho) close() {
	p.mu.Lock()
	pcs := p.pcs
	p.pcs, p.pc = nil, nil
	p.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.Close()
	}
}

// CallEvents, Recoverable and OutboundEvents, recorded.
func (p *pionEcho) DTMF(d string)    { p.rec.DTMF(d) }
func (p *pionEcho) Hold(h bool)      { p.rec.Hold(h) }
func (p *pionEcho) Hangup(c Cause)   { p.rec.Hangup(c) }
func (p *pionEcho) Rejected(c Cause) { p.rec.Rejected(c) }
func (p *pionEcho) Detached()        { p.rec.Detached() }
func (p *pionEcho) ReattachOffer(context.Context) (string, error) {
	p.rec.put("reattach-offer")
	return p.offer()
}
func (p *pionEcho) Reattached(_ context.Context, sdp string) error {
	p.rec.put("reattached")
	return p.setAnswer(sdp)
}
func (p *pionEcho) Answered(_ *Call, sdp string) error {
	p.rec.put("answered")
	return p.setAnswer(sdp)
}

// echoHandler answers "echo" with a pion echo (asynchronously, as the router will), and
// leaves other destinations ringing.
type echoHandler struct {
	calls chan *echoCall
}

type echoCall struct {
	inv  Invite
	call *Call
	echo *pionEcho
}

func (h *echoHandler) HandleInvite(_ context.Context, inv Invite, call *Call) (CallEvents, error) {
	p := newPionEcho(newRecorder())
	if inv.Destination == "echo" {
		go func() {
			ans, err := p.answer(inv.SDP)
			if err != nil {
				_ = call.Hangup(CauseIncompatibleDestination)
				return
			}
			_ = call.Answer(ans)
		}()
	}
	h.calls <- &echoCall{inv: inv, call: call, echo: p}
	return p, nil
}

// swPage is the test page: it rewrites every local SDP the Verto client reads to loopback
// (nkb.loopbackSDP, as real-peers.md requires) and loads the SW bundle.
const swPage = `<!doctype html><html><head><meta charset="utf-8"><title>verto sw</title>
<script>
(function () {
  const d = Object.getOwnPropertyDescriptor(RTCPeerConnection.prototype, "localDescription");
  Object.defineProperty(RTCPeerConnection.prototype, "localDescription", {
    configurable: true,
    get() {
      const v = d.get.call(this);
      if (!v) return v;
      return new RTCSessionDescription({ type: v.type, sdp: nkb.loopbackSDP(v.sdp) });
    },
  });
})();
</script>
<script src="/assets/verto.min.js"></script></head><body></body></html>`

// swConnect makes a Verto client, logs in and records call updates in window.states.
const swConnect = `async ({url, login, passwd}) => {
  window.states = [];
  window.notes = [];
  const client = new Verto({ host: url, login, passwd });
  window.client = client;
  client.on("signalwire.notification", (n) => {
    window.notes.push(n.type);
    if (n.type === "callUpdate") { window.call = n.call; window.states.push(n.call.state); }
  });
  await new Promise((resolve, reject) => {
    client.on("signalwire.ready", resolve);
    client.on("signalwire.error", (e) => reject(new Error("verto error: " + JSON.stringify(e))));
    client.connect();
  });
  await client.setAudioSettings({ echoCancellation: false, noiseSuppression: false, autoGainControl: false });
  return localStorage.getItem("@signalwire:sessId") || client.sessionid || "";
}`

const swMeasure = `async (tone) => {
  let s = window.call.options.remoteStream;
  window.hadRemoteStream = !!s;
  if (!s) s = new MediaStream(window.call.peer.instance.getReceivers().map((r) => r.track));
  if (!window.playing) { window.playing = nkb.playRemote(s); }
  return await nkb.measureAudio(s, { ms: 1500, freqs: [tone] });
}`

type swAudio struct {
	DominantHz float64            `json:"dominantHz"`
	DominantDb float64            `json:"dominantDb"`
	Levels     map[string]float64 `json:"levels"`
}

type swEnv struct {
	t       *testing.T
	srv     *Server
	ts      *httptest.Server
	handler *echoHandler
	br      *browsertest.Browser
	page    *browsertest.Page
	ctx     context.Context
	tone    float64
}

func newSWEnv(t *testing.T, cfg Config) *swEnv {
	t.Helper()
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 880})
	h := &echoHandler{calls: make(chan *echoCall, 8)}
	log := slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, testAuth{"alice": "secret"}, h, log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, swPage)
	})
	mux.Handle("/assets/", http.StripPrefix("/assets", browsertest.Assets(t)))
	mux.Handle("/verto", srv) // same origin as the page
	ts := httptest.NewServer(mux)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	e := &swEnv{t: t, srv: srv, ts: ts, handler: h, br: br, ctx: ctx, tone: br.ToneHz()}
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
		cancel()
	})
	e.page = br.NewPage(ctx, ts.URL+"/page")
	return e
}

func (e *swEnv) wsURL() string { return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/verto" }

func (e *swEnv) connect() string {
	e.t.Helper()
	var sessid string
	if err := e.page.EvalArg(e.ctx, swConnect, map[string]string{"url": e.wsURL(), "login": "alice@nkbridge", "passwd": "secret"}, &sessid); err != nil {
		e.t.Fatalf("SW login: %v\n%s", err, strings.Join(e.page.Console(), "\n"))
	}
	return sessid
}

func (e *swEnv) waitState(state string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	if err := e.page.WaitFor(ctx, fmt.Sprintf(`window.call && window.call.state === %q`, state), nil); err != nil {
		var states any
		_ = e.page.Eval(e.ctx, `window.states`, &states)
		e.t.Fatalf("call state %q not reached (states %v): %v\n%s", state, states, err, strings.Join(e.page.Console(), "\n"))
	}
}

func (e *swEnv) nextCall() *echoCall {
	e.t.Helper()
	select {
	case c := <-e.handler.calls:
		e.t.Cleanup(c.echo.close)
		return c
	case <-time.After(15 * time.Second):
		e.t.Fatal("no verto.invite reached the handler")
		return nil
	}
}

// hearsOwnTone checks the browser receives its own tone back through the echo.
func (e *swEnv) hearsOwnTone(echo *pionEcho) {
	e.t.Helper()
	var a swAudio
	if err := e.page.EvalArg(e.ctx, swMeasure, e.tone, &a); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("remote audio: dominant %.0f Hz at %.1f dB; echo received %d packets", a.DominantHz, a.DominantDb, echo.rx.Load())
	if math.Abs(a.DominantHz-e.tone) > 30 || a.DominantDb < -70 {
		e.t.Fatalf("browser did not hear its %v Hz tone back: %+v", e.tone, a)
	}
	if echo.rx.Load() < 20 {
		e.t.Fatalf("echo got only %d packets", echo.rx.Load())
	}
}

func TestSWClientCallsEchoDTMFHoldHangup(t *testing.T) {
	e := newSWEnv(t, Config{})
	sessid := e.connect()
	if len(sessid) != 36 || len(e.srv.Sessions("alice")) != 1 || e.srv.Sessions("alice")[0] != sessid {
		t.Fatalf("SW stored sessid %q, server has %v", sessid, e.srv.Sessions("alice"))
	}
	if err := e.page.Eval(e.ctx, `(window.client.newCall({ destinationNumber: "echo", audio: true, video: false }), true)`, nil); err != nil {
		t.Fatal(err)
	}
	ec := e.nextCall()
	if ec.inv.Destination != "echo" || ec.inv.User != "alice" || ec.inv.SessionID != sessid || !strings.Contains(ec.inv.SDP, "a=candidate:") {
		t.Fatalf("invite from SW: %+v", ec.inv)
	}
	e.waitState("active")
	e.hearsOwnTone(ec.echo)

	// DTMF from the SW call reaches the handler.
	if err := e.page.Eval(e.ctx, `window.call.dtmf("5"), true`, nil); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "dtmf:5")
	// Hold and unhold: the SW call follows holdState.
	if err := e.page.Eval(e.ctx, `window.call.hold().then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "hold:true")
	e.waitState("held")
	if err := e.page.Eval(e.ctx, `window.call.unhold().then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "hold:false")
	e.waitState("active")
	// Hangup from the client.
	if err := e.page.Eval(e.ctx, `window.call.hangup(), true`, nil); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "hangup:NORMAL_CLEARING")
	peers.WaitFor(t, 5*time.Second, "call gone", func() bool { e.srv.mu.Lock(); defer e.srv.mu.Unlock(); return len(e.srv.calls) == 0 })

	// A second call, hung up by the server this time.
	if err := e.page.Eval(e.ctx, `(window.client.newCall({ destinationNumber: "echo", audio: true, video: false }), true)`, nil); err != nil {
		t.Fatal(err)
	}
	ec2 := e.nextCall()
	e.waitState("active")
	if err := ec2.call.Hangup(CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.page.WaitFor(ctx, `window.states.slice(-3).includes("hangup") || window.states.slice(-3).includes("destroy")`, nil); err != nil {
		t.Fatalf("SW did not hang up on verto.bye: %v", err)
	}
	ec2.echo.rec.none(t, 200*time.Millisecond) // SW sends no bye back
}

func TestSWClientIsCalledAnswers(t *testing.T) {
	e := newSWEnv(t, Config{})
	e.connect()
	echo := newPionEcho(newRecorder())
	t.Cleanup(echo.close)
	offer, err := echo.offer()
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.srv.Invite(e.ctx, OutboundRequest{User: "alice", SDP: offer, CallerIDName: "Bob", CallerIDNumber: "2000", CalleeIDNumber: "1000"}, echo)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState("ringing")
	var who struct {
		Name   string `json:"name"`
		Number string `json:"number"`
	}
	if err := e.page.Eval(e.ctx, `({ name: window.call.options.remoteCallerName, number: window.call.options.remoteCallerNumber })`, &who); err != nil {
		t.Fatal(err)
	}
	if who.Name != "Bob" || who.Number != "2000" {
		t.Fatalf("SW shows caller %+v", who)
	}
	if err := e.page.Eval(e.ctx, `window.call.answer(), true`, nil); err != nil {
		t.Fatal(err)
	}
	echo.rec.expect(t, "answered")
	e.waitState("active")
	if o.Call() == nil {
		t.Fatal("no winner")
	}
	e.hearsOwnTone(echo)
	o.Cancel(CauseNormalClearing)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.page.WaitFor(ctx, `window.states.includes("hangup") || window.states.includes("destroy")`, nil); err != nil {
		t.Fatalf("SW did not hang up: %v", err)
	}
}

func TestSWClientRejectsCall(t *testing.T) {
	e := newSWEnv(t, Config{})
	e.connect()
	echo := newPionEcho(newRecorder())
	t.Cleanup(echo.close)
	offer, err := echo.offer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Invite(e.ctx, OutboundRequest{User: "alice", SDP: offer, CallerIDName: "Bob", CallerIDNumber: "2000"}, echo); err != nil {
		t.Fatal(err)
	}
	e.waitState("ringing")
	if err := e.page.Eval(e.ctx, `window.call.hangup(), true`, nil); err != nil {
		t.Fatal(err)
	}
	echo.rec.expect(t, "rejected:NORMAL_CLEARING")
}

func TestSWClientReloadReattaches(t *testing.T) {
	e := newSWEnv(t, Config{DetachGrace: 30 * time.Second})
	sessid := e.connect()
	if err := e.page.Eval(e.ctx, `(window.client.newCall({ destinationNumber: "echo", audio: true, video: false }), true)`, nil); err != nil {
		t.Fatal(err)
	}
	ec := e.nextCall()
	e.waitState("active")

	// Page reload: the socket goes, the call is kept, the new page logs in with the stored
	// sessid, gets verto.attach with a fresh offer and answers it.
	if err := e.page.Goto(e.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "detached")
	again := e.connect()
	if again != sessid {
		t.Fatalf("SW came back with sessid %q, want %q", again, sessid)
	}
	ec.echo.rec.expect(t, "reattach-offer")
	ec.echo.rec.expect(t, "reattached")
	e.waitState("active")
	var callID string
	if err := e.page.Eval(e.ctx, `window.call.id`, &callID); err != nil {
		t.Fatal(err)
	}
	if callID != ec.inv.CallID {
		t.Fatalf("re-attached call %q, want %q", callID, ec.inv.CallID)
	}
	before := ec.echo.rx.Load()
	e.hearsOwnTone(ec.echo)
	if ec.echo.rx.Load() <= before {
		t.Fatal("no media after re-attach")
	}
	if err := e.page.Eval(e.ctx, `window.call.hangup(), true`, nil); err != nil {
		t.Fatal(err)
	}
	ec.echo.rec.expect(t, "hangup:NORMAL_CLEARING")
}

func TestSWClientTwoTabsRingFirstAnswerWins(t *testing.T) {
	e := newSWEnv(t, Config{})
	sidA := e.connect()
	tabA := e.page

	// A second tab of the same origin shares localStorage, so SW reuses the stored sessid
	// and the server punts the first tab (mod_verto behaviour, verto.md §1.4 and §12).
	tabB := e.br.NewPage(e.ctx, e.ts.URL+"/page")
	e.page = tabB
	if sid := e.connect(); sid != sidA {
		t.Fatalf("second tab logged in with sessid %q, want the stored %q", sid, sidA)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := tabA.WaitFor(ctx, `!window.client.connected`, nil); err != nil {
		t.Fatalf("first tab was not punted: %v", err)
	}
	if got := e.srv.Sessions("alice"); len(got) != 1 {
		t.Fatalf("sessions %v", got)
	}

	// With its own sessid (storage cleared first), tab A is a second login of alice.
	e.page = tabA
	if err := tabA.Eval(e.ctx, `localStorage.clear(), true`, nil); err != nil {
		t.Fatal(err)
	}
	if sid := e.connect(); sid == sidA {
		t.Fatal("tab A should have a new sessid")
	}
	if got := e.srv.Sessions("alice"); len(got) != 2 {
		t.Fatalf("sessions %v", got)
	}

	echo := newPionEcho(newRecorder())
	t.Cleanup(echo.close)
	offer, err := echo.offer()
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.srv.Invite(e.ctx, OutboundRequest{User: "alice", SDP: offer, CallerIDName: "Bob", CallerIDNumber: "2000"}, echo)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*browsertest.Page{tabA, tabB} {
		e.page = p
		e.waitState("ringing")
	}
	// Tab B answers; tab A stops ringing (verto.bye LOSE_RACE).
	if err := tabB.Eval(e.ctx, `window.call.answer(), true`, nil); err != nil {
		t.Fatal(err)
	}
	echo.rec.expect(t, "answered")
	e.page = tabB
	e.waitState("active")
	if err := tabA.WaitFor(ctx, `window.states.includes("hangup") || window.states.includes("destroy")`, nil); err != nil {
		t.Fatalf("losing tab kept ringing: %v", err)
	}
	e.hearsOwnTone(echo)
	if o.Call() == nil {
		t.Fatal("no winner")
	}
	echo.rec.none(t, 100*time.Millisecond)
}
