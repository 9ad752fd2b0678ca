package signaling

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// recAdapter records what the router does with adapted offers (the real
// adapter, on the embedded engine, is tested in signaling/embedded).
type recAdapter struct {
	mu       sync.Mutex
	n        int
	released map[string]int
	finished []string
}

func (a *recAdapter) Adapt(_ context.Context, _ string, offer Desc, want string) (Desc, func(context.Context, Desc) (Desc, error), func(), error) {
	if want == "bad" {
		return nil, nil, nil, Errorf(CodeInvalidParameters, "cannot adapt to %s", want)
	}
	a.mu.Lock()
	a.n++
	id := want + string(rune('0'+a.n))
	a.mu.Unlock()
	out := offer.Clone()
	out["sdp"], out["sdp_type"] = "adapted-"+id, want
	finish := func(_ context.Context, ans Desc) (Desc, error) {
		a.mu.Lock()
		a.finished = append(a.finished, id)
		a.mu.Unlock()
		if ans.SDP() == "garbage" {
			return nil, errors.New("bad answer")
		}
		return Desc{"sdp": "back-from-" + ans.SDP(), "sdp_type": offer.SDPType()}, nil
	}
	release := func() {
		a.mu.Lock()
		a.released[id]++
		a.mu.Unlock()
	}
	return out, finish, release, nil
}

func (a *recAdapter) snapshot() (map[string]int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := make(map[string]int, len(a.released))
	for k, v := range a.released {
		r[k] = v
	}
	return r, append([]string(nil), a.finished...)
}

type kindInvitee struct {
	fakeInvitee
	kind string
}

func (k *kindInvitee) MediaKind() string { return k.kind }

func newKindInvitee(kind string) *kindInvitee {
	return &kindInvitee{kind: kind}
}

