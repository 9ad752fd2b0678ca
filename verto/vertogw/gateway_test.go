package vertogw

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
	"github.com/nkbridge/nkbridge/verto/vertotest"
)

// fakeSDP is enough for p2p sessions (the core does not parse SDP without a media backend).
const fakeSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"

func (e *env) dial(user string) *vertotest.Client {
	e.t.Helper()
	ctx := testCtx(e.t, 10*time.Second)
	c, err := vertotest.Dial(ctx, e.vertoURL(), nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	m, err := c.LoginSW(ctx, user+"@nkbridge", testPassword)
	if err != nil || m.Code() != 0 {
		e.t.Fatalf("login %s: %v %+v", user, err, m)
	}
	return c
}

// next waits for the next server request of method on c.
func next(t *testing.T, c *vertotest.Client, method string) *vertotest.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Next(ctx, method)
	if err != nil {
		t.Fatalf("waiting for %s: %v (pending %v)", method, err, c.Pending())
	}
	return m
}

func errCause(m *vertotest.Message) string {
	s, _ := m.Error["cause"].(string)
	return s
}

// testInvitee is a scripted callee for the router: it records what it is told and does what
// the test asks through its handle.
type testInvitee struct {
	mu       sync.Mutex
	inv      signaling.Invitation
	h        signaling.InviteHandle
	hangups  []*signaling.Error
	invited  chan struct{}
	onInvite func(inv signaling.Invitation, h signaling.InviteHandle)
}

func newTestInvitee() *testInvitee { return &testInvitee{invited: make(chan struct{}, 8)} }

func (ti *testInvitee) Resolve(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	return []signaling.Invitee{ti}, nil
}

func (ti *testInvitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	ti.mu.Lock()
	ti.inv, ti.h = inv, h
	f := ti.onInvite
	ti.mu.Unlock()
	ti.invited <- struct{}{}
	if f != nil {
		go f(inv, h)
	}
	return nil
}

func (ti *testInvitee) Hangup(err *signaling.Error) {
	ti.mu.Lock()
	ti.hangups = append(ti.hangups, err)
	ti.mu.Unlock()
}

func (ti *testInvitee) handle() (signaling.Invitation, signaling.InviteHandle) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.inv, ti.h
}

func (ti *testInvitee) hangupCodes() []int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	var out []int
	for _, e := range ti.hangups {
		out = append(out, e.Code)
	}
	return out
}

func waitInvited(t *testing.T, ti *testInvitee) {
	t.Helper()
	select {
	case <-ti.invited:
	case <-time.After(10 * time.Second):
		t.Fatal("the test invitee was not invited")
	}
}

// observer records a call's progress as the core reports it.
type observer struct{ ch chan string }

func newObserver() *observer                                { return &observer{ch: make(chan string, 16)} }
func (o *observer) CallRinging(_ string, a signaling.Desc)  { o.ch <- "ringing" }
func (o *observer) CallAnswered(_ string, a signaling.Desc) { o.ch <- "answered:" + a.SDP() }
func (o *observer) CallHangup(_ string, err *signaling.Error) {
	o.ch <- fmt.Sprintf("hangup:%d", err.Code)
}

