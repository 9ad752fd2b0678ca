package apischema_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const schemaURL = "urn:nkbridge:api"

// apiSchema is docs/api.schema.json: compiled definitions on demand, and
// the raw document for the field walk of the wrong-type checks.
type apiSchema struct {
	t    testing.TB
	c    *jsonschema.Compiler
	raw  map[string]any
	defs map[string]any
	mu   sync.Mutex
	comp map[string]*jsonschema.Schema
}

func loadSchema(t testing.TB) *apiSchema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("docs/api.schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile(schemaURL); err != nil {
		t.Fatalf("docs/api.schema.json does not compile: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	defs, _ := raw["$defs"].(map[string]any)
	return &apiSchema{t: t, c: c, raw: raw, defs: defs, comp: map[string]*jsonschema.Schema{}}
}

func (s *apiSchema) has(def string) bool { _, ok := s.defs[def]; return ok }

// validate checks v (raw JSON; nil means absent, checked as null) against
// the definition def.
func (s *apiSchema) validate(def string, v json.RawMessage) error {
	s.mu.Lock()
	sch, ok := s.comp[def]
	if !ok {
		var err error
		if sch, err = s.c.Compile(schemaURL + "#/$defs/" + def); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("compile %s: %w", def, err)
		}
		s.comp[def] = sch
	}
	s.mu.Unlock()
	if v == nil {
		v = json.RawMessage("null")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(v))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// cmdDef is the schema name of a command: cmd.class.subclass.cmd.
func cmdDef(cmd string) string { return "cmd." + strings.ReplaceAll(cmd, "/", ".") }

// ---- the recording proxy --------------------------------------------------

// wireFrame is one text frame seen by the proxy.
type wireFrame struct {
	conn     int
	toServer bool
	data     []byte
}

// recorder is a WebSocket proxy in front of the API that keeps every frame.
type recorder struct {
	t      testing.TB
	target string
	mu     sync.Mutex
	frames []wireFrame
	conns  int
	wg     sync.WaitGroup
	url    string
}

func newRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	r := &recorder{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		down, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		upc, _, err := websocket.DefaultDialer.Dial(r.target, nil)
		if err != nil {
			_ = down.Close()
			return
		}
		r.mu.Lock()
		r.conns++
		n := r.conns
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pump(n, true, down, upc)
		go r.pump(n, false, upc, down)
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
		r.wg.Wait()
	})
	r.url = "ws://" + ln.Addr().String() + "/"
	return r
}

// pump copies frames from src to dst, recording them, until either side closes.
func (r *recorder) pump(n int, toServer bool, src, dst *websocket.Conn) {
	defer r.wg.Done()
	defer func() { _ = src.Close(); _ = dst.Close() }()
	for {
		typ, b, err := src.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				_ = dst.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text))
			}
			return
		}
		if typ == websocket.TextMessage {
			r.mu.Lock()
			r.frames = append(r.frames, wireFrame{conn: n, toServer: toServer, data: b})
			r.mu.Unlock()
		}
		if dst.WriteMessage(typ, b) != nil {
			return
		}
	}
}

func (r *recorder) snapshot() []wireFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wireFrame(nil), r.frames...)
}

// ---- the server -------------------------------------------------------------

var loopback = netip.MustParseAddr("127.0.0.1")

