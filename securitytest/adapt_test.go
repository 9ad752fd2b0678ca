package securitytest

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.6: the auxiliary sessions that adapt a call's offer for its invitees
// count among the caller's sessions (api.max_owned): a plain-RTP call to a
// user with many browser connections cannot make a session per connection
// beyond the caller's limit.
func TestAdaptationSessionsCountInMaxOwned(t *testing.T) {
	log := peers.TestLoggerLevel(t, slog.LevelInfo)
	base := 30000 + 2*rand.IntN(15000)
	eng2, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 200,
		Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	be2 := embedded.New(eng2, log)
	t.Cleanup(func() { be2.Close(); _ = eng2.Close() })
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1), MaxOwned: 3}, func(b *signaling.Backends) {
		b.SetOfferAdapter(embedded.NewAdapter(be2))
	})
	alice := login(t, e, "alice")
	var bobs []*client
	for range 6 {
		bobs = append(bobs, login(t, e, "bob")) // browsers: they want WebRTC offers
	}
	callID := alice.OK("media", "call", "start", map[string]any{"type": "user", "user": "bob", "offer": rtpOffer()})["call_id"].(string)
	peers.WaitFor(t, 5*time.Second, "every connection of bob invited", func() bool {
		n := 0
		for _, b := range bobs {
			n += b.Requests("invite")
		}
		return n == len(bobs)
	})
	if n := be2.Sessions(); n > 3 {
		t.Fatalf("%d adaptation sessions for one call of a caller limited to 3 (api.max_owned)", n)
	}
	if n, _ := e.core.Owned(""); n != 0 {
		t.Fatalf("sessions owned by nobody: %d", n)
	}
	alice.OK("media", "call", "hangup", map[string]any{"call_id": callID})
	peers.WaitFor(t, 5*time.Second, "adaptation sessions released", func() bool { return be2.Sessions() == 0 })
}