func (o *observer) expect(t *testing.T, want string) {
	t.Helper()
	for {
		select {
		case got := <-o.ch:
			if got == want {
				return
			}
			if got == "ringing" && want != "ringing" {
				continue
			}
			t.Fatalf("call event %q, want %q", got, want)
		case <-time.After(10 * time.Second):
			t.Fatalf("call event %q did not come", want)
		}
	}
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	users := testUsers(t, []string{"alice"})
	a := NewAuth(users, nil)
	if u, err := a.Authenticate(ctx, verto.Credentials{User: "alice", Password: testPassword}); err != nil || u != "alice" {
		t.Fatalf("alice: %q %v", u, err)
	}
	for _, cr := range []verto.Credentials{
		{User: "alice", Password: "wrong"}, {User: "alice"}, {User: "mallory", Password: testPassword},
		{User: "", Password: "x"}, {User: "a b", Password: "x"}, {User: strings.Repeat("a", 200), Password: "x"},
	} {
		if _, err := a.Authenticate(ctx, cr); err == nil {
			t.Fatalf("%+v accepted", cr)
		}
	}
	open := NewAuth(nil, nil)
	if u, err := open.Authenticate(ctx, verto.Credentials{User: "anyone", Password: ""}); err != nil || u != "anyone" || !open.Open() {
		t.Fatalf("open auth: %q %v", u, err)
	}
	if _, err := open.Authenticate(ctx, verto.Credentials{User: "bad name"}); err == nil {
		t.Fatal("open auth accepted an invalid user name")
	}
	for addr, ok := range map[string]bool{"127.0.0.1:8081": true, "[::1]:8081": true, "localhost:1": true, "0.0.0.0:8081": false, "192.0.2.2:8081": false, ":8081": false, "nonsense": false} {
		if err := CheckListen(addr, nil); (err == nil) != ok {
			t.Errorf("CheckListen(%q) without users: %v", addr, err)
		}
		if err := CheckListen(addr, users); err != nil {
			t.Errorf("CheckListen(%q) with users: %v", addr, err)
		}
	}
}

func TestLoginSameUsersAsAPI(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true})
	ctx := testCtx(t, 10*time.Second)
	c, err := vertotest.Dial(ctx, e.vertoURL(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Call(ctx, "login", map[string]any{"login": "alice@nkbridge", "passwd": "nope"})
	if err != nil || m.Code() != verto.CodeAuthFailure {
		t.Fatalf("bad password: %v %+v", err, m)
	}
	m, err = c.Call(ctx, "login", map[string]any{"login": "alice@nkbridge", "passwd": testPassword})
	if err != nil || m.Code() != 0 || m.Str("sessid") == "" {
		t.Fatalf("login: %v %+v", err, m)
	}
}

// TestInviteRefusals: destinations that cannot be routed get clear causes, at once when that
// can be known (verto.invite error) or as verto.bye after "CALL CREATED", and leave nothing.
func TestInviteRefusals(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true, verto: verto.Config{InviteRate: 1000, InviteBurst: 1000}})
	c := e.dial("alice")
	ctx := testCtx(t, 30*time.Second)
	for _, tc := range []struct{ dest, cause string }{
		{"", "UNALLOCATED_NUMBER"},
		{"a b", "INVALID_NUMBER_FORMAT"},
		{"echo", "SERVICE_UNAVAILABLE"}, // no media backend
		{"park", "SERVICE_UNAVAILABLE"},
		{"conf-room1", "SERVICE_UNAVAILABLE"},
		{"conf-", "INVALID_NUMBER_FORMAT"},
		{"sip:", "INVALID_NUMBER_FORMAT"},
		{"verto-", "INVALID_NUMBER_FORMAT"},
		{"bob\u00e9", "INVALID_NUMBER_FORMAT"},
		{strings.Repeat("9", 300), "INVALID_NUMBER_FORMAT"},
	} {
		m, err := c.Invite(ctx, uuid.NewString(), tc.dest, fakeSDP)
		if err != nil || m.Code() != verto.CodeCallError || errCause(m) != tc.cause {
			t.Fatalf("invite %q: %v %+v, want cause %s", tc.dest, err, m, tc.cause)
		}
	}
	for _, tc := range []struct{ dest, cause string }{
		{"nobody", "USER_NOT_REGISTERED"},              // user with no device
		{"verto:carol", "USER_NOT_REGISTERED"},         // Verto user not logged in
		{"sip:phone@127.0.0.1", "SERVICE_UNAVAILABLE"}, // SIP needs a media backend (RTP far side)
	} {
		id := uuid.NewString()
		m, err := c.Invite(ctx, id, tc.dest, fakeSDP)
		if err != nil || m.Code() != 0 {
			t.Fatalf("invite %q: %v %+v", tc.dest, err, m)
		}
		bye := next(t, c, "verto.bye")
		if bye.Str("callID") != id || bye.Str("cause") != tc.cause {
			t.Fatalf("%q ended with %+v, want %s", tc.dest, bye.Params, tc.cause)
		}
	}
	e.idle()
}

