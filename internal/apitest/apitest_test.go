package apitest_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A real API server (wsapi over a signaling core, p2p sessions): OK returns the
// reply's data, Fail the refusal's text, Event takes the matching event and
// leaves the others for Pending.
func TestConn(t *testing.T) {
	core := signaling.New(signaling.Options{})
	t.Cleanup(core.Close)
	c := apitest.Dial(t, apitest.Serve(t, core, wsapi.Config{}, nil), nkclient.Options{})
	c.Login("tester@nkbridge", "x")
	start := func() string {
		t.Helper()
		d := c.OK("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})
		sid, _ := d["session_id"].(string)
		if sid == "" {
			t.Fatalf("start reply without session_id: %v", d)
		}
		return sid
	}
	a, b := start(), start()
	if text := c.Fail(signaling.CodeSessionNotFound, "media", "session", "stop", map[string]any{"session_id": "nope"}); !strings.Contains(text, "nope") {
		t.Errorf("refusal text %q does not name the session", text)
	}
	c.OK("media", "session", "stop", map[string]any{"session_id": a})
	c.OK("media", "session", "stop", map[string]any{"session_id": b})
	// b's stop is asked for first: a's stays for Pending.
	if body := c.Event(apitest.Media("session", "stop", b), nil); body["code"] != float64(signaling.CodeUserStop) {
		t.Fatalf("stop event body %v", body)
	}
	var left []string
	for _, ev := range c.Pending() {
		if ev.Type == "stop" {
			left = append(left, ev.ObjID)
		}
	}
	if len(left) != 1 || left[0] != a {
		t.Fatalf("pending stop events %v, want only %s", left, a)
	}
	c.Event(apitest.Media("session", "stop", a), func(body map[string]any) bool { return body["code"] == float64(signaling.CodeUserStop) })
	if n := len(c.Pending()); n != 0 {
		t.Errorf("%d events left after both were taken", n)
	}
}
