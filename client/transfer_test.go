package nkclient_test

import (
	"context"
	"errors"
	"testing"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// TransferCall speaks media/call/transfer: a call that is not the client's is 2020, a bad target
// 1048, an unanswered call 1045 (the server's answers; moving a SIP party for real is sip/sipgw's
// TestBrowserAgentTransfersSIPCaller).
func TestTransferCall(t *testing.T) {
	srv := newServer(t, wsapi.Config{}, false, peers.TestLogger(t))
	ctx := context.Background()
	alice := dial(t, srv.URL, nkclient.Options{})
	login(t, alice, "alice")
	_, err := alice.TransferCall(ctx, "no-such-call", "dave", "")
	var e *nkclient.APIError
	if !errors.As(err, &e) || e.Code != signaling.CodeCallNotFound {
		t.Fatalf("transfer of an unknown call: %v, want 2020", err)
	}
	sid, err := alice.StartSession(ctx, nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	invited := make(chan struct{}, 1)
	bob := dial(t, srv.URL, nkclient.Options{OnInvite: func(context.Context, *nkclient.Invite) { invited <- struct{}{} }})
	login(t, bob, "bob")
	call, err := alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", SessionID: sid.SessionID})
	if err != nil {
		t.Fatal(err)
	}
	<-invited // ringing: still a call of alice's
	if _, err := alice.TransferCall(ctx, call, "dave\r\nVia: x", ""); !errors.As(err, &e) || e.Code != signaling.CodeInvalidParameters {
		t.Fatalf("transfer to a bad target: %v, want 1048", err)
	}
	if _, err := alice.TransferCall(ctx, call, "dave", "user"); !errors.As(err, &e) || e.Code != signaling.CodeInvalidOperation {
		t.Fatalf("transfer of a call not answered: %v, want 1045", err)
	}
}