// TestInviteFloodAndCap: a flood of invites from one connection is rate-limited by the Verto
// server and capped per user by the gateway; nothing is left afterwards.
func TestInviteFloodAndCap(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true, gw: Config{MaxCallsPerUser: 3}, verto: verto.Config{InviteRate: 1000, InviteBurst: 1000, RequestRate: 1000, RequestBurst: 1000}})
	callee := newTestInvitee() // rings forever
	e.core.AddResolver("user", signaling.ResolverFunc(func(ctx context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee == "dave" {
			return callee.Resolve(ctx, d)
		}
		return nil, nil
	}))
	c := e.dial("alice")
	ctx := testCtx(t, 30*time.Second)
	var ids []string
	created, congested := 0, 0
	for i := 0; i < 10; i++ {
		id := uuid.NewString()
		m, err := c.Invite(ctx, id, "dave", fakeSDP)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Code() == 0:
			created++
			ids = append(ids, id)
		case errCause(m) == "NORMAL_CIRCUIT_CONGESTION":
			congested++
		default:
			t.Fatalf("invite %d: %+v", i, m)
		}
	}
	if created != 3 || congested != 7 || e.gw.Calls() != 3 {
		t.Fatalf("created %d, congested %d, gateway calls %d; want 3, 7, 3", created, congested, e.gw.Calls())
	}
	for _, id := range ids {
		if m, err := c.Bye(ctx, id, ""); err != nil || m.Code() != 0 {
			t.Fatalf("bye: %v %+v", err, m)
		}
	}
	e.idle()

	// With the Verto server's default invite rate (1/s, burst 4) a flood is refused -32003.
	e2 := newEnv(t, envOpts{noMedia: true})
	c2 := e2.dial("alice")
	limited := 0
	for i := 0; i < 12; i++ {
		m, err := c2.Invite(ctx, uuid.NewString(), "nobody", fakeSDP)
		if err != nil {
			t.Fatal(err)
		}
		if m.Code() == verto.CodeRateLimited {
			limited++
		}
	}
	if limited < 6 {
		t.Fatalf("only %d of 12 invites rate-limited", limited)
	}
	e2.idle()
}

