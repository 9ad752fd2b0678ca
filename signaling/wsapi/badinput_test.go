package wsapi_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// Malformed JSON, wrong types, huge frames, unknown classes and commands:
// the right error or close, and another connection is not disturbed.
func TestBadInput(t *testing.T) {
	env := startServer(t, wsapi.Config{MaxFrameBytes: 4096}, signaling.Options{})
	good := dial(t, env.url)
	good.Login("good", "")
	sid := good.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})["session_id"].(string)

	bad := dial(t, env.url)
	bad.Login("bad", "")
	// Frames with a readable tid get a 1046/1047/1048 reply; the connection stays.
	replies := []struct {
		frame string
		code  int
	}{
		{`{"tid":1}`, signaling.CodeSyntaxError},
		{`{"tid":2,"class":5,"cmd":"x"}`, signaling.CodeSyntaxError},
		{`{"tid":3,"class":"media","cmd":["start"]}`, signaling.CodeSyntaxError},
		{`{"tid":4,"class":"media","subclass":"session","cmd":"start","data":"nope"}`, signaling.CodeSyntaxError},
		{`{"tid":5,"cmd":"start"}`, signaling.CodeMissingField},
		{`{"tid":6,"class":"media"}`, signaling.CodeMissingField},
		{`{"tid":7,"class":"media","subclass":"session","cmd":"start","data":{"type":{"a":1}}}`, signaling.CodeInvalidParameters},
		{`{"tid":8,"class":"media","subclass":"session","cmd":"start","data":{"type":"p2p","offer":{"sdp":"x"},"subscribe":"yes"}}`, signaling.CodeInvalidParameters},
		{`{"tid":"s9","class":"nope","cmd":"x"}`, signaling.CodeUnknownClass},
		{`{"tid":10.5,"class":"core","subclass":"user","cmd":"nope"}`, signaling.CodeUnknownCommand},
		{`{"tid":11,"result":"maybe"}`, signaling.CodeSyntaxError},
		{`{"tid":12,"class":"media","subclass":"","cmd":"x"}`, signaling.CodeSyntaxError},
	}
	for _, r := range replies {
		bad.Send([]byte(r.frame))
		var probe struct{ Tid any }
		_ = json.Unmarshal([]byte(r.frame), &probe)
		tid := probe.Tid
		m := bad.Next(apitest.TIDIs(tid), 3*time.Second, "error for "+r.frame)
		apitest.ExpectErr(t, m, r.code)
	}
	// Responses to unknown server tids are ignored; still alive.
	bad.Send([]byte(`{"result":"ok","tid":999}`))
	bad.Send([]byte(`{"ack":999}`))
	bad.OK("core", "user", "list", nil)

	// Unreadable frames close the connection with a reason.
	for _, frame := range []string{`{"class":`, `[1,2]`, `"str"`, `{"class":"core","cmd":"x"}`, "\x00\xff"} {
		c := dial(t, env.url)
		c.Login("x", "")
		c.Send([]byte(frame))
		err := c.WaitClosed(2 * time.Second)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseProtocolError || ce.Text == "" {
			t.Fatalf("frame %q: close = %v", frame, err)
		}
	}
	// A huge frame: close 1009.
	huge := dial(t, env.url)
	huge.Login("h", "")
	huge.Send([]byte(`{"tid":1,"class":"core","cmd":"x","data":{"pad":"` + strings.Repeat("a", 10000) + `"}}`))
	if err := huge.WaitClosed(2 * time.Second); closeCode(err) != websocket.CloseMessageTooBig {
		t.Fatalf("huge frame: close = %v", err)
	}
	// Binary frames are refused.
	bin := dial(t, env.url)
	_ = bin.WriteFrame(websocket.BinaryMessage, []byte(`{"tid":1}`))
	if err := bin.WaitClosed(2 * time.Second); closeCode(err) != websocket.CloseUnsupportedData {
		t.Fatalf("binary: close = %v", err)
	}

	// The good connection and its session are untouched.
	if info := good.OK("media", "session", "info", msg{"session_id": sid}); info["state"] != "wait" {
		t.Fatalf("good session = %v", info)
	}
	good.OK("core", "user", "list", nil)
	good.Forget() // acks of earlier requests
	if good.Has(func(msg) bool { return true }, 100*time.Millisecond) {
		t.Fatal("good connection got something unexpected")
	}
}
