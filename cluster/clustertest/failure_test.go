package clustertest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// party is a test's API user with a loopback WebRTC (PCMU) peer playing its own tone.
type party struct {
	t       *testing.T
	name    string
	api     *apitest.Conn
	peer    *peers.PCMUPeer
	invites chan *nkclient.Invite
}

func newParty(t *testing.T, node *peers.Node, user string) *party {
	t.Helper()
	p := &party{t: t, name: user + "@" + node.ID, peer: peers.NewPCMUPeer(t, user), invites: make(chan *nkclient.Invite, 4)}
	p.api = login(t, node, user, nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { p.invites <- inv }})
	return p
}

// nextInvite waits for p's next invite.
func (p *party) nextInvite() *nkclient.Invite {
	p.t.Helper()
	select {
	case inv := <-p.invites:
		return inv
	case <-time.After(15 * time.Second):
		p.t.Fatalf("no invite at %s", p.name)
		return nil
	}
}

// call starts a proxy session for p's peer on p's node and a call to the user callee,
// linked to it; it returns the call and session ids. answered completes the caller's side
// once the callee accepted.
func (p *party) call(callee string) (callID, sessionID string) {
	p.t.Helper()
	ctx := p.t.Context()
	s, err := p.api.C.StartSession(ctx, nkclient.SessionStart{Type: "proxy", Offer: &nkclient.SDP{SDP: p.peer.Offer()}})
	if err != nil {
		p.t.Fatal(err)
	}
	callID, err = p.api.C.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: callee, SessionID: s.SessionID, Offer: s.Offer})
	if err != nil {
		p.t.Fatal(err)
	}
	return callID, s.SessionID
}

func (p *party) answered(sessionID string) {
	p.t.Helper()
	ev := p.api.Event(apitest.Media("session", "answer", sessionID), nil)
	var a struct {
		Answer struct {
			SDP string `json:"sdp"`
		} `json:"answer"`
	}
	b, _ := json.Marshal(ev)
	_ = json.Unmarshal(b, &a)
	if a.Answer.SDP == "" {
		p.t.Fatalf("%s: answer event without SDP: %v", p.name, ev)
	}
	p.peer.SetAnswer(a.Answer.SDP)
}

// accept answers inv with p's peer.
func (p *party) accept(inv *nkclient.Invite) {
	p.t.Helper()
	if err := inv.Accept(p.t.Context(), nkclient.SDP{SDP: p.peer.Answer(inv.Offer.SDP)}, ""); err != nil {
		p.t.Fatalf("%s accept: %v", p.name, err)
	}
}

// talk sends p's tone for the test's life and returns how to read the packet count.
func (p *party) talk(hz float64) {
	ctx, cancel := context.WithCancel(context.Background())
	p.t.Cleanup(cancel)
	go p.peer.SendTone(ctx, hz, 10*time.Minute)
}

func (p *party) packets() int { _, n := p.peer.Heard(); return n }

// hears checks that p heard hz dominantly in what it received after the first from packets.
func (p *party) hears(hz, other float64) {
	p.t.Helper()
	pcm, n := p.peer.Heard()
	f, ratio := audiotest.Dominant(pcm[len(pcm)/2:], 8000, hz, other)
	p.t.Logf("%s heard %d packets: %.0f Hz (ratio %.1f)", p.name, n, f, ratio)
	if f != hz || ratio < 10 {
		p.t.Errorf("%s heard %.0f Hz (ratio %.1f), want %v Hz", p.name, f, ratio, hz)
	}
}

// callUp sets up an answered call from a (on its node) to the user b, b's connection given.
func callUp(t *testing.T, a, b *party, callee string) (callID string, inv *nkclient.Invite) {
	t.Helper()
	callID, sid := a.call(callee)
	inv = b.nextInvite()
	if inv.CallID != callID {
		t.Fatalf("invite %s, want %s", inv.CallID, callID)
	}
	b.accept(inv)
	a.answered(sid)
	a.talk(1000)
	b.talk(600)
	peers.WaitFor(t, 10*time.Second, "audio both ways", func() bool { return a.packets() > 50 && b.packets() > 50 })
	return callID, inv
}