// TestP2PEarlyMediaDTMFHold: without a media backend a call to a user is WebRTC end to end
// (p2p session): the callee's early answer goes out as verto.media, the answer as
// verto.answer; DTMF is published on the session; hold is acknowledged; bye hangs up with 2130.
func TestP2PEarlyMediaDTMFHold(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true})
	callee := newTestInvitee()
	callee.onInvite = func(inv signaling.Invitation, h signaling.InviteHandle) {
		h.Ringing(signaling.Desc{"sdp": "early-answer", "sdp_type": "webrtc"})
	}
	e.core.AddResolver("user", signaling.ResolverFunc(func(ctx context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee == "dave" {
			return callee.Resolve(ctx, d)
		}
		return nil, nil
	}))
	c := e.dial("alice")
	ctx := testCtx(t, 30*time.Second)
	id := uuid.NewString()
	if m, err := c.Invite(ctx, id, "dave@nkbridge", fakeSDP); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	waitInvited(t, callee)
	inv, h := callee.handle()
	if inv.Offer.SDP() != fakeSDP || inv.Caller.ID != "1008" || inv.Caller.User != "alice" || inv.Callee != "dave" || inv.Data["verto_call_id"] != id {
		t.Fatalf("invitation %+v", inv)
	}
	media := next(t, c, "verto.media")
	if media.Str("callID") != id || media.Str("sdp") != "early-answer" {
		t.Fatalf("verto.media %+v", media.Params)
	}
	if err := h.Accepted(signaling.Desc{"sdp": "early-answer", "sdp_type": "webrtc", "callee_name": "Dave D", "callee_id": "3000"}, ""); err != nil {
		t.Fatal(err)
	}
	ans := next(t, c, "verto.answer")
	if ans.Str("callID") != id || ans.Str("sdp") != "" {
		t.Fatalf("verto.answer %+v (the SDP went out with verto.media)", ans.Params)
	}
	disp := next(t, c, "verto.display")
	if disp.Str("display_name") != "Dave D" || disp.Str("display_number") != "3000" {
		t.Fatalf("verto.display %+v", disp.Params)
	}

	// DTMF: no media to carry it, so the session's subscribers are told.
	sid := ""
	for _, s := range e.core.ListSessions() {
		sid = s
	}
	got := make(chan map[string]any, 4)
	sink := signaling.SinkFunc(func(ev signaling.Event) { got <- ev.Body })
	e.core.Bus().Subscribe(&sink, signaling.Subscription{Class: "media", Subclass: "session", Type: "info", ObjID: sid})
	if m, err := c.DTMF(ctx, id, "12#"); err != nil || m.Str("message") != "SENT" {
		t.Fatalf("dtmf: %v %+v", err, m)
	}
	select {
	case b := <-got:
		if info, _ := b["info"].(map[string]any); info["dtmf"] != "12#" {
			t.Fatalf("info event %v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DTMF info event")
	}
	if m, err := c.Modify(ctx, id, "hold"); err != nil || m.Str("holdState") != "held" {
		t.Fatalf("hold: %v %+v", err, m)
	}
	if m, err := c.Modify(ctx, id, "unhold"); err != nil || m.Str("holdState") != "active" {
		t.Fatalf("unhold: %v %+v", err, m)
	}
	if m, err := c.Bye(ctx, id, ""); err != nil || m.Code() != 0 {
		t.Fatalf("bye: %v %+v", err, m)
	}
	peers.WaitFor(t, 5*time.Second, "callee hung up with 2130", func() bool {
		codes := callee.hangupCodes()
		return len(codes) == 1 && codes[0] == signaling.CodeVertoBye
	})
	e.idle()
}

