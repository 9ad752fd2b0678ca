package wsapi_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// Every error code path of the spec, over the wire, with its text.
func TestErrorCodes(t *testing.T) {
	opts, _ := withRecBackend()
	env := startServer(t, wsapi.Config{}, opts)
	c := dial(t, env.url)

	// Before login only login works.
	if txt := c.Fail(signaling.CodeNotAuthenticated, "media", "session", "start", msg{"type": "p2p"}); !strings.Contains(txt, "Not authenticated") {
		t.Errorf("1031 text %q", txt)
	}
	c.Fail(signaling.CodeNotAuthenticated, "core", "user", "list", nil)
	c.Fail(signaling.CodeNotAuthenticated, "core", "", "ping", nil)
	c.Fail(signaling.CodeNotAuthenticated, "nonsense", "", "x", nil)
	c.Fail(signaling.CodeMissingField, "core", "user", "login", msg{"password": "x"})
	c.Fail(signaling.CodeInvalidSessionID, "core", "user", "login", msg{"user": "u", "password": "x", "session_id": "not-a-uuid"})
	other := dial(t, env.url)
	otherID := other.Login("o", "")
	c.Fail(signaling.CodeDuplicatedSessionID, "core", "user", "login", msg{"user": "u", "password": "x", "session_id": otherID})
	own := "5f0c8c52-4b7e-4a8e-9a49-3c2b0a6f1e11"
	if got := c.OK("core", "user", "login", msg{"user": "u", "pass": "x", "session_id": own})["session_id"]; got != own {
		t.Fatalf("own session id not used: %v", got)
	}
	c.Fail(signaling.CodeAlreadyAuthenticated, "core", "user", "login", msg{"user": "u", "password": "x"})

	c.Fail(signaling.CodeUserNotFound, "core", "user", "get", msg{"user": "ghost"})
	if txt := c.Fail(signaling.CodeUnknownCommand, "media", "session", "explode", nil); !strings.Contains(txt, "explode") {
		t.Errorf("1041 text %q", txt)
	}
	c.Fail(signaling.CodeUnknownCommand, "core", "user", "fly", nil)
	c.Fail(signaling.CodeUnknownCommand, "media", "nothing", "start", nil)
	if txt := c.Fail(signaling.CodeUnknownClass, "weird", "", "x", nil); !strings.Contains(txt, "weird") {
		t.Errorf("1042 text %q", txt)
	}
	c.Fail(signaling.CodeInvalidOperation, "core", "event", "send", msg{"class": "media", "subclass": "session", "type": "stop", "obj_id": "x"})
	if txt := c.Fail(signaling.CodeMissingField, "media", "session", "start", msg{"offer": msg{"sdp": "x"}}); txt != "Missing field: type" {
		t.Errorf("1047 text %q", txt)
	}
	c.Fail(signaling.CodeInvalidParameters, "media", "session", "start", msg{"type": 5})
	c.Fail(signaling.CodeInvalidParameters, "media", "session", "start", msg{"type": "p2p", "offer": "sdp"})
	c.Fail(signaling.CodeInvalidParameters, "media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "wait_timeout": -1})
	c.Fail(signaling.CodeSessionNotFound, "media", "session", "stop", msg{"session_id": "nope"})
	c.Fail(signaling.CodeSessionNotFound, "media", "session", "info", msg{"session_id": "nope"})
	c.Fail(signaling.CodeMissingField, "media", "session", "stop", nil)
	c.Fail(signaling.CodeSessionNotFound, "core", "session", "stop", msg{"session_id": "nope"})

	// Session types: known without backend, unknown, forced backend.
	if txt := c.Fail(signaling.CodeNoMediaserver, "media", "session", "start", msg{"type": "mcu", "offer": msg{"sdp": "x"}}); !strings.Contains(txt, "mcu") {
		t.Errorf("2001 text %q", txt)
	}
	c.Fail(signaling.CodeNoMediaserver, "media", "session", "start", msg{"type": "echo", "offer": msg{"sdp": "x"}, "backend": "janus"})
	if txt := c.Fail(signaling.CodeUnknownSessionType, "media", "session", "start", msg{"type": "foo", "offer": msg{"sdp": "x"}}); txt != "Unknown session type: foo" {
		t.Errorf("2002 text %q", txt)
	}
	c.Fail(signaling.CodeMissingOffer, "media", "session", "start", msg{"type": "p2p"})
	c.Fail(signaling.CodeMissingOffer, "media", "session", "start", msg{"type": "echo"})

	sid := c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "session_id": "my-session-1"})["session_id"].(string)
	if sid != "my-session-1" {
		t.Fatalf("client session id not used: %s", sid)
	}
	c.Fail(signaling.CodeDuplicatedSessionID, "media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "session_id": sid})
	c.Fail(signaling.CodeInvalidSessionID, "media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "session_id": "bad id!"})
	c.Fail(signaling.CodeAnswerNotSet, "media", "session", "update", msg{"session_id": sid, "type": "media"})
	c.Fail(signaling.CodeMissingField, "media", "session", "set_answer", msg{"session_id": sid})
	c.OK("media", "session", "set_answer", msg{"session_id": sid, "answer": msg{"sdp": "y"}})
	c.Event("media", "session", "answer", sid)
	c.Fail(signaling.CodeAnswerAlreadySet, "media", "session", "set_answer", msg{"session_id": sid, "answer": msg{"sdp": "y"}})
	c.Fail(signaling.CodeNotImplemented, "media", "session", "update", msg{"session_id": sid, "type": "media"})
	// Another user's session is not reachable.
	other.Fail(signaling.CodeSessionNotFound, "media", "session", "stop", msg{"session_id": sid})

	c.Fail(signaling.CodeCallNotFound, "media", "call", "hangup", msg{"call_id": "nope"})
	c.Fail(signaling.CodeCallNotFound, "media", "call", "ringing", msg{"call_id": "nope"})
	c.Fail(signaling.CodeCallNotFound, "core", "", "event", msg{"class": "media", "subclass": "call", "type": "accepted", "obj_id": "nope"})
	c.Fail(signaling.CodeMissingField, "media", "call", "start", msg{"type": "user"})
	c.Fail(signaling.CodeSessionNotFound, "media", "call", "start", msg{"type": "user", "user": "o", "session_id": "nope"})
	c.Fail(signaling.CodeNoMediaserver, "media", "room", "create", msg{"class": "sfu"})
	c.Fail(signaling.CodeRoomNotFound, "media", "room", "info", msg{"room_id": "r"})

	// Session timeout: covered with its event in TestSessionTimeouts.
	// Proxy via backend: set_answer returns the backend's answer for the caller.
	d := c.OK("media", "session", "start", msg{"type": "proxy", "offer": msg{"sdp": "x"}})
	if off, _ := d["offer"].(map[string]any); off["sdp"] != "v=0 proxy-offer" {
		t.Fatalf("proxy start = %v", d)
	}
	psid := d["session_id"].(string)
	d = c.OK("media", "session", "set_answer", msg{"session_id": psid, "answer": msg{"sdp": "far"}})
	if ans, _ := d["answer"].(map[string]any); ans["sdp"] != "v=0 answer-for-caller" || ans["far"] != "far" {
		t.Fatalf("proxy set_answer = %v", d)
	}
}

// A call from a proxy session carries the backend's offer for the far side
// (with the client's caller fields); the callee's answer goes through the
// backend and the caller gets the backend's answer.
func TestCallFromProxySession(t *testing.T) {
	opts, _ := withRecBackend()
	env := startServer(t, wsapi.Config{}, opts)
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")
	sid := a.OK("media", "session", "start", msg{"type": "proxy", "offer": msg{"sdp": "webrtc-offer"}})["session_id"].(string)
	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "bob", "session_id": sid,
		"offer": msg{"sdp": "webrtc-offer", "caller_name": "Alice"}})["call_id"].(string)
	inv := b.Next(apitest.IsRequest("media", "call", "invite"), 5*time.Second, "invite")["data"].(map[string]any)
	if off, _ := inv["offer"].(map[string]any); off["sdp"] != "v=0 proxy-offer" || off["caller_name"] != "Alice" {
		t.Fatalf("invite offer = %v", inv["offer"])
	}
	b.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "rtp-answer"}})
	ev := a.Event("media", "session", "answer", sid)
	if ans, _ := body(ev)["answer"].(map[string]any); ans["sdp"] != "v=0 answer-for-caller" || ans["far"] != "rtp-answer" {
		t.Fatalf("caller answer = %v", ev)
	}
}

