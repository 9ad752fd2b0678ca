package nkclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// exampleServer starts an nkbridge control API server in this process
// (127.0.0.1, any free port, no users: any login is accepted on loopback).
// Against a running daemon, use its address instead: ws://127.0.0.1:9010/.
func exampleServer() *apiServer {
	s, err := startAPIServer(wsapi.Config{}, false, nil)
	if err != nil {
		panic(err)
	}
	return s
}

// originOf is the Origin a page served by the API's own host would send.
func originOf(url string) string { return strings.Replace(url, "ws://", "http://", 1) }

// Connect, log in, start a signalling-only session and stop it.
func Example() {
	srv := exampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{Origin: originOf(srv.URL)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if _, err := c.Login(ctx, "alice", "secret"); err != nil {
		fmt.Println(err)
		return
	}
	s, err := c.StartSession(ctx, nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	stopped := c.Events(nkclient.Selector{Class: "media", Subclass: "session", Type: "stop", ObjID: s.SessionID})
	if err := c.StopSession(ctx, s.SessionID, 0, "done"); err != nil {
		fmt.Println(err)
		return
	}
	ev := <-stopped.C
	fmt.Printf("session %s: %s\n", ev.Type, ev.Body)
	// Output: session stop: {"code":9999,"reason":"done"}
}

// Errors of the API are *APIError values carrying the API code.
func ExampleAPIError() {
	srv := exampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.StartSession(ctx, nkclient.SessionStart{Type: "p2p"}) // before login
	var ae *nkclient.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.Code, ae.Text)
	}
	_, _ = c.Login(ctx, "alice", "secret")
	_, err = c.StartSession(ctx, nkclient.SessionStart{Type: "nope"})
	fmt.Println(err)
	// Output:
	// 1031 Not authenticated: log in first
	// nkbridge: 2002 Unknown session type: nope
}

// Bob answers the calls he gets; Alice calls him and receives his answer
// on her session, then hangs up.
func ExampleOptions_onInvite() {
	srv := exampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	hungUp := make(chan nkclient.Hangup, 1)
	bob, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{
		OnInvite: func(ctx context.Context, inv *nkclient.Invite) {
			fmt.Printf("bob: call from %s, offer %q\n", inv.CallerName, inv.Offer.SDP)
			if err := inv.Ringing(ctx, nil); err != nil {
				fmt.Println(err)
			}
			if err := inv.Accept(ctx, nkclient.SDP{SDP: "v=0 bob"}, ""); err != nil {
				fmt.Println(err)
			}
			<-inv.Done()
			hungUp <- inv.HangupReason()
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	if _, err := bob.Login(ctx, "bob", "pw"); err != nil {
		fmt.Println(err)
		return
	}

	alice, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	if _, err := alice.Login(ctx, "alice", "pw"); err != nil {
		fmt.Println(err)
		return
	}
	s, err := alice.StartSession(ctx, nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0 alice"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	answered := alice.Events(nkclient.Selector{Class: "media", Subclass: "session", Type: "answer", ObjID: s.SessionID})
	callID, err := alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", SessionID: s.SessionID,
		Offer: &nkclient.SDP{SDP: "v=0 alice", CallerName: "Alice"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := <-answered.C
	fmt.Printf("alice: answer %s\n", ev.Body)
	if err := alice.Hangup(ctx, callID, 0, "bye"); err != nil {
		fmt.Println(err)
	}
	fmt.Printf("bob: hangup %+v\n", <-hungUp)
	// Output:
	// bob: call from Alice, offer "v=0 alice"
	// alice: answer {"answer":{"sdp":"v=0 bob"}}
	// bob: hangup {Code:9999 Reason:bye}
}

// Events of a class of one's own: Bob subscribes, Alice sends one.
func ExampleClient_OnEvent() {
	srv := exampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(user string) *nkclient.Client {
		c, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{})
		if err != nil {
			panic(err)
		}
		if _, err := c.Login(ctx, user, "pw"); err != nil {
			panic(err)
		}
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	defer alice.Close()
	defer bob.Close()

	got := make(chan string, 1)
	stop := bob.OnEvent(nkclient.Selector{Class: "myapp"}, func(ev nkclient.Event) {
		got <- fmt.Sprintf("%s/%s %s %s", ev.Class, ev.Type, ev.ObjID, ev.Body)
	})
	defer stop()
	if err := bob.Subscribe(ctx, nkclient.Selector{Class: "myapp", Type: "chat"}); err != nil {
		fmt.Println(err)
		return
	}
	err := alice.SendEvent(ctx, nkclient.Event{Class: "myapp", Type: "chat", ObjID: "room1", Body: []byte(`{"text":"hi"}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	// Output: myapp/chat room1 {"text":"hi"}
}
