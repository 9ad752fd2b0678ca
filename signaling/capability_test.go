package signaling

import (
	"context"
	"strings"
	"testing"
)

// dtmfMedia is a fakeMedia that can send DTMF (and nothing else of the capabilities).
type dtmfMedia struct {
	fakeMedia
	sent []string
}

func (m *dtmfMedia) SendDTMF(_ context.Context, to Side, digits string, _ int) error {
	m.sent = append(m.sent, to.String()+":"+digits)
	return nil
}

type dtmfBackend struct{ fakeBackend }

func (b *dtmfBackend) StartMedia(_ context.Context, req MediaRequest) (Media, MediaResult, error) {
	return &dtmfMedia{fakeMedia: fakeMedia{b: &b.fakeBackend, rep: req.Reporter}}, MediaResult{Answer: Desc{"sdp": "ans"}}, nil
}

// TestMediaAs: a front end gets a session's media as a capability of signaling, or a clear
// error: no such session (1062), no media (p2p, 1006), a backend without the capability (1006
// naming the backend and what it cannot do).
func TestMediaAs(t *testing.T) {
	bs := NewBackends()
	bs.Register("dtmfonly", &dtmfBackend{fakeBackend{stops: make(chan *Error, 4)}}, TypePark)
	c := New(Options{Backends: bs})
	defer c.Close()
	ctx := context.Background()
	res, err := c.StartSession(ctx, SessionRequest{Type: TypePark, Offer: Desc{"sdp": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := MediaAs[DTMFSender](c, res.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SendDTMF(ctx, SideCaller.Other(), "12", 0); err != nil {
		t.Fatal(err)
	}
	if m := d.(*dtmfMedia); len(m.sent) != 1 || m.sent[0] != "far:12" {
		t.Fatalf("sent %v", m.sent)
	}
	_, err = MediaAs[Reattacher](c, res.SessionID)
	if e := AsError(err); e == nil || e.Code != CodeNotImplemented || !strings.Contains(e.Text, "dtmfonly backend cannot re-attach") {
		t.Fatalf("MediaAs[Reattacher] on a backend without it: %v", err)
	}
	_, err = MediaAs[RTPReofferer](c, "nope")
	if e := AsError(err); e == nil || e.Code != CodeSessionNotFound {
		t.Fatalf("MediaAs of an unknown session: %v", err)
	}
	p2p, err := c.StartSession(ctx, SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = MediaAs[DTMFSender](c, p2p.SessionID)
	if e := AsError(err); e == nil || e.Code != CodeNotImplemented || !strings.Contains(e.Text, "has no media") {
		t.Fatalf("MediaAs of a p2p session: %v", err)
	}
	if _, err := c.SessionMedia(p2p.SessionID); AsError(err).Code != CodeNotImplemented {
		t.Fatalf("SessionMedia of a p2p session: %v", err)
	}
}

// TestStopError reads the error of a stop or hangup event body, as published and as decoded
// from JSON.
func TestStopError(t *testing.T) {
	for _, body := range []map[string]any{{"code": CodePeerHangup, "reason": "gone"}, {"code": float64(CodePeerHangup), "reason": "gone"}} {
		if e := StopError(body); e.Code != CodePeerHangup || e.Text != "gone" {
			t.Fatalf("StopError(%v) = %v", body, e)
		}
	}
	if e := StopError(nil); e.Code != 0 {
		t.Fatalf("StopError(nil) = %v", e)
	}
}