// TestOutboundRaceAndReject: a call to a user rings every Verto login (and the user's other
// devices) in parallel; the first answer wins, the other login gets verto.bye LOSE_RACE; a
// decline ends the call 2021; another device answering first cancels the Verto logins.
func TestOutboundRaceAndReject(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true})
	other := newTestInvitee() // another device of alice (e.g. a SIP phone)
	e.core.AddResolver("user", other)
	c1 := e.dial("alice")
	c2 := e.dial("alice")
	if n := len(e.srv.Sessions("alice")); n != 2 {
		t.Fatalf("alice has %d sessions", n)
	}
	ctx := testCtx(t, 30*time.Second)
	start := func(typ string, data map[string]any) *observer {
		t.Helper()
		o := newObserver()
		if _, err := e.core.StartCall(ctx, signaling.CallRequest{Type: typ, Callee: "alice", Data: data,
			Offer:  signaling.Desc{"sdp": fakeSDP, "sdp_type": "webrtc"},
			Caller: signaling.CallerInfo{Name: "Bob B", ID: "2000", User: "bob"}, Observer: o}); err != nil {
			t.Fatal(err)
		}
		return o
	}

	// 1. Verto login 1 answers.
	o := start("user", nil)
	i1, i2 := next(t, c1, "verto.invite"), next(t, c2, "verto.invite")
	waitInvited(t, other)
	if i1.Str("caller_id_name") != "Bob B" || i1.Str("caller_id_number") != "2000" || i1.Str("sdp") != fakeSDP {
		t.Fatalf("invite %+v", i1.Params)
	}
	if m, err := c1.Answer(ctx, i1.Str("callID"), "answer-1"); err != nil || m.Code() != 0 {
		t.Fatalf("answer: %v %+v", err, m)
	}
	o.expect(t, "answered:answer-1")
	if bye := next(t, c2, "verto.bye"); bye.Str("callID") != i2.Str("callID") || bye.Str("cause") != "LOSE_RACE" {
		t.Fatalf("loser got %+v", bye.Params)
	}
	peers.WaitFor(t, 5*time.Second, "the other device cancelled", func() bool {
		codes := other.hangupCodes()
		return len(codes) == 1 && codes[0] == signaling.CodeOriginatorCancel
	})
	// The losing login answering late gets an error, nothing changes.
	if m, err := c2.Answer(ctx, i2.Str("callID"), "late"); err != nil || m.Code() != verto.CodeCallError {
		t.Fatalf("late answer: %v %+v", err, m)
	}
	if m, err := c1.Bye(ctx, i1.Str("callID"), ""); err != nil || m.Code() != 0 {
		t.Fatalf("bye: %v %+v", err, m)
	}
	o.expect(t, "hangup:2130")
	e.idle()

	// 2. Both logins decline, the other device too: rejected (2021).
	o = start("verto", map[string]any{"user_id": "alice"})
	i1, i2 = next(t, c1, "verto.invite"), next(t, c2, "verto.invite")
	c1.Bye(ctx, i1.Str("callID"), "USER_BUSY")
	c2.Bye(ctx, i2.Str("callID"), "")
	o.expect(t, "hangup:2021")
	e.idle()

	// 3. The other device answers first: both Verto logins stop ringing with LOSE_RACE.
	o = start("user", nil)
	next(t, c1, "verto.invite")
	next(t, c2, "verto.invite")
	waitInvited(t, other)
	_, h := other.handle()
	if err := h.Accepted(signaling.Desc{"sdp": "answer-other", "sdp_type": "webrtc"}, ""); err != nil {
		t.Fatal(err)
	}
	o.expect(t, "answered:answer-other")
	for _, c := range []*vertotest.Client{c1, c2} {
		if bye := next(t, c, "verto.bye"); bye.Str("cause") != "LOSE_RACE" {
			t.Fatalf("verto login got %+v", bye.Params)
		}
	}
	_ = e.core.HangupCall(e.core.ListCalls()[0], nil)
	o.expect(t, "hangup:1013")

	// 4. The caller gives up while the logins ring: ORIGINATOR_CANCEL.
	o = start("verto", nil)
	next(t, c1, "verto.invite")
	next(t, c2, "verto.invite")
	_ = e.core.HangupCall(e.core.ListCalls()[0], nil)
	for _, c := range []*vertotest.Client{c1, c2} {
		if bye := next(t, c, "verto.bye"); bye.Str("cause") != "ORIGINATOR_CANCEL" {
			t.Fatalf("verto login got %+v", bye.Params)
		}
	}
	o.expect(t, "hangup:1013")
	e.idle()

	// A user calling themselves does not ring the calling login: the "verto" type has nobody
	// else to ring when only that login is up.
	c2.Close()
	peers.WaitFor(t, 5*time.Second, "one login left", func() bool { return len(e.srv.Sessions("alice")) == 1 })
	id := uuid.NewString()
	if m, err := c1.Invite(ctx, id, "verto:alice", fakeSDP); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	if bye := next(t, c1, "verto.bye"); bye.Str("callID") != id || bye.Str("cause") != "USER_NOT_REGISTERED" {
		t.Fatalf("self call: %+v", bye.Params)
	}
	e.idle()
}

// fakeHandle is an InviteHandle whose Accepted answers what the test says.
type fakeHandle struct {
	acceptErr error
	mu        sync.Mutex
	log       []string
}

