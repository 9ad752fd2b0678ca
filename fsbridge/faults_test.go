package fsbridge_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// FreeSWITCH answering -ERR to the transfer: a clear 2301 error, and the call, channel
// and media are all released.
func TestStartTransferERR(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	e.fs.FailAPI("uuid_transfer", "-ERR No such channel!\n")
	p := newRTCPeer(t)
	text := c.Fail(2301, "media", "session", "start", msg{"type": "echo", "backend": "freeswitch", "session_id": "err-1",
		"offer": msg{"sdp": p.offer(), "sdp_type": "webrtc"}})
	if !strings.Contains(text, "No such channel") {
		t.Fatalf("error text does not say what FreeSWITCH said: %q", text)
	}
	e.noLeaks()
	// The same id can be used again once FreeSWITCH behaves.
	e.fs.FailAPI("uuid_transfer", "")
	sid := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "err-1"})
	c.OK("media", "session", "stop", msg{"session_id": sid})
	e.noLeaks()
}

// The dialplan refusing the call (403) and FreeSWITCH's SIP side refusing it (503).
func TestStartRefusedBySIP(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	e.sip.SetReject(503)
	text := c.Fail(2301, "media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	if !strings.Contains(text, "503") {
		t.Fatalf("error text: %q", text)
	}
	e.sip.SetReject(0)
	// A session id the shipped dialplan would refuse is refused before any call is made.
	c.Fail(1035, "media", "session", "start", msg{"type": "park", "backend": "freeswitch", "session_id": "a@b",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	c.Fail(2010, "media", "session", "start", msg{"type": "park", "backend": "freeswitch"})
	c.Fail(1048, "media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "room_id": "x y",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	c.Fail(1048, "media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": "v=0\r\ngarbage", "sdp_type": "webrtc"}})
	if n := e.sip.Invites(); n != 1 {
		t.Fatalf("%d INVITEs reached FreeSWITCH, want only the refused one", n)
	}
	e.noLeaks()
}

// A slow FreeSWITCH: the transfer times out, the start fails cleanly (2300), nothing is
// left, and later sessions work.
func TestSlowFreeSWITCH(t *testing.T) {
	e := newEnv(t, envOpts{commandTimeout: 300 * time.Millisecond})
	c := e.dial()
	e.fs.Delay("api uuid_transfer", 1500*time.Millisecond)
	start := time.Now()
	text := c.Fail(2300, "media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	if !strings.Contains(text, "in time") {
		t.Fatalf("error text: %q", text)
	}
	if d := time.Since(start); d > 1400*time.Millisecond {
		t.Fatalf("start waited %s for a command with a 300ms timeout", d)
	}
	e.noLeaks()
	e.fs.ClearDelays()
	peers.WaitFor(t, 10*time.Second, "Event Socket usable again", func() bool {
		return e.svc.Client().Connected()
	})
	sid := startPark(t, e, c, newRTCPeer(t), nil)
	c.OK("media", "session", "stop", msg{"session_id": sid})
	e.noLeaks()
}

// FreeSWITCH not reachable at all: 2300 after command_timeout, no SIP call made.
func TestFreeSWITCHDown(t *testing.T) {
	e := newEnv(t, envOpts{commandTimeout: 500 * time.Millisecond})
	c := e.dial()
	e.fs.StopListening()
	peers.WaitFor(t, 5*time.Second, "disconnect noticed", func() bool {
		return !e.svc.Client().Connected()
	})
	text := c.Fail(2300, "media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	if !strings.Contains(text, "not connected") || e.sip.Invites() != 0 {
		t.Fatalf("error %q, %d INVITEs", text, e.sip.Invites())
	}
	if err := e.fs.Listen(); err != nil {
		t.Fatal(err)
	}
	e.noLeaks()
}

// The Event Socket connection dropped mid-call and restored: live sessions survive, and
// what changed meanwhile is reconciled — a session whose channel vanished (its BYE lost)
// stops with 2302, a channel moved out of place is moved back, a stray nkbridge channel
// is killed, and FreeSWITCH's other channels are left alone.
func TestESLDropAndReconcile(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	a := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "keep"})
	b := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "vanish"})
	cha, chb := e.channelOf(a), e.channelOf(b)

	// Plain drop, quickly restored: nothing changes.
	e.fs.DropConnections()
	if err := e.fs.WaitSubscribed(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "reconciled after reconnect", func() bool {
		return e.countCommands("api show channels as json") >= 2
	})
	if ids := e.core.ListSessions(); len(ids) != 2 {
		t.Fatalf("sessions after a reconnect: %v", ids)
	}

	// Longer outage with changes behind nkbridge's back.
	e.fs.StopListening()
	peers.WaitFor(t, 5*time.Second, "disconnect noticed", func() bool {
		return !e.svc.Client().Connected()
	})
	if err := e.fs.Execute(cha.UUID, "echo", ""); err != nil {
		t.Fatal(err)
	}
	e.sip.SetDropBYE(true)
	if err := e.fs.Hangup(chb.UUID, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	stray, err := e.fs.InboundCall(fakefs.ChannelSpec{SIPHeaders: map[string]string{"X-NKB-Session": "ghost"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.fs.InboundCall(fakefs.ChannelSpec{Context: "default", Dest: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	kills := e.countCommands("api uuid_kill")
	if err := e.fs.Listen(); err != nil {
		t.Fatal(err)
	}
	stop := c.Event(apitest.Media("session", "stop", b), nil)
	if num(stop["code"]) != 2302 {
		t.Fatalf("vanished channel: stop %v", stop)
	}
	e.waitCommand("api uuid_kill " + stray.UUID)
	peers.WaitFor(t, 5*time.Second, "kept session moved back to park", func() bool {
		ch, _ := e.fs.Channel(cha.UUID)
		return ch.Application == "park"
	})
	if _, ok := e.fs.Channel(other.UUID); !ok {
		t.Fatal("reconcile killed a channel that is not nkbridge's")
	}
	if n := e.countCommands("api uuid_kill") - kills; n != 1 {
		t.Fatalf("%d uuid_kill after reconnect, want 1 (the stray)", n)
	}
	// The surviving session is fully usable.
	c.OK("media", "session", "update", msg{"session_id": a, "type": "session_type", "session_type": "echo"})
	e.waitCommand("api uuid_transfer " + cha.UUID + " echo inline")
	e.sip.SetDropBYE(false)
	c.OK("media", "session", "stop", msg{"session_id": a})
	if err := e.fs.Hangup(other.UUID, ""); err != nil {
		t.Fatal(err)
	}
	e.noLeaks()
}

// An event flood overflows nkbridge's event queue (its dispatcher held up meanwhile): the
// loss triggers a reconciliation, sessions survive, and a hangup whose event was lost in
// the flood still stops its session.
func TestEventFlood(t *testing.T) {
	gate := make(chan struct{})
	e := newEnv(t, envOpts{eventQueue: 64, gate: gate})
	c := e.dial()
	a := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "flood-a"})
	b := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "flood-b"})
	chb := e.channelOf(b)
	shows := e.countCommands("api show channels as json")
	e.sip.SetDropBYE(true) // only the Event Socket can tell nkbridge about the hangup
	e.fs.Fire("CUSTOM", "conference::maintenance", []fakefs.Header{{Name: "Conference-Name", Value: "gate"},
		{Name: "Conference-Profile-Name", Value: "nkbridge"}, {Name: "Action", Value: "conference-create"}}, "")
	for i := 0; i < 2000; i++ {
		e.fs.Fire("HEARTBEAT", "", []fakefs.Header{{Name: "Event-Info", Value: "System Ready"}}, "")
	}
	if err := e.fs.Hangup(chb.UUID, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		e.fs.Fire("HEARTBEAT", "", []fakefs.Header{{Name: "Event-Info", Value: "System Ready"}}, "")
	}
	// Let the reader take (and drop) them. No condition to wait on: the fake's own
	// per-connection queue drops an unknown part of the flood before the reader sees it.
	time.Sleep(200 * time.Millisecond) // no condition: see above
	close(gate)
	stop := c.Event(apitest.Media("session", "stop", b), nil)
	if num(stop["code"]) != 2302 {
		t.Fatalf("stop: %v", stop)
	}
	peers.WaitFor(t, 10*time.Second, "reconciliation after lost events", func() bool {
		return e.countCommands("api show channels as json") > shows
	})
	if _, ok := e.core.LookupSession(a); !ok {
		t.Fatal("a session without any change did not survive the flood")
	}
	if n := e.countCommands("auth "); n != 1 {
		t.Fatalf("the Event Socket reconnected (%d auths): the reconciliation must come from the lost events", n)
	}
	e.sip.SetDropBYE(false)
	c.OK("media", "session", "update", msg{"session_id": a, "type": "session_type", "session_type": "echo"})
	c.OK("media", "session", "stop", msg{"session_id": a})
	e.noLeaks()
}

// nkbridge's SIP side of the FreeSWITCH legs talks to FreeSWITCH only: a BYE for a live
// call from another address is dropped unanswered and the session lives on.
func TestStrangerBYEIgnored(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	sid := startPark(t, e, c, newRTCPeer(t), nil)
	ch := e.channelOf(sid)
	callID := ch.Var("sip_call_id")
	if callID == "" {
		t.Fatal("channel without sip_call_id")
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	defer conn.Close()
	me := conn.LocalAddr().String()
	to := e.svc.Dialer().Addr()
	bye := "BYE sip:nkbridge@" + to + " SIP/2.0\r\nVia: SIP/2.0/UDP " + me + ";branch=z9hG4bK-stranger\r\n" +
		"From: <sip:x@127.0.0.2>;tag=1\r\nTo: <sip:nkbridge@127.0.0.1>;tag=2\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	ua, _ := net.ResolveUDPAddr("udp", to)
	if _, err := conn.WriteToUDP([]byte(bye), ua); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	buf := make([]byte, 2048)
	if n, _, err := conn.ReadFromUDP(buf); err == nil {
		t.Fatalf("a stranger got an answer: %q", buf[:n])
	}
	if _, ok := e.core.LookupSession(sid); !ok || e.sip.Calls() != 1 {
		t.Fatal("a stranger's BYE ended the session")
	}
	c.OK("media", "session", "stop", msg{"session_id": sid})
	e.noLeaks()
}

// FreeSWITCH hangs the channel up while nkbridge is moving it: the start fails with an
// FS error and nothing is left.
func TestHangupDuringStart(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	e.fs.HandleAPI("uuid_transfer", func(args string) string {
		id, _, _ := strings.Cut(args, " ")
		_ = e.fs.Hangup(id, "DESTINATION_OUT_OF_ORDER")
		return "-ERR No such channel!\n"
	})
	err := c.Req("media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}}, nil)
	var ae *nkclient.APIError
	if !errors.As(err, &ae) || (ae.Code != 2301 && ae.Code != 2302) {
		t.Fatalf("start during a hangup: %v", err)
	}
	e.noLeaks()
}

// The Event Socket is down exactly when FreeSWITCH creates the channel, so its events
// are never seen: after the reconnection the reconciliation finds the channel (by its
// X-NKB-Session and X-NKB-Leg) and the start completes — also when the channel is still
// too new for FreeSWITCH's lagging "show channels" at that moment (the table is read
// again) rather than failing with 2300 after channel_timeout.
func TestChannelAdoptedAfterReconnect(t *testing.T) {
	for name, c := range map[string]struct{ lag, outage time.Duration }{
		"in the table at reconnect":          {fakefs.DefaultShowChannelsLag, 300 * time.Millisecond},
		"too new for the table at reconnect": {time.Second, 100 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{fake: fakefs.Options{ShowChannelsLag: c.lag}, channelTimeout: 5 * time.Second})
			api := e.dial()
			relisten := make(chan error, 1)
			e.sip.SetBeforeRoute(func(fakefs.INVITE) {
				e.fs.StopListening()
				peers.Poll(10*time.Second, func() bool { return !e.svc.Client().Connected() })
				go func() {
					time.Sleep(c.outage) // the subject: FreeSWITCH away for this long
					relisten <- e.fs.Listen()
				}()
			})
			begun := time.Now()
			sid := startPark(t, e, api, newRTCPeer(t), msg{"session_id": "adopted"})
			if err := <-relisten; err != nil {
				t.Fatal(err)
			}
			if d := time.Since(begun); d > 3*time.Second {
				t.Fatalf("start took %s", d)
			}
			ch := e.channelOf(sid)
			e.waitCommand("api uuid_getvar " + ch.UUID + " sip_h_X-NKB-Leg")
			e.waitCommand("api uuid_transfer " + ch.UUID + " park inline")
			e.sip.SetBeforeRoute(nil)
			api.OK("media", "session", "stop", msg{"session_id": sid})
			e.noLeaks()
		})
	}
}
