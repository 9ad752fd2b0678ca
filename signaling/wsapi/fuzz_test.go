package wsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/ratelimit"
	"github.com/nkbridge/nkbridge/signaling"
)

// FuzzDecodeFrame: the frame decoder never panics, and what it accepts or
// refuses is consistent.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"class":"media","subclass":"session","cmd":"start","data":{"type":"p2p"},"tid":1}`,
		`{"result":"ok","tid":3}`, `{"result":"error","data":{"code":1,"error":"x"},"tid":4}`,
		`{"ack":5}`, `{"tid":"a"}`, `[1]`, `{"class":`, ``, `null`, `{"tid":{}}`, `{"class":"core","cmd":"ping","tid":1e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, ferr := decodeFrame(b)
		if ferr != nil {
			if ferr.err.Code != signaling.CodeSyntaxError && ferr.err.Code != signaling.CodeMissingField {
				t.Fatalf("code %d", ferr.err.Code)
			}
			if ferr.err.Text == "" {
				t.Fatal("error without text")
			}
			if ferr.tid != nil && (!scalar(ferr.tid) || !json.Valid(ferr.tid)) {
				t.Fatalf("bad tid %q", ferr.tid)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		switch fr.kind {
		case kindRequest:
			if fr.class == "" || fr.cmd == "" || fr.subclass == "" || !scalar(fr.tid) {
				t.Fatalf("bad request %+v", fr)
			}
			if fr.data != nil && !object(fr.data) {
				t.Fatalf("data %q", fr.data)
			}
			// The fast string path agrees with encoding/json.
			var ref struct{ Class, Cmd string }
			if err := json.Unmarshal(b, &ref); err == nil && (ref.Class != fr.class || ref.Cmd != fr.cmd) {
				t.Fatalf("decoded %q/%q, encoding/json says %q/%q", fr.class, fr.cmd, ref.Class, ref.Cmd)
			}
		case kindResponse:
			if fr.result != "ok" && fr.result != "error" {
				t.Fatalf("result %q", fr.result)
			}
		case kindAck:
		default:
			t.Fatalf("kind %d", fr.kind)
		}
	})
}

// FuzzRequest runs whole request frames through a logged-in connection's
// handlers (no network): every reply is valid JSON with a known code, and
// nothing panics or leaks.
func FuzzRequest(f *testing.F) {
	seeds := []struct{ class, subclass, cmd, data string }{
		{"media", "session", "start", `{"type":"p2p","offer":{"sdp":"v=0"}}`},
		{"media", "session", "start", `{"type":"p2p","offer":{"sdp":"v=0"},"wait_timeout":1e308}`},
		{"media", "session", "start", `{"type":"echo","offer":{"sdp":"v=0"},"backend":"x"}`},
		{"media", "session", "update", `{"session_id":"s","update_type":"media"}`},
		{"media", "session", "set_candidate", `{"session_id":"s","candidate":{"candidate":"a","sdpMLineIndex":0}}`},
		{"media", "call", "start", `{"type":"user","user":"fuzz","offer":{"sdp":"v=0"},"ring_time":0.01}`},
		{"media", "call", "hangup", `{"call_id":"x","code":"no"}`},
		{"core", "event", "subscribe", `{"class":"media","subclass":"*","type":"stop"}`},
		{"core", "event", "send", `{"class":"chat","type":"t","obj_id":"fuzz","body":{"a":[1,2]}}`},
		{"core", "", "event", `{"class":"media","subclass":"call","type":"accepted","obj_id":"c","body":{"answer":5}}`},
		{"core", "user", "get", `{"user":7}`},
		{"core", "session", "stop", `{"session_id":"fuzz-login"}`},
		{"media", "room", "create", `{"class":"sfu","room_id":"r1"}`},
		{"media", "room", "info", `{"room_id":"r1"}`},
		{"media", "room", "create", `{"class":"mcu","private":true}`},
		{"media", "session", "update", `{"session_id":"s","type":"session_type","session_type":"bridge","peer_id":"x"}`},
		{"media", "session", "start", `{"type":"listen","publisher_id":["x"],"room_id":7}`},
		{"core", "", "event", `{"class":"media","subclass":"call","type":"hangup","obj_id":"c","body":{"code":"x"}}`},
		{"core", "event", "send", `{"class":"core","subclass":"session_event","type":"t","obj_id":"fuzz-login"}`},
		{"core", "monitor", "list", `{"what":"registrations"}`},
		{"core", "monitor", "list", `{"what":["x"]}`},
		{"core", "event", "send", `{"class":"core","subclass":"monitor","type":"registration"}`},
	}
	for _, s := range seeds {
		f.Add(s.class, s.subclass, s.cmd, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, class, subclass, cmd string, data []byte) {
		req := map[string]any{"class": class, "subclass": subclass, "cmd": cmd, "tid": 1}
		if json.Valid(data) {
			req["data"] = json.RawMessage(data)
		}
		frame, err := json.Marshal(req)
		if err != nil {
			return
		}
		core := signaling.New(signaling.Options{})
		srv := New(Config{}, core, nil)
		c := newTestConn(srv)
		c.handleFrame(frame)
		c.cleanup()
		srv.Close()
		core.Close()
		replies := 0
		for _, b := range c.out.take() {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("invalid JSON out: %q", b)
			}
			if m["result"] == nil {
				continue // ack, event, invite
			}
			replies++
			if m["result"] == "error" {
				d, _ := m["data"].(map[string]any)
				code, _ := d["code"].(float64)
				if signaling.CodeName(int(code)) == "" && int(code) != signaling.CodeUnknown {
					t.Fatalf("unknown code in %q", b)
				}
				if s, _ := d["error"].(string); s == "" {
					t.Fatalf("no error text in %q", b)
				}
			}
			if !bytes.Contains(b, []byte(`"tid":1`)) {
				t.Fatalf("reply without tid: %q", b)
			}
		}
		if replies != 1 {
			t.Fatalf("%d replies to one request %s", replies, frame)
		}
	})
}

// newTestConn is a logged-in connection without a socket.
func newTestConn(s *Server) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{srv: s, id: "fuzz-conn", remote: "127.0.0.1:1", source: "127.0.0.1", ctx: ctx, cancel: cancel,
		out: newSendQueue(s.cfg.SendQueueBytes), slots: make(chan struct{}, s.cfg.MaxInFlight),
		log: s.log, loggedIn: true, user: "fuzz", loginID: "fuzz-login",
		limit: ratelimit.New(s.cfg.RequestRate, 2*s.cfg.RequestRate)}
	c.loginTimer = time.AfterFunc(time.Hour, func() {})
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.byID[c.id] = c
	s.mu.Unlock()
	s.registerLogin(c, c.user, c.loginID)
	return c
}