func (f *fakeHandle) add(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}
func (f *fakeHandle) Ringing(signaling.Desc) { f.add("ringing") }
func (f *fakeHandle) Accepted(a signaling.Desc, _ string) error {
	f.add("accepted:" + a.SDP())
	return f.acceptErr
}
func (f *fakeHandle) Rejected(e *signaling.Error) { f.add(fmt.Sprintf("rejected:%d", e.Code)) }
func (f *fakeHandle) Hangup(e *signaling.Error)   { f.add(fmt.Sprintf("hangup:%d", e.Code)) }
func (f *fakeHandle) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// TestAnswerLosesRace: a Verto login answering after another invitee won (Accepted answers
// 2024) gets verto.bye LOSE_RACE and an error reply, and the gateway holds nothing.
func TestAnswerLosesRace(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true})
	c := e.dial("alice")
	ctx := testCtx(t, 10*time.Second)
	invs := e.gw.invitees("alice", "")
	if len(invs) != 1 {
		t.Fatalf("invitees %v", invs)
	}
	h := &fakeHandle{acceptErr: signaling.Errorf(signaling.CodeAlreadyAnswered, "Call already answered")}
	inv := signaling.Invitation{CallID: "call-1", Type: "user", Callee: "alice",
		Offer: signaling.Desc{"sdp": fakeSDP, "sdp_type": "webrtc"}, Caller: signaling.CallerInfo{User: "bob"}}
	if err := invs[0].Invite(ctx, inv, h); err != nil {
		t.Fatal(err)
	}
	in := next(t, c, "verto.invite")
	if in.Str("caller_id_number") != "bob" || in.Str("caller_id_name") != "bob" {
		t.Fatalf("caller id %+v", in.Params)
	}
	m, err := c.Answer(ctx, in.Str("callID"), "late-answer")
	if err != nil || m.Code() != verto.CodeCallError {
		t.Fatalf("answer: %v %+v", err, m)
	}
	if bye := next(t, c, "verto.bye"); bye.Str("cause") != "LOSE_RACE" {
		t.Fatalf("bye %+v", bye.Params)
	}
	if got := h.events(); len(got) != 2 || got[0] != "ringing" || got[1] != "accepted:late-answer" {
		t.Fatalf("handle saw %v", got)
	}
	invs[0].Hangup(signaling.Errorf(signaling.CodeOriginatorCancel, "Answered elsewhere")) // the router's own cleanup
	peers.WaitFor(t, 5*time.Second, "no calls held", func() bool { return e.gw.Calls() == 0 })

	// Offers a Verto client cannot take are refused before ringing.
	for _, bad := range []signaling.Desc{nil, {"sdp": fakeSDP, "sdp_type": "rtp"}} {
		inv.Offer = bad
		if err := e.gw.invitees("alice", "")[0].Invite(ctx, inv, h); err == nil {
			t.Fatalf("offer %v accepted", bad)
		}
	}
	for _, m := range c.Pending() {
		if m.Method != "verto.clientReady" {
			t.Fatalf("client got %s %v", m.Method, m.Params)
		}
	}
}

// TestDrain: once draining, new Verto calls are refused (SYSTEM_SHUTDOWN).
func TestDrain(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true})
	c := e.dial("alice")
	e.gw.Drain()
	m, err := c.Invite(testCtx(t, 5*time.Second), uuid.NewString(), "bob", fakeSDP)
	if err != nil || errCause(m) != "SYSTEM_SHUTDOWN" {
		t.Fatalf("invite while draining: %v %+v", err, m)
	}
}

// TestClientGoneWhileRinging: a client whose socket goes while its call rings ends the call
// (2130 with DESTINATION_OUT_OF_ORDER); a flood of DTMF in a call is bounded, never blocks
// the connection and leaves nothing behind.
func TestClientGoneWhileRinging(t *testing.T) {
	e := newEnv(t, envOpts{noMedia: true, verto: verto.Config{RequestRate: 1000, RequestBurst: 1000}})
	callee := newTestInvitee()
	e.core.AddResolver("user", signaling.ResolverFunc(func(ctx context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee == "dave" {
			return callee.Resolve(ctx, d)
		}
		return nil, nil
	}))
	c := e.dial("alice")
	ctx := testCtx(t, 20*time.Second)
	id := uuid.NewString()
	if m, err := c.Invite(ctx, id, "dave", fakeSDP); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	waitInvited(t, callee)
	n := 0
	for i := 0; i < 100; i++ {
		if m, err := c.DTMF(ctx, id, "1234567890*#"); err == nil && m.Str("message") == "SENT" {
			n++
		}
	}
	if n != 100 {
		t.Fatalf("%d of 100 DTMF requests answered SENT", n)
	}
	c.Close()
	peers.WaitFor(t, 5*time.Second, "callee hung up", func() bool {
		codes := callee.hangupCodes()
		return len(codes) == 1 && codes[0] == signaling.CodeVertoBye
	})
	e.idle()
}