// Login against configured users: wrong password answers 1030 after a
// back-off that doubles from 100 ms; the connection stays open and the
// right password then works; pass/password spellings both work.
func TestLoginBackoff(t *testing.T) {
	h, err := auth.HashPassword("right", 1000)
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NewUsers(map[string]string{"alice": h})
	if err != nil {
		t.Fatal(err)
	}
	env := startServer(t, wsapi.Config{Users: users}, signaling.Options{})
	c := dial(t, env.url)
	var took []time.Duration
	for range 3 {
		start := time.Now()
		tid := c.NewTID()
		c.Send(msg{"class": "core", "subclass": "user", "cmd": "login", "tid": tid, "data": msg{"user": "alice", "password": "wrong"}})
		ack := c.Next(func(m msg) bool { return m["ack"] != nil }, 5*time.Second, "ack")
		if num(ack["ack"]) != tid {
			t.Fatalf("ack = %v", ack)
		}
		r := c.Next(apitest.TIDIs(tid), 10*time.Second, "login reply")
		apitest.ExpectErr(t, r, signaling.CodeUnauthorized)
		took = append(took, time.Since(start))
	}
	t.Logf("back-off: %v", took)
	for i, want := range []time.Duration{100, 200, 400} {
		if took[i] < want*time.Millisecond*9/10 || took[i] > want*time.Millisecond+3*time.Second {
			t.Errorf("failure %d answered after %v, want about %v ms", i+1, took[i], want)
		}
	}
	c.Fail(signaling.CodeUnauthorized, "core", "user", "login", msg{"user": "nobody", "password": "right"})
	c.Fail(signaling.CodeMissingField, "core", "user", "login", msg{"user": "alice"})
	c.OK("core", "user", "login", msg{"user": "alice", "pass": "right"})
	c.OK("core", "user", "list", nil)
	d := dial(t, env.url)
	d.OK("core", "user", "login", msg{"user": "alice", "password": "right"})
}

