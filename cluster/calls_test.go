package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// inbox collects the invites of several callee connections, by label.
type inbox struct {
	t  testing.TB
	ch chan labelled
}

type labelled struct {
	label string
	inv   *nkclient.Invite
}

func newInbox(t testing.TB) *inbox { return &inbox{t: t, ch: make(chan labelled, 16)} }

func (b *inbox) opts(label string) nkclient.Options {
	return nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { b.ch <- labelled{label, inv} }}
}

func (b *inbox) next() labelled {
	b.t.Helper()
	select {
	case l := <-b.ch:
		return l
	case <-time.After(10 * time.Second):
		b.t.Fatal("no invite")
		return labelled{}
	}
}

func hangupOf(t testing.TB, inv *nkclient.Invite) nkclient.Hangup {
	t.Helper()
	select {
	case <-inv.Done():
		return inv.HangupReason()
	case <-time.After(10 * time.Second):
		t.Fatalf("invite %s not ended", inv.CallID)
		return nkclient.Hangup{}
	}
}

// waitUser waits until node tn finds user on the given number of other nodes.
func waitUser(t testing.TB, tn *testNode, user string, nodes int) {
	t.Helper()
	peers.WaitFor(t, 15*time.Second, user+" seen from "+tn.id, func() bool {
		cs, _ := tn.node.Contacts(t.Context(), user)
		seen := map[string]bool{}
		for _, c := range cs {
			seen[c.Node] = true
		}
		return len(seen) == nodes
	})

}

// A call to a user rings every connection of the user on every node in parallel; ringing
// and the answer cross nodes; the first acceptance wins and the others get hangup 2025; the
// caller's hangup reaches the accepted callee on its node.
func TestCrossNodeUserCallForking(t *testing.T) {
	ns := startNATS(t)
	n1, n2, n3 := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	box := newInbox(t)
	n1.login("bob", box.opts("n1"))
	n2.login("bob", box.opts("n2a"))
	n2.login("bob", box.opts("n2b"))
	bob3 := n3.login("bob", box.opts("n3"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 2)

	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0 offer"}})
	if err != nil {
		t.Fatal(err)
	}
	invs := map[string]*nkclient.Invite{}
	for range 4 {
		l := box.next()
		if l.inv.CallID != callID || l.inv.Offer == nil || l.inv.Offer.SDP != "v=0 offer" {
			t.Fatalf("invite at %s: %+v", l.label, l.inv)
		}
		invs[l.label] = l.inv
	}
	if len(invs) != 4 {
		t.Fatalf("invites: %v", invs)
	}
	if err := invs["n2b"].Ringing(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "ringing", callID), nil)
	if err := invs["n3"].Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	got := alice.Event(apitest.Media("call", "accepted", callID), nil)
	if a, _ := got["answer"].(map[string]any); a["sdp"] != "v=0 answer" {
		t.Fatalf("accepted: %v", got)
	}
	for _, l := range []string{"n1", "n2a", "n2b"} {
		if h := hangupOf(t, invs[l]); h.Code != signaling.CodeOriginatorCancel {
			t.Fatalf("%s ended with %+v, want 2025", l, h)
		}
	}
	// A late acceptance elsewhere is refused.
	var ae *nkclient.APIError
	if err := invs["n2a"].Accept(t.Context(), nkclient.SDP{SDP: "v=0 late"}, ""); !errors.As(err, &ae) {
		t.Fatalf("late accept: %v", err)
	}
	if err := alice.C.Hangup(t.Context(), callID, 0, "bye"); err != nil {
		t.Fatal(err)
	}
	h := bob3.Event(apitest.Media("call", "hangup", callID), nil)
	if h["reason"] != "bye" {
		t.Fatalf("bob on n3 got hangup %v", h)
	}
	peers.WaitFor(t, 15*time.Second, "calls gone on every node", func() bool {
		_, c1 := n1.core.Counts()
		_, c2 := n2.core.Counts()
		_, c3 := n3.core.Counts()
		return c1+c2+c3 == 0
	})

}

// The callee hangs up an answered call from its node: the caller on another node sees the
// hangup with the callee's code; a rejection by every contact is a rejection for the caller.
func TestCrossNodeCalleeHangupAndReject(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	box := newInbox(t)
	n2.login("bob", box.opts("n2"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 1)

	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv := box.next().inv
	if err := inv.Reject(t.Context(), 0, "busy"); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "rejected", callID), nil)
	h := alice.Event(apitest.Media("call", "hangup", callID), nil)
	if h["code"] != float64(signaling.CodeCallRejected) || h["reason"] != "busy" {
		t.Fatalf("caller's hangup after rejection: %v", h)
	}

	callID, err = alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv = box.next().inv
	if err := inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", callID), nil)
	if err := inv.Hangup(t.Context(), 0, "done"); err != nil {
		t.Fatal(err)
	}
	h = alice.Event(apitest.Media("call", "hangup", callID), nil)
	if h["reason"] != "done" {
		t.Fatalf("caller's hangup: %v", h)
	}
}

