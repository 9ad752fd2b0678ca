package wsapi_test

import (
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"go.uber.org/goleak"
)

// Stopping the server with live connections, sessions, calls and pending
// server requests leaves no goroutine behind and stops everything.
func TestServerStopNoLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	env := startServer(t, wsapi.Config{PingInterval: 50 * time.Millisecond}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")
	b.SetAutoReply(false)
	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})["session_id"].(string)
	a.OK("media", "call", "start", msg{"type": "user", "user": "bob", "session_id": sid})
	b.Next(apitest.IsRequest("media", "call", "invite"), 2*time.Second, "invite")
	pre := dial(t, env.url) // not logged in

	env.stop()
	if n := len(env.core.ListSessions()); n != 0 {
		t.Errorf("%d sessions after stop", n)
	}
	if n := len(env.core.ListCalls()); n != 0 {
		t.Errorf("%d calls after stop", n)
	}
	for _, c := range []*client{a, b, pre} {
		c.WaitClosed(2 * time.Second)
	}
	goleak.VerifyNone(t, before)
}