// A listener off loopback without users is refused.
func TestNoUsersOffLoopbackRefused(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9010", "192.0.2.2:9010", "[::]:9010", "example.com:9010"} {
		if err := wsapi.CheckListen(addr, nil); err == nil {
			t.Errorf("%s without users accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:9010", "[::1]:9010", "localhost:9010"} {
		if err := wsapi.CheckListen(addr, nil); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
	h, _ := auth.HashPassword("p", 1000)
	users, _ := auth.NewUsers(map[string]string{"u": h})
	if err := wsapi.CheckListen("0.0.0.0:9010", users); err != nil {
		t.Errorf("with users: %v", err)
	}
}

// Browser Origins: same host or configured ones only.
func TestOriginCheck(t *testing.T) {
	env := startServer(t, wsapi.Config{AllowedOrigins: []string{"https://app.example"}}, signaling.Options{})
	host := strings.TrimSuffix(strings.TrimPrefix(env.url, "ws://"), "/")
	try := func(origin string) int {
		hdr := http.Header{}
		hdr.Set("Origin", origin)
		return apitest.UpgradeStatus(t, env.url, hdr)
	}
	if code := try("http://" + host); code != 101 {
		t.Errorf("same host refused: %d", code)
	}
	if code := try("https://app.example"); code != 101 {
		t.Errorf("configured origin refused: %d", code)
	}
	// A foreign origin: the handshake completes only to close at once (1008) with a reason
	// naming the setting, which a browser page can show; nothing it sends is read.
	ws, _, err := websocket.DefaultDialer.Dial(env.url, http.Header{"Origin": {"http://evil.example"}})
	if err != nil {
		t.Fatalf("foreign origin: %v", err)
	}
	_ = ws.WriteJSON(map[string]any{"class": "core", "subclass": "user", "cmd": "login", "data": map[string]any{"user": "x"}, "tid": 1})
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "api.allowed_origins") || !strings.Contains(ce.Text, "http://evil.example") {
		t.Errorf("foreign origin: %v, want close 1008 naming api.allowed_origins", err)
	}
	ws.Close()
	// Other paths are not the API.
	if apitest.UpgradeStatus(t, strings.TrimSuffix(env.url, "/")+"/other", nil) != http.StatusNotFound {
		t.Errorf("/other served")
	}
	if st := apitest.UpgradeStatus(t, env.url+"api", nil); st != http.StatusSwitchingProtocols {
		t.Fatalf("/api: %d", st)
	}
}

// Requests over the per-connection rate are refused; others are unaffected.
func TestRequestRateLimit(t *testing.T) {
	env := startServer(t, wsapi.Config{RequestRate: 20}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("u", "")
	other := dial(t, env.url)
	other.Login("o", "")
	limited := 0
	for range 100 {
		r := c.Req("core", "user", "list", nil)
		if r["result"] == "error" {
			apitest.ExpectErr(t, r, signaling.CodeInvalidOperation)
			limited++
		}
	}
	if limited < 40 {
		t.Fatalf("only %d of 100 requests limited at 20/s", limited)
	}
	other.OK("core", "user", "list", nil)
	time.Sleep(200 * time.Millisecond) // the subject: the bucket refills with time
	c.OK("core", "user", "list", nil)  // tokens come back
}

// Sessions and calls per connection are bounded.
func TestOwnedLimit(t *testing.T) {
	env := startServer(t, wsapi.Config{MaxOwned: 3}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("u", "")
	for range 3 {
		c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})
	}
	c.Fail(signaling.CodeInvalidOperation, "media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})
	other := dial(t, env.url)
	other.Login("o", "")
	other.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})
	for range 3 {
		c.OK("media", "call", "start", msg{"type": "user", "user": "o", "ring_time": 30})
	}
	c.Fail(signaling.CodeInvalidOperation, "media", "call", "start", msg{"type": "user", "user": "o"})
}