// serve runs the control API on the embedded media engine (an admin user
// "admin" among open-mode logins) and the SIP front end (SIP user dan), and
// returns the API's ws:// URL and the SIP address.
func serve(t *testing.T) (string, string) {
	t.Helper()
	log := peers.TestLoggerLevel(t, 0)
	base := 30000 + 2*rand.IntN(15000)
	eng, err := media.New(media.Config{BindIP: loopback, RTPPortMin: base, RTPPortMax: base + 100,
		Quarantine: 100 * time.Millisecond, MediaTimeout: time.Minute, RecordDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	be := embedded.New(eng, log)
	backends := signaling.NewBackends()
	backends.Register(embedded.Name, be, append(embedded.Types(), embedded.RoomTypes()...)...)
	bus := signaling.NewBus()
	rs, err := be.EnableRooms(embedded.RoomsConfig{EmptyGrace: time.Minute, RecordDir: t.TempDir(), OnEvent: bus.Publish})
	if err != nil {
		t.Fatal(err)
	}
	backends.RegisterRooms(embedded.Name, rs, signaling.RoomSFU, signaling.RoomMCU)
	core := signaling.New(signaling.Options{Logger: log, Bus: bus, Backends: backends})
	sipAddr := fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t))
	gw, err := sipgw.New(sipgw.Config{RingTime: 10 * time.Second}, sipgw.Options{Logger: log, Core: core})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sip.New(sip.Config{
		Listen: []sip.Listen{{Transport: "udp", Addr: sipAddr}, {Transport: "tcp", Addr: sipAddr}},
		Users:  []sip.User{{Name: "dan", Password: "dan-secret"}},
	}, sip.Options{Logger: log, Handler: gw})
	if err != nil {
		t.Fatal(err)
	}
	gw.Attach(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gw.Drain()
		core.Close()
		gw.Close()
		_ = srv.Close()
		be.Close()
		_ = eng.Close()
	})
	return apitest.Serve(t, core, wsapi.Config{Admins: []string{"admin"}}, log), sipAddr
}

// ---- requests with their wrong-type twins ---------------------------------

// client is an API connection through the recorder.
type client struct {
	t   *testing.T
	s   *apiSchema
	c   *apitest.Conn
	who string
}

func (s *apiSchema) dial(t *testing.T, url, who string, opts nkclient.Options) *client {
	t.Helper()
	return &client{t: t, s: s, c: apitest.Dial(t, url, opts), who: who}
}

