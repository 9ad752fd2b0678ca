package wsapi_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// kindAdapter stands for the media engine's offer adapter (tested with real
// media in signaling/embedded and sip/sipgw): it marks what it adapted.
type kindAdapter struct {
	mu       sync.Mutex
	released int
}

func (a *kindAdapter) Adapt(_ context.Context, _ string, offer signaling.Desc, want string) (signaling.Desc, func(context.Context, signaling.Desc) (signaling.Desc, error), func(), error) {
	out := offer.Clone()
	out["sdp"], out["sdp_type"] = "adapted:"+offer.SDP(), want
	finish := func(_ context.Context, ans signaling.Desc) (signaling.Desc, error) {
		return signaling.Desc{"sdp": "back:" + ans.SDP(), "sdp_type": offer.SDPType()}, nil
	}
	return out, finish, func() { a.mu.Lock(); a.released++; a.mu.Unlock() }, nil
}

// An API connection is rung with a WebRTC offer unless its login meta says
// media_kind "rtp" (an RTP offer) or "any" (the offer as is); the answer of
// an adapted one reaches the caller through the adapter.
func TestInviteeMediaKind(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	ad := &kindAdapter{}
	env.core.SetOfferAdapter(ad)
	a := dial(t, env.url)
	a.Login("alice", "")
	login := func(user string, meta msg) *client {
		c := dial(t, env.url)
		d := msg{"user": user, "password": ""}
		if meta != nil {
			d["meta"] = meta
		}
		c.OK("core", "user", "login", d)
		return c
	}
	callees := map[string]*client{
		"bob":   login("bob", nil),
		"carol": login("carol", msg{"media_kind": "rtp"}),
		"dave":  login("dave", msg{"media_kind": "any"}),
	}
	for _, c := range []struct {
		user, offerKind, wantKind string
		adapted                   bool
	}{
		{"bob", "rtp", "webrtc", true},
		{"bob", "webrtc", "webrtc", false},
		{"carol", "webrtc", "rtp", true},
		{"carol", "rtp", "rtp", false},
		{"dave", "rtp", "rtp", false},
		{"dave", "webrtc", "webrtc", false},
	} {
		callID := a.OK("media", "call", "start", msg{"type": "user", "user": c.user,
			"offer": msg{"sdp": "O", "sdp_type": c.offerKind}})["call_id"].(string)
		cl := callees[c.user]
		inv := inviteOf(t, cl)
		off, _ := inv["offer"].(map[string]any)
		wantSDP := "O"
		if c.adapted {
			wantSDP = "adapted:O"
		}
		if off["sdp_type"] != c.wantKind || off["sdp"] != wantSDP {
			t.Errorf("%s, %s offer: invited with %v, want %s %q", c.user, c.offerKind, off, c.wantKind, wantSDP)
		}
		cl.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "A", "sdp_type": c.wantKind}})
		ev := a.Event("media", "call", "answer", callID)
		ans, _ := body(ev)["answer"].(map[string]any)
		wantAns := "A"
		if c.adapted {
			wantAns = "back:A"
		}
		if ans["sdp"] != wantAns || ans["sdp_type"] != c.offerKind {
			t.Errorf("%s, %s offer: caller got answer %v, want %s %q", c.user, c.offerKind, ans, c.offerKind, wantAns)
		}
		a.OK("media", "call", "hangup", msg{"call_id": callID})
		a.Event("media", "call", "hangup", callID)
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if ad.released != 2 {
		t.Errorf("%d adapted offers released, want 2", ad.released)
	}
}
