package wsapi_test

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// goInvitee is a Go-side call target, as the SIP and Verto front ends will
// register: it answers when told.
type goInvitee struct {
	mu     sync.Mutex
	inv    signaling.Invitation
	h      signaling.InviteHandle
	hungup chan *signaling.Error
}

func (g *goInvitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	g.mu.Lock()
	g.inv, g.h = inv, h
	g.mu.Unlock()
	return nil
}

func (g *goInvitee) Hangup(err *signaling.Error) { g.hungup <- err }

// An API caller reaches a Go-registered resolver (type "sip" here, as the
// SIP front end will add) and gets its answer; hangup reaches the invitee.
func TestAPICallToGoResolver(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	gi := &goInvitee{hungup: make(chan *signaling.Error, 1)}
	var dest signaling.Destination
	env.core.AddResolver("sip", signaling.ResolverFunc(func(_ context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		dest = d
		return []signaling.Invitee{gi}, nil
	}))
	a := dial(t, env.url)
	a.Login("alice", "")
	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	callID := a.OK("media", "call", "start", msg{"type": "sip", "url": "sip:bob@127.0.0.1", "session_id": sid, "offer": msg{"sdp": "A"}})["call_id"].(string)
	peers.WaitFor(t, 2*time.Second, "invited", func() bool { gi.mu.Lock(); defer gi.mu.Unlock(); return gi.h != nil })
	if dest.Callee != "sip:bob@127.0.0.1" || dest.Caller.User != "alice" || gi.inv.CallID != callID || gi.inv.Offer.SDP() != "A" {
		t.Fatalf("dest = %+v inv = %+v", dest, gi.inv)
	}
	gi.h.Ringing(nil)
	a.Event("media", "call", "ringing", callID)
	if err := gi.h.Accepted(signaling.Desc{"sdp": "phone"}, ""); err != nil {
		t.Fatal(err)
	}
	ev := a.Event("media", "session", "answer", sid)
	if ans, _ := body(ev)["answer"].(map[string]any); ans["sdp"] != "phone" {
		t.Fatalf("answer = %v", ev)
	}
	a.OK("media", "call", "hangup", msg{"call_id": callID})
	select {
	case e := <-gi.hungup:
		if e.Code != signaling.CodeUserStop {
			t.Fatalf("hangup = %v", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("invitee not hung up")
	}
}

type goObserver struct {
	ringing  chan struct{}
	answered chan signaling.Desc
	hangup   chan *signaling.Error
}

func (o *goObserver) CallRinging(string, signaling.Desc)      { o.ringing <- struct{}{} }
func (o *goObserver) CallAnswered(_ string, a signaling.Desc) { o.answered <- a }
func (o *goObserver) CallHangup(_ string, e *signaling.Error) { o.hangup <- e }

// A Go front end (as SIP inbound will) starts a session and a call to an
// API user and follows it through its observer; the API user ends it.
func TestGoOriginatedCallToAPIUser(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	b := dial(t, env.url)
	b.Login("bob", "")
	ctx := context.Background()
	res, err := env.core.StartSession(ctx, signaling.SessionRequest{Type: "p2p", Offer: signaling.Desc{"sdp": "trunk"}, Owner: "sip:call-1"})
	if err != nil {
		t.Fatal(err)
	}
	o := &goObserver{ringing: make(chan struct{}, 1), answered: make(chan signaling.Desc, 1), hangup: make(chan *signaling.Error, 1)}
	callID, err := env.core.StartCall(ctx, signaling.CallRequest{Type: "user", Callee: "bob", SessionID: res.SessionID,
		Offer: signaling.Desc{"sdp": "trunk"}, Caller: signaling.CallerInfo{Name: "Trunk", ID: "+123", Owner: "sip:call-1"}, Observer: o})
	if err != nil {
		t.Fatal(err)
	}
	inv := b.Next(apitest.IsRequest("media", "call", "invite"), 5*time.Second, "invite")["data"].(map[string]any)
	if inv["call_id"] != callID || inv["caller_id"] != "+123" {
		t.Fatalf("invite = %v", inv)
	}
	b.OK("media", "call", "ringing", msg{"call_id": callID})
	<-o.ringing
	b.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "web"}})
	if a := <-o.answered; a.SDP() != "web" {
		t.Fatalf("answered = %v", a)
	}
	b.OK("media", "call", "hangup", msg{"call_id": callID, "code": 1013})
	if e := <-o.hangup; e.Code != signaling.CodeUserStop {
		t.Fatalf("hangup = %v", e)
	}
	if _, ok := env.core.LookupSession(res.SessionID); ok {
		t.Fatal("session survived its call")
	}
}

// With a certificate configured the API is served over wss.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := peers.SelfSignedCert(t)
	env := startServer(t, wsapi.Config{TLSCert: certFile, TLSKey: keyFile}, signaling.Options{})
	wss := "wss" + env.url[len("ws"):]
	c, err := apitest.DialRawWith(t, wss, apitest.RawOptions{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	c.Login("u", "p")
	// Plain ws is not served on the TLS port.
	if ws2, _, err := websocket.DefaultDialer.Dial(env.url, nil); err == nil {
		ws2.Close()
		t.Fatal("plain ws accepted on the TLS listener")
	}
}
