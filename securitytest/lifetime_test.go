package securitytest

import (
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"

	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.5: starts still in flight when their connection drops create nothing
// that outlives it: 20 connections each pipeline 10 echo starts and drop.
func TestDropMidStartLeavesNoSession(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, nil)
	for i := range 20 {
		c := login(t, e, "alice")
		for j := range 10 {
			_ = c.Write(map[string]any{"class": "media", "subclass": "session", "cmd": "start", "tid": 100 + j,
				"data": map[string]any{"type": "echo", "offer": rtpOffer()}})
		}
		if i%2 == 1 {
			time.Sleep(time.Duration(i) * time.Millisecond) // vary where the drop lands
		}
		_ = c.WS.Close()
	}
	peers.WaitFor(t, 10*time.Second, "no session left", func() bool {
		s, _ := e.core.Counts()
		return s == 0 && e.be.Sessions() == 0 && e.eng.Sessions() == 0
	})
	// Nothing is created later either (a start still on its way).
	time.Sleep(300 * time.Millisecond) // an absence has no condition to wait on: a window
	if s, _ := e.core.Counts(); s != 0 || e.eng.Sessions() != 0 {
		t.Fatalf("%d sessions (%d in the engine) outlived their connections", s, e.eng.Sessions())
	}
}