// ok sends cmd ("class/subclass/cmd") with data and returns the reply's
// data. Before it, each field of data that the schema types is sent with a
// value of another type, which the server must refuse naming the field.
func (c *client) ok(cmd string, data map[string]any) map[string]any {
	c.t.Helper()
	c.wrongTypes(cmd, data)
	var raw json.RawMessage
	p := strings.SplitN(cmd, "/", 3)
	if err := c.c.Req(p[0], p[1], p[2], data, &raw); err != nil {
		c.t.Fatalf("%s %s %v: %v", c.who, cmd, data, err)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// fail sends cmd and expects the error code.
func (c *client) fail(code int, cmd string, data map[string]any) {
	c.t.Helper()
	p := strings.SplitN(cmd, "/", 3)
	c.c.Fail(code, p[0], p[1], p[2], data)
}

// wrongTypes sends data with one field at a time of a type the schema does
// not allow for it, and expects an error naming that field.
func (c *client) wrongTypes(cmd string, data map[string]any) {
	c.t.Helper()
	props := c.s.requestProps(cmdDef(cmd) + ".request")
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p := strings.SplitN(cmd, "/", 3)
	for _, k := range keys {
		types := c.s.typesOf(props[k])
		bad, ok := wrongValue(types)
		if !ok {
			continue
		}
		mut := make(map[string]any, len(data))
		for kk, vv := range data {
			mut[kk] = vv
		}
		mut[k] = bad
		err := c.c.Req(p[0], p[1], p[2], mut, nil)
		var ae *nkclient.APIError
		if !errors.As(err, &ae) {
			c.t.Errorf("%s with %s=%v (schema: %v): accepted (%v); the server and docs/api.schema.json disagree", cmd, k, bad, types, err)
			continue
		}
		if !strings.Contains(ae.Text, k) {
			c.t.Errorf("%s with %s=%v (schema: %v): error %d %q does not name the field", cmd, k, bad, types, ae.Code, ae.Text)
		}
	}
}

// requestProps returns the properties of a request definition (following
// $ref and allOf).
func (s *apiSchema) requestProps(def string) map[string]any {
	out := map[string]any{}
	var walk func(n map[string]any, depth int)
	walk = func(n map[string]any, depth int) {
		if depth > 5 || n == nil {
			return
		}
		if ref, _ := n["$ref"].(string); strings.HasPrefix(ref, "#/$defs/") {
			d, _ := s.defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
			walk(d, depth+1)
		}
		if all, _ := n["allOf"].([]any); all != nil {
			for _, a := range all {
				m, _ := a.(map[string]any)
				walk(m, depth+1)
			}
		}
		if p, _ := n["properties"].(map[string]any); p != nil {
			for k, v := range p {
				out[k] = v
			}
		}
	}
	d, _ := s.defs[def].(map[string]any)
	walk(d, 0)
	return out
}

// typesOf returns the JSON types a property schema allows (nil: unknown or any).
func (s *apiSchema) typesOf(p any) []string {
	n, _ := p.(map[string]any)
	for i := 0; n != nil && i < 5; i++ {
		ref, _ := n["$ref"].(string)
		if ref == "" {
			break
		}
		n, _ = s.defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
	}
	if n == nil {
		return nil
	}
	switch t := n["type"].(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	if e, _ := n["enum"].([]any); len(e) > 0 {
		for _, x := range e {
			if _, ok := x.(string); !ok {
				return nil
			}
		}
		return []string{"string"}
	}
	return nil
}

// wrongValue is a value of a JSON type none of types allows.
func wrongValue(types []string) (any, bool) {
	if len(types) == 0 {
		return nil, false
	}
	allowed := map[string]bool{}
	for _, t := range types {
		allowed[t] = true
		if t == "integer" {
			allowed["number"] = true
		}
		if t == "number" {
			allowed["integer"] = true
		}
	}
	for _, c := range []struct {
		typ string
		v   any
	}{{"object", map[string]any{"wrong": 1}}, {"number", 12345}, {"string", "wrong-type"}, {"boolean", true}, {"array", []any{1}}} {
		if !allowed[c.typ] {
			return c.v, true
		}
	}
	return nil, false
}

func present(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }

// ---- the test ---------------------------------------------------------------

func rtpSDP(port int) map[string]any {
	return map[string]any{"sdp_type": "rtp", "sdp": fmt.Sprintf("v=0\r\no=peer 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n", port)}
}

// TestSchemaAgainstServer drives every command of the API through the real
// server and checks every frame on the wire against docs/api.schema.json.
func TestSchemaAgainstServer(t *testing.T) {
	s := loadSchema(t)
	apiURL, sipAddr := serve(t)
	rec := newRecorder(t, apiURL)

	// The schema names exactly the server's commands.
	cmds := wsapi.Commands()
	inTable := map[string]bool{}
	for _, cmd := range cmds {
		inTable[cmd] = true
		for _, part := range []string{".request", ".reply"} {
			if !s.has(cmdDef(cmd) + part) {
				t.Errorf("docs/api.schema.json has no %s%s for the server's command %s", cmdDef(cmd), part, cmd)
			}
		}
	}
	for def := range s.defs {
		if !strings.HasPrefix(def, "cmd.") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(def, "cmd."), ".request"), ".reply")
		if p := strings.SplitN(name, ".", 3); len(p) != 3 || !inTable[strings.Join(p, "/")] {
			t.Errorf("docs/api.schema.json describes %s, which the server does not have", def)
		}
	}

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	port := udp.LocalAddr().(*net.UDPAddr).Port

	// Bob accepts the first call, rejects the second and lets the third ring.
	invites := make(chan *nkclient.Invite, 8)
	alice := s.dial(t, rec.url, "alice", nkclient.Options{})
	bob := s.dial(t, rec.url, "bob", nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { invites <- inv }})
	admin := s.dial(t, rec.url, "admin", nkclient.Options{})
	spare := s.dial(t, rec.url, "alice", nkclient.Options{})

	// Login and core commands.
	alice.ok("core/user/login", map[string]any{"user": "alice", "password": "x", "meta": map[string]any{"ua": "schema-test"}})
	bob.ok("core/user/login", map[string]any{"user": "bob", "pass": "x"})
	admin.ok("core/user/login", map[string]any{"user": "admin", "password": "x"})
	spareID := spare.ok("core/user/login", map[string]any{"user": "alice", "password": "x", "session_id": "5a1ee0c4-0000-4000-8000-000000000001"})["session_id"]
	alice.fail(signaling.CodeAlreadyAuthenticated, "core/user/login", map[string]any{"user": "alice"})
	alice.ok("core/core/ping", nil)
	alice.ok("core/user/list", nil)
	admin.ok("core/user/list", nil)
	alice.ok("core/user/get", map[string]any{"user": "alice"})
	sub := map[string]any{"class": "media", "subclass": "*", "type": "*", "obj_id": "*", "body": map[string]any{"tag": 1}}
	admin.ok("core/event/subscribe", sub)
	admin.ok("core/event/subscribe", map[string]any{"class": "core", "subclass": "cdr"})
	admin.ok("core/event/subscribe", map[string]any{"class": "core", "subclass": "monitor"})
	alice.ok("core/event/subscribe", map[string]any{"class": "app"})
	alice.ok("core/event/get_subscriptions", nil)
	alice.ok("core/event/send", map[string]any{"class": "app", "subclass": "chat", "type": "hello", "obj_id": "room1", "body": map[string]any{"text": "hi"}})
	alice.ok("core/core/event", map[string]any{"class": "app", "type": "hello"})
	alice.c.Event(nkclient.Selector{Class: "app", Type: "hello"}, nil)
	alice.ok("core/event/unsubscribe", map[string]any{"class": "app"})
	alice.ok("core/session/stop", map[string]any{"session_id": spareID})

	// Sessions: echo (update, info, list, stop), proxy (set_answer), a WebRTC
	// echo (candidates).
	echo := alice.ok("media/session/start", map[string]any{"type": "echo", "offer": rtpSDP(port), "wait_timeout": 30, "ready_timeout": 600,
		"subscribe": true, "events_body": map[string]any{"mine": true}})
	echoID := echo["session_id"]
	alice.ok("media/session/info", map[string]any{"session_id": echoID})
	alice.ok("media/session/update", map[string]any{"session_id": echoID, "type": "media", "use_audio": false, "hold": false})
	alice.ok("media/session/update", map[string]any{"session_id": echoID, "update_type": "media", "record": true})
	alice.ok("media/session/update", map[string]any{"session_id": echoID, "type": "session_type", "session_type": "park"})
	alice.ok("media/session/list", nil)
	alice.ok("media/session/stop", map[string]any{"session_id": echoID, "code": 1013, "reason": "done"})

	proxy := alice.ok("media/session/start", map[string]any{"type": "proxy", "offer": rtpSDP(port), "proxy_type": "rtp"})
	alice.ok("media/session/set_answer", map[string]any{"session_id": proxy["session_id"], "answer": rtpSDP(port)})
	alice.ok("media/session/stop", map[string]any{"session_id": proxy["session_id"]})

	pc := peers.NewPCMUPeer(t, "schema")
	web := alice.ok("media/session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": pc.Offer(), "sdp_type": "webrtc"}})
	alice.ok("media/session/set_candidate", map[string]any{"session_id": web["session_id"], "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
	alice.ok("media/session/set_candidate", map[string]any{"session_id": web["session_id"], "candidate": map[string]any{"candidate": "candidate:2 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0"}})
	alice.ok("media/session/set_candidate_end", map[string]any{"session_id": web["session_id"]})
	alice.ok("media/session/stop", map[string]any{"session_id": web["session_id"]})

	// Calls: bob answers (later style), then rejects, then hangs up on the
	// seed's core/event, and a call nobody answers in time.
	p2p := alice.ok("media/session/start", map[string]any{"type": "p2p", "offer": rtpSDP(port)})
	call := alice.ok("media/call/start", map[string]any{"type": "user", "user": "bob", "session_id": p2p["session_id"], "ring_time": 30,
		"caller_name": "Alice", "caller_id": "100", "subscribe": true})
	inv := <-invites
	bob.ok("media/call/ringing", map[string]any{"call_id": inv.CallID})
	bob.ok("media/call/answered", map[string]any{"call_id": inv.CallID, "answer": rtpSDP(port)})
	alice.ok("media/call/info", map[string]any{"call_id": call["call_id"]})
	alice.ok("media/call/list", nil)
	admin.ok("media/call/list", nil)
	alice.ok("media/call/hangup", map[string]any{"call_id": call["call_id"], "code": 1013, "error": "bye"})

	call2 := alice.ok("media/call/start", map[string]any{"callee": "bob", "offer": rtpSDP(port)})
	inv = <-invites
	bob.ok("media/call/rejected", map[string]any{"call_id": inv.CallID, "code": 486, "reason": "busy"})
	alice.c.Event(apitest.Media("call", "hangup", fmt.Sprint(call2["call_id"])), nil)

	call3 := alice.ok("media/call/start", map[string]any{"type": "user", "user": "bob"})
	inv = <-invites
	bob.ok("core/core/event", map[string]any{"class": "media", "subclass": "call", "type": "ringing", "obj_id": inv.CallID})
	bob.ok("media/call/accepted", map[string]any{"call_id": inv.CallID})
	bob.ok("core/core/event", map[string]any{"class": "media", "subclass": "call", "type": "hangup", "obj_id": inv.CallID, "body": map[string]any{"code": 1013}})
	alice.c.Event(apitest.Media("call", "hangup", fmt.Sprint(call3["call_id"])), nil)

	call4 := alice.ok("media/call/start", map[string]any{"type": "user", "user": "bob", "ring_time": 0.2})
	<-invites
	alice.c.Event(apitest.Media("call", "hangup", fmt.Sprint(call4["call_id"])), nil)

	// Rooms: an sfu room with a publisher and a listener, an mcu room.
	sfu := alice.ok("media/room/create", map[string]any{"class": "sfu", "audio_codec": "opus", "bitrate": 500000, "private": false})
	mcu := alice.ok("media/room/create", map[string]any{"class": "mcu", "room_id": "schema-mcu", "record": false})
	alice.ok("media/room/list", nil)
	pub := alice.ok("media/session/start", map[string]any{"type": "publish", "room_id": sfu["room_id"], "offer": map[string]any{"sdp": peers.NewPCMUPeer(t, "pub").Offer(), "sdp_type": "webrtc"}})
	lisPC := peers.NewPCMUPeer(t, "lis")
	lis := alice.ok("media/session/start", map[string]any{"type": "listen", "publisher_id": pub["session_id"], "room_id": sfu["room_id"]})
	offer, _ := lis["offer"].(map[string]any)
	sdp, _ := offer["sdp"].(string)
	alice.ok("media/session/set_answer", map[string]any{"session_id": lis["session_id"], "answer": map[string]any{"sdp": lisPC.Answer(sdp), "sdp_type": "webrtc"}})
	alice.ok("media/session/update", map[string]any{"session_id": lis["session_id"], "type": "listen_switch", "publisher_id": pub["session_id"]})
	alice.ok("media/room/info", map[string]any{"room_id": sfu["room_id"]})
	member := alice.ok("media/session/start", map[string]any{"type": "mcu", "room_id": mcu["room_id"], "offer": rtpSDP(port)})
	alice.ok("media/session/update", map[string]any{"session_id": member["session_id"], "type": "mcu_layout", "mcu_layout": "1x1"})
	alice.ok("media/room/info", map[string]any{"room_id": mcu["room_id"]})
	alice.ok("media/room/destroy", map[string]any{"room_id": sfu["room_id"]})
	alice.ok("media/room/destroy", map[string]any{"room_id": mcu["room_id"]})
	alice.c.Event(apitest.Media("session", "stop", fmt.Sprint(member["session_id"])), nil)

	// SIP: a phone registers (admins see it), calls bob, and bob transfers
	// it to carol.
	if _, err := exec.LookPath("baresip"); err == nil || peers.Required() {
		sipPart(t, rec.url, sipAddr, s, admin, bob, invites)
	} else {
		t.Log("no baresip: the SIP part (core/monitor, media/call/transfer) is left out")
		delete(inTable, "core/monitor/list")
		delete(inTable, "media/call/transfer")
	}

	// Errors are frames too.
	alice.fail(signaling.CodeUnknownCommand, "media/session/nothing", nil)
	alice.fail(signaling.CodeSessionNotFound, "media/session/info", map[string]any{"session_id": "nope"})

	// Wait until every event published so far reached the admin.
	peers.WaitFor(t, 10*time.Second, "the admin's room destroyed event", func() bool {
		for _, ev := range admin.c.Pending() {
			if ev.Type == "destroyed" && ev.ObjID == "schema-mcu" {
				return true
			}
		}
		return false
	})

	checkFrames(t, s, rec.snapshot(), inTable)
}

// sipPart: a baresip phone registers as dan (the admin gets the monitor
// event and lists it), calls bob, who answers and transfers it to carol.
func sipPart(t *testing.T, url, sipAddr string, s *apiSchema, admin, bob *client, invites <-chan *nkclient.Invite) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	carolInvites := make(chan *nkclient.Invite, 2)
	carol := s.dial(t, url, "carol", nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { carolInvites <- inv }})
	carol.ok("core/user/login", map[string]any{"user": "carol", "password": "x"})
	phone := peers.StartBaresip(t, peers.BaresipOptions{User: "dan", Codec: "pcmu", ToneHz: 600,
		Account: fmt.Sprintf("<sip:dan@%s>;auth_pass=dan-secret;regint=60;answermode=auto;audio_codecs=pcmu", sipAddr)})
	admin.c.Event(nkclient.Selector{Class: "core", Subclass: "monitor", Type: "registration"}, nil)
	admin.ok("core/monitor/list", map[string]any{"what": "registrations"})

	answer := func(c *client, inv *nkclient.Invite, name string) {
		t.Helper()
		if inv.Offer == nil {
			t.Fatalf("%s's invite has no offer", name)
		}
		pc := peers.NewPCMUPeer(t, name)
		c.ok("media/call/answered", map[string]any{"call_id": inv.CallID, "answer": map[string]any{"sdp": pc.Answer(inv.Offer.SDP), "sdp_type": "webrtc"}})
	}
	if err := phone.Dial(ctx, "sip:bob@"+sipAddr); err != nil {
		t.Fatal(err)
	}
	inv := <-invites
	answer(bob, inv, "bob")
	if _, _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	bob.wrongTypes("media/call/transfer", map[string]any{"call_id": inv.CallID, "target": "carol", "type": "user"})
	type result struct {
		data json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = bob.c.C.Request(ctx, "media", "call", "transfer", map[string]any{"call_id": inv.CallID, "target": "carol"}, &r.data)
		done <- r
	}()
	answer(carol, <-carolInvites, "carol")
	if r := <-done; r.err != nil {
		t.Fatalf("transfer: %v", r.err)
	}
}

