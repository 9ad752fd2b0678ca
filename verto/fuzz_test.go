package verto

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// FuzzDecodeFrame: the JSON-RPC decoder never panics, and what it classifies is consistent.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, batch, ferr := decodeFrame(data)
		if ferr != nil {
			if msgs != nil {
				t.Fatal("frame error with messages")
			}
			if _, err := json.Marshal(ferr); err != nil {
				t.Fatal(err)
			}
			return
		}
		if len(msgs) == 0 || (!batch && len(msgs) != 1) || len(msgs) > maxBatch {
			t.Fatalf("bad message count %d (batch %v)", len(msgs), batch)
		}
		for _, m := range msgs {
			if !json.Valid(m.id) {
				t.Fatalf("invalid id %q", m.id)
			}
			switch m.kind {
			case kindInvalid:
				if m.err == nil {
					t.Fatal("invalid without error")
				}
			case kindRequest:
				if m.method == "" {
					t.Fatal("request without method")
				}
				if m.params != nil && !json.Valid(m.params) {
					t.Fatal("invalid params kept")
				}
			}
		}
	})
}

// fuzzEvents is a CallEvents that can also re-attach.
type fuzzEvents struct{}

func (fuzzEvents) DTMF(string)                                   {}
func (fuzzEvents) Hold(bool)                                     {}
func (fuzzEvents) Hangup(Cause)                                  {}
func (fuzzEvents) Detached()                                     {}
func (fuzzEvents) ReattachOffer(context.Context) (string, error) { return "v=0\r\n", nil }
func (fuzzEvents) Reattached(context.Context, string) error      { return nil }

type fuzzHandler struct{}

func (fuzzHandler) HandleInvite(_ context.Context, inv Invite, call *Call) (CallEvents, error) {
	if inv.Destination == "busy" {
		return nil, CauseUserBusy
	}
	_ = call.Answer("v=0\r\n")
	return fuzzEvents{}, nil
}

// FuzzDispatch feeds a frame to a logged-in connection that holds one answered call ("fz-1"),
// through the real dispatch path (without the socket), and checks every frame the server sends
// back is a well-formed JSON-RPC message. Nothing may panic, leak or deadlock.
func FuzzDispatch(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		s, err := New(Config{
			LoginFailDelay: time.Microsecond, RequestRate: 1e6, RequestBurst: 1e6,
			InviteRate: 1e6, InviteBurst: 1e6, MaxLoginFailures: 1000,
		}, testAuth{"alice": "secret"}, fuzzHandler{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := newConn(s, nil, "fuzz")
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		check := func(stage string) {
			for {
				select {
				case b := <-c.out:
					checkOutFrame(t, stage, b)
				default:
					return
				}
			}
		}
		c.handleFrame(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"login","params":{"login":"alice@x","passwd":"secret","sessid":"fz-sess"}}`))
		c.handleFrame(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":2,"method":"verto.invite","params":{"sdp":"v=0\r\n","dialogParams":{"callID":"fz-1","destination_number":"echo"}}}`))
		check("setup")
		c.handleFrame(websocket.TextMessage, frame)
		check("fuzz")
		s.connClosed(c)
		s.Close()
		check("close")
		s.mu.Lock()
		n := len(s.calls)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d calls left after close", n)
		}
	})
}

func checkOutFrame(t *testing.T, stage string, b []byte) {
	t.Helper()
	var elems []map[string]json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &elems); err != nil {
			t.Fatalf("%s: bad batch reply %q: %v", stage, b, err)
		}
	} else {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: bad frame %q: %v", stage, b, err)
		}
		elems = append(elems, m)
	}
	for _, m := range elems {
		if string(m["jsonrpc"]) != `"2.0"` {
			t.Fatalf("%s: no jsonrpc 2.0 in %q", stage, b)
		}
		_, hasMethod := m["method"]
		_, hasResult := m["result"]
		_, hasError := m["error"]
		if _, hasID := m["id"]; !hasID {
			t.Fatalf("%s: no id in %q", stage, b)
		}
		n := 0
		for _, h := range []bool{hasMethod, hasResult, hasError} {
			if h {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: want exactly one of method/result/error in %q", stage, b)
		}
		if hasError {
			var e struct {
				Code    *int    `json:"code"`
				Message *string `json:"message"`
			}
			if json.Unmarshal(m["error"], &e) != nil || e.Code == nil || e.Message == nil || *e.Message == "" {
				t.Fatalf("%s: bad error object in %q", stage, b)
			}
		}
	}
}

func fuzzSeeds() []string {
	return []string{
		`{"jsonrpc":"2.0","id":3,"method":"verto.ping","params":{}}`,
		`{"jsonrpc":"2.0","id":"9a1c","method":"verto.info","params":{"dtmf":"1#@200+2","dialogParams":{"callID":"fz-1"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"verto.modify","params":{"action":"toggleHold","dialogParams":{"callID":"fz-1"}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"verto.bye","params":{"cause":"USER_BUSY","causeCode":"17","dialogParams":{"callID":"fz-1"}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"verto.invite","params":{"sdp":"v=0","dialogParams":{"callID":"fz-2","destination_number":"busy"}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"verto.attach","params":{"sdp":"v=0","dialogParams":{"callID":"fz-1"}}}`,
		`{"jsonrpc":"2.0","id":8,"method":"verto.answer","params":{"sdp":"v=0","dialogParams":{"callID":"fz-1"}}}`,
		`{"jsonrpc":"2.0","id":9,"method":"login","params":{"login":"bob","passwd":"x"}}`,
		`{"jsonrpc":"2.0","id":10,"method":"login","params":{"login":"alice","passwd":"secret","sessid":"other"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"verto.ping"},{"jsonrpc":"2.0","id":2,"result":{}},3]`,
		`{"jsonrpc":"2.0","id":99,"result":{"method":"verto.invite"}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32000}}`,
		`{"jsonrpc":"1.0","id":1,"method":"verto.ping"}`,
		`{"jsonrpc":"2.0","id":[1],"method":"verto.ping"}`,
		`{"jsonrpc":"2.0","id":1,"method":"verto.subscribe","params":{"eventChannel":["a","b"]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"verto.unsubscribe","params":{"eventChannel":"a"}}`,
		`{"JSONRPC":"2.0","Id":1,"METHOD":"verto.ping","params":[1]}`,
		`{"jsonrpc":"2.0","method":"no.such"}`,
		`#SPU 1000`,
		`[]`,
		`{`,
		"\x00\xff",
	}
}