// One user (bob) logged in on two nodes: a call from alice on node 1 rings both connections;
// bob answers on node 2; the connection on node 1 gets hangup 2025 (originator cancel); the
// audio flows (alice's proxy on node 1 ⇄ bob's peer) and alice's hangup reaches node 2.
func TestForkingToOneUserOnTwoNodes(t *testing.T) {
	needCluster(t)
	nats := peers.StartNATS(t, peers.NATSOptions{})
	nodes := startNodes(t, nats.URL(), 2, "", false)
	bob1, bob2 := newParty(t, nodes[0], "bob"), newParty(t, nodes[1], "bob")
	alice := newParty(t, nodes[0], "alice")
	admin := login(t, nodes[0], "admin", nkclient.Options{})
	waitUserOn(t, admin, "n1", "bob", "n1", "n2")

	callID, sid := alice.call("bob")
	inv1, inv2 := bob1.nextInvite(), bob2.nextInvite()
	if inv1.CallID != callID || inv2.CallID != callID {
		t.Fatalf("invites %s and %s, want %s", inv1.CallID, inv2.CallID, callID)
	}
	bob2.accept(inv2)
	alice.answered(sid)
	select {
	case <-inv1.Done():
		if h := inv1.HangupReason(); h.Code != signaling.CodeOriginatorCancel {
			t.Fatalf("bob on n1 ended with %+v, want 2025", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's connection on n1 still rings")
	}
	alice.talk(1000)
	bob2.talk(600)
	peers.WaitFor(t, 10*time.Second, "audio both ways", func() bool { return alice.packets() > 75 && bob2.packets() > 75 })
	alice.hears(600, 1000)
	bob2.hears(1000, 600)
	if err := alice.api.C.Hangup(t.Context(), callID, 0, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inv2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("alice's hangup did not reach bob on n2")
	}
}

// SIGKILL of a node: (1) while it rings: alice's call (node 1) to bob (node 2 only) ends with
// 2040 node_lost naming n2, well before the ring time (30 s), and bob vanishes from n1's view;
// during an answered call, (2) when the caller's node dies the callee on the surviving node
// gets hangup 2040, (3) when the callee's node dies the caller gets hangup 2040.
func TestNodeKilled(t *testing.T) {
	needCluster(t)
	nats := peers.StartNATS(t, peers.NATSOptions{})
	t.Run("ringing", func(t *testing.T) {
		nodes := startNodes(t, nats.URL(), 2, "", false)
		bob := newParty(t, nodes[1], "bob")
		alice := newParty(t, nodes[0], "alice")
		admin := login(t, nodes[0], "admin", nkclient.Options{})
		waitUserOn(t, admin, "n1", "bob", "n2")
		callID, _ := alice.call("bob")
		bob.nextInvite()
		start := time.Now()
		nodes[1].Kill()
		h := alice.api.Event(apitest.Media("call", "hangup", callID), nil)
		if h["code"] != float64(signaling.CodeNodeLost) || !strings.Contains(h["reason"].(string), "n2") {
			t.Fatalf("hangup after n2 was killed: %v", h)
		}
		t.Logf("the call ringing a killed node ended after %v (presence_ttl %v, ring time 30s)", time.Since(start).Round(time.Millisecond), ttl)
		waitUserOn(t, admin, "n1", "bob")
	})
	t.Run("caller-node-during-call", func(t *testing.T) {
		nodes := startNodes(t, nats.URL(), 2, "", false)
		bob := newParty(t, nodes[1], "bob")
		alice := newParty(t, nodes[0], "alice")
		admin := login(t, nodes[0], "admin", nkclient.Options{})
		waitUserOn(t, admin, "n1", "bob", "n2")
		_, inv := callUp(t, alice, bob, "bob")
		nodes[0].Kill()
		select {
		case <-inv.Done():
		case <-time.After(15 * time.Second):
			t.Fatal("bob's call on n2 did not end after n1 was killed")
		}
		if h := inv.HangupReason(); h.Code != signaling.CodeNodeLost {
			t.Fatalf("bob's call ended with %+v, want 2040", h)
		}
	})
	t.Run("callee-node-during-call", func(t *testing.T) {
		nodes := startNodes(t, nats.URL(), 2, "", false)
		bob := newParty(t, nodes[1], "bob")
		alice := newParty(t, nodes[0], "alice")
		admin := login(t, nodes[0], "admin", nkclient.Options{})
		waitUserOn(t, admin, "n1", "bob", "n2")
		callID, _ := callUp(t, alice, bob, "bob")
		nodes[1].Kill()
		h := alice.api.Event(apitest.Media("call", "hangup", callID), nil)
		if h["code"] != float64(signaling.CodeNodeLost) {
			t.Fatalf("alice's call after bob's node was killed: %v", h)
		}
	})
}

// NATS restarted under a live call between nodes: the call goes on (media never crossed NATS:
// bob keeps receiving audio after the restart, and nobody is hung up); once NATS is back the
// nodes find each other again and a new cross-node call is answered.
func TestNATSRestartUnderLiveCall(t *testing.T) {
	needCluster(t)
	nats := peers.StartNATS(t, peers.NATSOptions{})
	nodes := startNodes(t, nats.URL(), 2, "", false, "NKB_CLUSTER_REQUEST_TIMEOUT=3s")
	bob := newParty(t, nodes[1], "bob")
	alice := newParty(t, nodes[0], "alice")
	admin := login(t, nodes[0], "admin", nkclient.Options{})
	waitUserOn(t, admin, "n1", "bob", "n2")
	callID, inv := callUp(t, alice, bob, "bob")

	nats.Restart()
	before := bob.packets()
	peers.WaitFor(t, 10*time.Second, "audio still reaching bob after the restart", func() bool { return bob.packets() > before+100 })
	select {
	case <-inv.Done():
		t.Fatalf("bob's call ended by the NATS restart: %+v", inv.HangupReason())
	default:
	}
	var info map[string]any
	if err := alice.api.Req("media", "call", "info", map[string]any{"call_id": callID}, &info); err != nil {
		t.Fatalf("alice's call after the restart: %v", err)
	}
	alice.hears(600, 1000)
	bob.hears(1000, 600)

	// Cross-node calls resume: carol on n2 is found from n1 and answers a new call.
	carol := newParty(t, nodes[1], "carol")
	waitUserOn(t, admin, "n1", "carol", "n2")
	dave := newParty(t, nodes[0], "dave")
	callUp(t, dave, carol, "carol")
}