func TestOfferAdaptation(t *testing.T) {
	offer := Desc{"sdp": "orig", "sdp_type": "webrtc", "caller_id": "1002"}
	ring := func(t *testing.T, c *Core, invs ...Invitee) (string, *obs) {
		t.Helper()
		c.AddResolver("user", ResolverFunc(func(context.Context, Destination) ([]Invitee, error) { return invs, nil }))
		o := &obs{done: make(chan struct{})}
		id, err := c.StartCall(context.Background(), CallRequest{Type: "user", Callee: "alice", Offer: offer, Observer: o})
		if err != nil {
			t.Fatal(err)
		}
		return id, o
	}
	// StartCall returns once every invitee was rung.
	got := func(t *testing.T, f *kindInvitee) Invitation {
		t.Helper()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.h == nil {
			t.Fatalf("invitee %q not invited", f.kind)
		}
		return f.inv
	}

	t.Run("no adapter: offers as is", func(t *testing.T) {
		c := New(Options{})
		defer c.Close()
		rtp := newKindInvitee("rtp")
		id, _ := ring(t, c, rtp)
		if inv := got(t, rtp); inv.Offer.SDP() != "orig" {
			t.Errorf("offer %v, want the original", inv.Offer)
		}
		_ = c.HangupCall(id, nil)
	})

	t.Run("adapted winner, loser released, failed adaptation rings as is", func(t *testing.T) {
		a := &recAdapter{released: map[string]int{}}
		c := New(Options{})
		defer c.Close()
		c.Backends().SetOfferAdapter(a)
		phone, desk, web, plain, bad := newKindInvitee("rtp"), newKindInvitee("rtp"), newKindInvitee("webrtc"), &kindInvitee{}, newKindInvitee("bad")
		id, o := ring(t, c, phone, desk, web, plain, bad)
		ip, id2, iw := got(t, phone), got(t, desk), got(t, web)
		ipl := got(t, plain)
		if ip.Offer.SDPType() != "rtp" || ip.Offer.String("caller_id") != "1002" || id2.Offer.SDP() == ip.Offer.SDP() {
			t.Errorf("rtp offers %v / %v", ip.Offer, id2.Offer)
		}
		if iw.Offer.SDP() != "orig" || ipl.Offer.SDP() != "orig" {
			t.Errorf("webrtc/undeclared offers %v / %v, want the original", iw.Offer, ipl.Offer)
		}
		if ib := got(t, bad); ib.Offer.SDP() != "orig" {
			t.Errorf("an invitee whose offer could not be adapted got %v, want the original", ib.Offer)
		}
		hp, _ := phone.state()
		hp.Ringing(nil) // (early answers to adapted offers: early_test.go)
		if err := hp.Accepted(Desc{"sdp": "rtp-answer", "sdp_type": "rtp"}, ""); err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		ans := o.answer
		o.mu.Unlock()
		if ans.SDP() != "back-from-rtp-answer" || ans.SDPType() != "webrtc" {
			t.Errorf("caller's answer %v", ans)
		}
		rel, fin := a.snapshot()
		if len(fin) != 1 || fin[0] != "rtp1" || rel["rtp2"] != 1 || rel["rtp1"] != 0 {
			t.Errorf("after answer: finished %v released %v (want rtp1 finished, rtp2 released once)", fin, rel)
		}
		_ = c.HangupCall(id, nil)
		<-o.done
		if rel, _ := a.snapshot(); rel["rtp1"] != 1 || rel["rtp2"] != 1 || len(rel) != 2 {
			t.Errorf("after hangup: released %v, want each once", rel)
		}
	})

	t.Run("ring timeout and rejection release", func(t *testing.T) {
		a := &recAdapter{released: map[string]int{}}
		c := New(Options{RingTime: 200 * time.Millisecond})
		defer c.Close()
		c.SetOfferAdapter(a)
		p1, p2 := newKindInvitee("rtp"), newKindInvitee("rtp")
		_, o := ring(t, c, p1, p2)
		got(t, p1)
		got(t, p2)
		h1, _ := p1.state()
		h1.Rejected(nil)
		if rel, _ := a.snapshot(); rel["rtp1"] != 1 || rel["rtp2"] != 0 {
			t.Errorf("after a rejection: %v", rel)
		}
		<-o.done
		if rel, _ := a.snapshot(); rel["rtp1"] != 1 || rel["rtp2"] != 1 {
			t.Errorf("after the ring timeout: %v", rel)
		}
	})

	t.Run("bad adapted answer ends the call", func(t *testing.T) {
		a := &recAdapter{released: map[string]int{}}
		c := New(Options{})
		defer c.Close()
		c.SetOfferAdapter(a)
		p := newKindInvitee("rtp")
		_, o := ring(t, c, p)
		got(t, p)
		h, _ := p.state()
		if err := h.Accepted(Desc{"sdp": "garbage", "sdp_type": "rtp"}, ""); err == nil {
			t.Error("garbage answer taken")
		}
		<-o.done
		if rel, _ := a.snapshot(); rel["rtp1"] != 1 {
			t.Errorf("released %v", rel)
		}
	})
	t.Run("media adapter: the invitee's leg is found by SessionMedia until released", func(t *testing.T) {
		a := &mediaAdapter{recAdapter: recAdapter{released: map[string]int{}}, m: &fakeMedia{}}
		c := New(Options{})
		defer c.Close()
		c.SetOfferAdapter(a)
		p, plain := newKindInvitee("rtp"), &kindInvitee{}
		id, o := ring(t, c, p, plain)
		inv := got(t, p)
		if inv.MediaSession == "" || got(t, plain).MediaSession != "" {
			t.Fatalf("MediaSession %q for the adapted invitee, %q for the other", inv.MediaSession, got(t, plain).MediaSession)
		}
		if m, err := c.SessionMedia(inv.MediaSession); err != nil || m != a.m {
			t.Errorf("SessionMedia(%s) = %v, %v, want the adapter's media", inv.MediaSession, m, err)
		}
		if _, ok := c.LookupSession(inv.MediaSession); ok {
			t.Error("the adapted leg's media is listed as a session")
		}
		_ = c.HangupCall(id, nil)
		<-o.done
		peers.WaitFor(t, 5*time.Second, "released", func() bool { rel, _ := a.snapshot(); return rel["rtp1"] == 1 })
		if _, err := c.SessionMedia(inv.MediaSession); AsError(err) == nil || AsError(err).Code != CodeSessionNotFound {
			t.Errorf("after release SessionMedia: %v, want %d", err, CodeSessionNotFound)
		}
	})
}

// mediaAdapter is a recAdapter that also returns a media (a signaling.MediaAdapter).
type mediaAdapter struct {
	recAdapter
	m Media
}

func (a *mediaAdapter) AdaptMedia(ctx context.Context, callID string, offer Desc, want string) (Desc, Media, func(context.Context, Desc) (Desc, error), func(), error) {
	d, f, r, err := a.Adapt(ctx, callID, offer, want)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return d, a.m, f, r, nil
}