// A node killed while its user rings ends the call at once for the caller on another node
// with 2040 node_lost (the ring time is 20 s); a caller's node killed during a call ends it
// for the callee with 2040.
func TestNodeLostDuringCalls(t *testing.T) {
	ns := startNATS(t)
	n1, n2, n3 := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	box := newInbox(t)
	n2.login("bob", box.opts("n2"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 1)

	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	box.next()
	start := time.Now()
	n2.stop()
	h := alice.Event(apitest.Media("call", "hangup", callID), nil)
	if h["code"] != float64(signaling.CodeNodeLost) || !strings.Contains(h["reason"].(string), "n2") {
		t.Fatalf("hangup after n2 died: %v", h)
	}
	t.Logf("call ringing a killed node ended after %v (presence_ttl %v, ring time 20s)", time.Since(start).Round(time.Millisecond), testTTL)

	// carol on n3 accepts a call from alice on n1; n1 dies.
	carol := n3.login("carol", box.opts("n3"))
	waitUser(t, n1, "carol", 1)
	callID, err = alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "carol", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv := box.next().inv
	if err := inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", callID), nil)
	n1.stop()
	h = carol.Event(apitest.Media("call", "hangup", callID), nil)
	if h["code"] != float64(signaling.CodeNodeLost) {
		t.Fatalf("carol's hangup after n1 died: %v", h)
	}
}

// A call costs O(1) messages between nodes: a call from n1 to a user on n2 in a cluster of
// three sends nothing to n3, and a handful of messages in all.
func TestMessagesPerCall(t *testing.T) {
	ns := startNATS(t)
	n1, n2, _ := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	box := newInbox(t)
	n2.login("bob", box.opts("n2"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 1)

	mon, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	var mu sync.Mutex
	bySubject := map[string]int{}
	var total atomic.Int64
	sub, err := mon.Subscribe("nkb.v1.node.>", func(m *nats.Msg) {
		mu.Lock()
		bySubject[m.Subject]++
		mu.Unlock()
		total.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = mon.Flush()

	const calls = 5
	for range calls {
		callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
		if err != nil {
			t.Fatal(err)
		}
		inv := box.next().inv
		_ = inv.Ringing(t.Context(), nil)
		if err := inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
			t.Fatal(err)
		}
		alice.Event(apitest.Media("call", "accepted", callID), nil)
		_ = alice.C.Hangup(t.Context(), callID, 0, "")
		alice.Event(apitest.Media("call", "hangup", callID), nil)
	}
	peers.WaitFor(t, 15*time.Second, "messages settled", peers.Settled(func() int { return int(total.Load()) }))
	mu.Lock()
	defer mu.Unlock()
	perCall := float64(total.Load()) / calls
	t.Logf("node messages per call (invite, ringing, accepted, hangup; lookups are KV reads): %.1f; by subject %v", perCall, bySubject)
	for s := range bySubject {
		if strings.Contains(s, ".node.n3.") {
			t.Fatalf("a call between n1 and n2 sent to n3: %v", bySubject)
		}
	}
	if perCall > 6 {
		t.Fatalf("%.1f messages per call, want at most 6", perCall)
	}
}

// NATS restarted (losing the buckets): meanwhile each node serves its own clients and a call
// to a user on another node fails at once with 2041; once NATS is back the nodes publish
// their contacts again and calls cross nodes again.
func TestNATSRestart(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	box := newInbox(t)
	n2.login("bob", box.opts("n2"))
	n1.login("carol", box.opts("n1"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 1)

	ns.stop()
	peers.WaitFor(t, 15*time.Second, "n1 disconnected", func() bool { return !n1.node.connected() })
	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	h := alice.Event(apitest.Media("call", "hangup", callID), nil)
	if h["code"] != float64(signaling.CodeClusterUnavailable) {
		t.Fatalf("call to another node without NATS: %v", h)
	}
	// A local call goes on as usual.
	callID, err = alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "carol", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv := box.next()
	if inv.label != "n1" {
		t.Fatalf("invite at %s", inv.label)
	}
	if err := inv.inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", callID), nil)

	ns.start()
	waitUser(t, n1, "bob", 1)
	callID, err = alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv = box.next()
	if inv.label != "n2" || inv.inv.CallID != callID {
		t.Fatalf("after the restart: invite at %s for %s", inv.label, inv.inv.CallID)
	}
	if err := inv.inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", callID), nil)
}

// A draining node (SIGTERM) takes no new calls, the others do; its running calls go on.
func TestDrainingNode(t *testing.T) {
	ns := startNATS(t)
	n1, n2, n3 := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	box := newInbox(t)
	bob2 := n2.login("bob", box.opts("n2"))
	n3.login("bob", box.opts("n3"))
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "bob", 2)

	// A call answered on n2 before the drain.
	running, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := box.next(), box.next()
	if a.label != "n2" {
		a, b = b, a
	}
	if err := a.inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", running), nil)
	hangupOf(t, b.inv)

	n2.core.Drain() // what SIGTERM does (cmd/nkbridge: core.Drain, then the cluster node's Drain)
	n2.node.Drain()
	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv := box.next()
	if inv.label != "n3" || inv.inv.CallID != callID {
		t.Fatalf("a new call rang %s (%s)", inv.label, inv.inv.CallID)
	}
	if err := inv.inv.Accept(t.Context(), nkclient.SDP{SDP: "v=0 answer"}, ""); err != nil {
		t.Fatal(err)
	}
	alice.Event(apitest.Media("call", "accepted", callID), nil)
	select {
	case l := <-box.ch:
		t.Fatalf("the draining node rang: %s", l.label)
	default:
	}
	// The call through the draining node goes on until hung up.
	if ci := alice.OK("media", "call", "info", map[string]any{"call_id": running}); ci["state"] != signaling.CallAnswered {
		t.Fatalf("running call: %v", ci)
	}
	if err := alice.C.Hangup(t.Context(), running, 0, "end"); err != nil {
		t.Fatal(err)
	}
	if h := bob2.Event(apitest.Media("call", "hangup", running), nil); h["reason"] != "end" {
		t.Fatalf("hangup on the draining node: %v", h)
	}
}

// fakeDevice is a SIP phone or Verto login as the front ends present it to the core: a
// contact in the presence registry and an invitee from a resolver of its node.
type fakeDevice struct {
	node   string
	invite chan signaling.Invitation
}

func (d *fakeDevice) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	d.invite <- inv
	go func() { _ = h.Accepted(signaling.Desc{"sdp": "v=0 from " + d.node}, "") }()
	return nil
}

func (d *fakeDevice) Hangup(*signaling.Error) {}

// A SIP registration or a Verto login on one node is reachable from another: the call goes
// to the node holding it, whose own resolvers ring the device (so a phone is called through
// the node that holds its registration's flow).
func TestDevicesOnOtherNodes(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	phone := &fakeDevice{node: "n2", invite: make(chan signaling.Invitation, 2)}
	verto := &fakeDevice{node: "n2", invite: make(chan signaling.Invitation, 2)}
	n2.core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(func(_ context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee == "phone" {
			return []signaling.Invitee{phone}, nil
		}
		return nil, nil
	}))
	n2.core.AddResolver(signaling.CallTypeVerto, signaling.ResolverFunc(func(_ context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee == "vuser" {
			return []signaling.Invitee{verto}, nil
		}
		return nil, nil
	}))
	n2.core.Presence().Add(signaling.Contact{User: "phone", Kind: signaling.ContactSIP, ID: "phone sip:phone@127.0.0.1:5062"})
	n2.core.Presence().Add(signaling.Contact{User: "vuser", Kind: signaling.ContactVerto, ID: "sess-1"})
	alice := n1.login("alice", nkclient.Options{})
	waitUser(t, n1, "phone", 1)
	waitUser(t, n1, "vuser", 1)
	for _, tc := range []struct {
		typ, callee string
		dev         *fakeDevice
	}{{"user", "phone", phone}, {"verto", "vuser", verto}} {
		callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: tc.typ, Callee: tc.callee, Offer: &nkclient.SDP{SDP: "v=0 alice"}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case inv := <-tc.dev.invite:
			if inv.CallID != callID || inv.Offer.String("sdp") != "v=0 alice" || inv.Caller.User != "alice" {
				t.Fatalf("%s invite on n2: %+v", tc.typ, inv)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s not rung on n2", tc.typ, tc.callee)
		}
		got := alice.Event(apitest.Media("call", "accepted", callID), nil)
		if a, _ := got["answer"].(map[string]any); a["sdp"] != "v=0 from n2" {
			t.Fatalf("%s accepted: %v", tc.typ, got)
		}
		_ = alice.C.Hangup(t.Context(), callID, 0, "")
	}
	n2.core.Presence().Remove(signaling.ContactSIP, "phone sip:phone@127.0.0.1:5062")
	peers.WaitFor(t, 15*time.Second, "the phone's registration gone from n1's view", func() bool {
		cs, _ := n1.node.Contacts(t.Context(), "phone")
		return len(cs) == 0
	})

}