// checkFrames validates every recorded frame and that every command was
// answered ok at least once.
func checkFrames(t *testing.T, s *apiSchema, frames []wireFrame, inTable map[string]bool) {
	t.Helper()
	type key struct {
		conn     int
		toServer bool // direction of the request
		tid      string
	}
	pending := map[key]string{} // request -> command or server request name
	okSeen := map[string]bool{}
	events := map[string]int{}
	for _, f := range frames {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(f.data, &m); err != nil {
			t.Errorf("not a JSON object on the wire: %s", f.data)
			continue
		}
		if err := s.validate("frame.request", f.data); err == nil {
			var r struct {
				Class, Subclass, Cmd string
				Tid                  json.RawMessage
				Data                 json.RawMessage
			}
			_ = json.Unmarshal(f.data, &r)
			if r.Subclass == "" {
				r.Subclass = "core"
			}
			name := r.Class + "/" + r.Subclass + "/" + r.Cmd
			pending[key{f.conn, f.toServer, string(r.Tid)}] = name
			if f.toServer {
				if !present(r.Data) {
					r.Data = json.RawMessage("{}") // no data is the same as {}
				}
				if inTable[name] {
					if err := s.validate(cmdDef(name)+".request", r.Data); err != nil {
						// A request the test sent with a wrong type on purpose.
						pending[key{f.conn, f.toServer, string(r.Tid)}] = "bad:" + name
					}
				}
				continue
			}
			def := "server." + strings.ReplaceAll(name, "/", ".")
			if !s.has(def) {
				t.Errorf("the server sent %s, which docs/api.schema.json does not describe: %s", name, f.data)
				continue
			}
			if err := s.validate(def, r.Data); err != nil {
				t.Errorf("server request %s does not match %s: %v\n%s", name, def, err, f.data)
			}
			if name == "core/core/event" {
				var ev signaling.Event
				_ = json.Unmarshal(r.Data, &ev)
				edef := "event." + ev.Class + "." + ev.Subclass + "." + ev.Type
				if ev.Class == signaling.ClassMedia || ev.Class == signaling.ClassCore && (ev.Subclass == signaling.SubclassCDR || ev.Subclass == signaling.SubclassMonitor) {
					events[edef]++
					if !s.has(edef) {
						t.Errorf("the server sent the event %s/%s/%s, which docs/api.schema.json does not describe: %s", ev.Class, ev.Subclass, ev.Type, f.data)
						continue
					}
					body := []byte("{}") // no body is the same as {}
					if ev.Body != nil {
						body, _ = json.Marshal(ev.Body)
					}
					if err := s.validate(edef, body); err != nil {
						t.Errorf("event %s body does not match %s: %v\n%s", name, edef, err, f.data)
					}
				}
			}
			continue
		}
		if err := s.validate("frame.ack", f.data); err == nil {
			continue
		}
		if err := s.validate("frame.response", f.data); err != nil {
			t.Errorf("a frame that is no request, response or ack: %v\n%s", err, f.data)
			continue
		}
		var r struct {
			Result string
			Tid    json.RawMessage
			Data   json.RawMessage
		}
		_ = json.Unmarshal(f.data, &r)
		k := key{f.conn, !f.toServer, string(r.Tid)}
		name, ok := pending[k]
		if !ok {
			t.Errorf("a response to no request: %s", f.data)
			continue
		}
		delete(pending, k)
		if !f.toServer && r.Result == "ok" {
			if strings.HasPrefix(name, "bad:") {
				t.Errorf("%s: the server accepted a request docs/api.schema.json refuses: %s", strings.TrimPrefix(name, "bad:"), f.data)
				continue
			}
			if !inTable[name] {
				continue
			}
			okSeen[name] = true
			if err := s.validate(cmdDef(name)+".reply", r.Data); err != nil {
				t.Errorf("reply to %s does not match %s.reply: %v\n%s", name, cmdDef(name), err, f.data)
			}
		}
	}
	for name := range inTable {
		if !okSeen[name] {
			t.Errorf("command %s was never answered ok in the test: its reply schema is unchecked", name)
		}
	}
	var seen []string
	for def, n := range events {
		seen = append(seen, fmt.Sprintf("%s×%d", strings.TrimPrefix(def, "event."), n))
	}
	sort.Strings(seen)
	t.Logf("%d frames checked; events seen: %s", len(frames), strings.Join(seen, " "))
}
