package fsbridge_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// Conference member events become room events with the member's session, whether the
// conference profile has verbose-events (the events carry the channel's X-NKB-Session)
// or not (FreeSWITCH's default: only the channel uuid), including the del-member that
// FreeSWITCH sends after nkbridge stopped the session and killed its channel.
func TestRoomMemberEventsVerboseOrNot(t *testing.T) {
	for name, noVerbose := range map[string]bool{"verbose-events": false, "no verbose-events": true} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{fake: fakefs.Options{NoVerboseEvents: noVerbose}})
			c := e.dial()
			c.OK("core", "event", "subscribe", msg{"class": "media", "subclass": "room"})
			c.OK("media", "room", "create", msg{"class": "mcu", "room_id": "members", "backend": "freeswitch"})
			d := c.OK("media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "room_id": "members",
				"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
			sid, _ := d["session_id"].(string)
			ch := e.channelOf(sid)
			joined := c.Event(apitest.Media("room", "started_member", "members"), nil)
			if joined["session_id"] != sid || joined["member_id"] != "1" {
				t.Fatalf("started_member: %v", joined)
			}
			if err := e.fs.Talk(ch.UUID, true); err != nil {
				t.Fatal(err)
			}
			if tk := c.Event(apitest.Media("room", "talking", "members"), nil); tk["session_id"] != sid || tk["talking"] != true {
				t.Fatalf("talking: %v", tk)
			}
			c.OK("media", "session", "stop", msg{"session_id": sid})
			e.waitCommand("api uuid_kill " + ch.UUID)
			left := c.Event(apitest.Media("room", "stopped_member", "members"), nil)
			if left["session_id"] != sid || left["member_id"] != "1" {
				t.Fatalf("stopped_member: %v", left)
			}
			c.OK("media", "room", "destroy", msg{"room_id": "members"})
			e.noLeaks()
		})
	}
}

// inTable waits until the fake's "show channels" (which lags like FreeSWITCH's) lists
// the channel running app.
func (e *env) inTable(channel, app string) {
	e.t.Helper()
	peers.WaitFor(e.t, 5*time.Second, "channel "+channel+" in show channels running "+app, func() bool {
		for _, c := range e.fs.ShowChannels() {
			if c.UUID == channel && c.Application == app {
				return true
			}
		}
		return false
	})
}

// FreeSWITCH's "show channels" lags new channels and moves (here by 500 ms). The Event
// Socket drops right after a session started and another moved: the reconciliation
// neither stops the new session (its channel is missing from the table but uuid_exists
// knows it) nor moves the other one back to where the stale table shows it.
func TestReconnectDuringBurstKeepsSessions(t *testing.T) {
	const lag = 500 * time.Millisecond
	e := newEnv(t, envOpts{fake: fakefs.Options{ShowChannelsLag: lag}})
	c := e.dial()
	moved := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "moved"})
	chm := e.channelOf(moved)
	e.inTable(chm.UUID, "park")
	c.OK("media", "session", "update", msg{"session_id": moved, "type": "session_type", "session_type": "echo"})
	fresh := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "fresh"})
	chf := e.channelOf(fresh)
	parks := e.countCommands("api uuid_transfer " + chm.UUID + " park inline")
	e.fs.DropConnections()

	// The reconciliation asks FreeSWITCH itself rather than stopping the session.
	e.waitCommand("api uuid_exists " + chf.UUID)
	e.waitCommand("api uuid_getvar " + chm.UUID + " current_application")
	// Let the table catch up and the re-checks see it.
	e.inTable(chf.UUID, "park")
	e.inTable(chm.UUID, "echo")
	shows := e.countCommands("api show channels as json")
	peers.WaitFor(t, 5*time.Second, "show channels read again", func() bool {
		return e.countCommands("api show channels as json") >= shows+2
	})
	for _, sid := range []string{moved, fresh} {
		if _, ok := e.core.LookupSession(sid); !ok {
			t.Fatalf("session %s stopped by the reconciliation", sid)
		}
	}
	for _, ev := range c.Pending() {
		if ev.Type == "stop" {
			t.Fatalf("stop event after the reconnect: %+v", ev)
		}
	}
	if n := e.countCommands("api uuid_transfer " + chm.UUID + " park inline"); n != parks {
		t.Fatalf("the moved session was moved back to park (%d transfers)", n-parks)
	}
	if got, _ := e.fs.Channel(chm.UUID); got.Application != "echo" {
		t.Fatalf("moved session's channel runs %q, want echo", got.Application)
	}
	c.OK("media", "session", "stop", msg{"session_id": moved})
	c.OK("media", "session", "stop", msg{"session_id": fresh})
	e.noLeaks()
}

// FreeSWITCH's own session rate (switch.conf.xml sessions-per-second, 30 by default)
// refuses calls beyond it with 503: the error says which setting to raise.
func TestSessionRateErrorNamesSetting(t *testing.T) {
	e := newEnv(t, envOpts{fake: fakefs.Options{SessionsPerSecond: 1}}) // 1: FreeSWITCH refuses every session
	c := e.dial()
	text := c.Fail(2301, "media", "session", "start", msg{"type": "park", "backend": "freeswitch",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	for _, want := range []string{"503 Maximum Calls In Progress", "sessions-per-second", "switch.conf.xml", "30"} {
		if !strings.Contains(text, want) {
			t.Fatalf("error %q does not say %q", text, want)
		}
	}
	e.noLeaks()
}

// A client whose every audio packet has the marker bit (pion's TrackLocalStaticSample)
// hears itself in echo, even on a FreeSWITCH without the dialplan's IGNORE_MARK_BIT
// guard: FreeSWITCH discards marked audio packets, and nkbridge marks only the start of
// a talk spurt toward it.
func TestEchoWithEveryPacketMarked(t *testing.T) {
	e := newEnv(t, envOpts{fake: fakefs.Options{DialplanOverride: map[string]string{"rtp_manual_rtp_bugs": ""}}})
	c := e.dial()
	p := newSamplePeer(t)
	sid := startPark(t, e, c, p, nil)
	p.waitConnected()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.sendTone(ctx, clientTone)
	ch := e.channelOf(sid)
	if ch.Var("rtp_manual_rtp_bugs") != "" {
		t.Fatalf("the channel has rtp_manual_rtp_bugs=%s", ch.Var("rtp_manual_rtp_bugs"))
	}
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "echo"})
	f, ratio, rms := p.heardSince(p.mark(), 2*time.Second, clientTone, confTone)
	if f != clientTone || ratio < 10 || rms < 500 {
		t.Fatalf("echo: heard %.0f Hz (ratio %.1f, RMS %.0f), want the client's own %v Hz", f, ratio, rms, clientTone)
	}
	in, _, _ := e.sip.RTPStats(ch.UUID)
	if n := e.sip.Flushed(ch.UUID); n*10 > in {
		t.Fatalf("FreeSWITCH discarded %d of %d packets for their marker bit", n, in)
	}
	c.OK("media", "session", "stop", msg{"session_id": sid})
	e.noLeaks()
}

// The Event Socket drops in the middle of a burst of starts, with FreeSWITCH's lagging
// "show channels" (fakefs default): every start completes, none is stopped afterwards,
// and no channel is killed or moved.
func TestReconnectDuringBurstOfStarts(t *testing.T) {
	const n = 8
	e := newEnv(t, envOpts{channelTimeout: 3 * time.Second})
	var routed atomic.Int32
	e.sip.SetBeforeRoute(func(fakefs.INVITE) {
		if routed.Add(1) == n/2 {
			e.fs.DropConnections()
		}
	})
	type result struct {
		sid string
		err error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			res, err := e.core.StartSession(context.Background(), signaling.SessionRequest{Type: "park", Backend: "freeswitch", Offer: rtpOffer(41000 + 2*i)})
			results <- result{res.SessionID, err}
		}()
	}
	var sids []string
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Errorf("start failed: %v", r.err)
			continue
		}
		sids = append(sids, r.sid)
	}
	if t.Failed() {
		t.FailNow()
	}
	e.sip.SetBeforeRoute(nil)
	// Let the table catch up and the re-checks read it.
	for _, sid := range sids {
		e.inTable(e.channelOf(sid).UUID, "park")
	}
	shows := e.countCommands("api show channels as json")
	peers.WaitFor(t, 5*time.Second, "show channels read again", func() bool {
		return e.countCommands("api show channels as json") >= shows+2
	})
	for _, sid := range sids {
		if _, ok := e.core.LookupSession(sid); !ok {
			t.Errorf("session %s stopped after the reconnect", sid)
		}
	}
	if k := e.countCommands("api uuid_kill"); k != 0 {
		t.Errorf("%d channels killed", k)
	}
	for _, sid := range sids {
		if err := e.core.StopSession(sid, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.noLeaks()
}

// The Event Socket drops while a start's uuid_transfer is in flight: the transfer is
// sent again on the new connection and the start completes.
func TestTransferResentAfterDrop(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	e.fs.Delay("api uuid_transfer", -1) // FreeSWITCH never answers this one
	offer := newRTCPeer(t).offer()
	started := make(chan error, 1)
	go func() {
		started <- c.Req("media", "session", "start", msg{"type": "park", "backend": "freeswitch", "session_id": "resent",
			"offer": msg{"sdp": offer, "sdp_type": "webrtc"}}, nil)
	}()
	e.waitCommand("api uuid_transfer ")
	e.fs.ClearDelays()
	e.fs.DropConnections()
	if err := <-started; err != nil { // bounded by apitest.RequestTimeout
		t.Fatalf("start with its transfer lost in a drop: %v", err)
	}
	if n := e.countCommands("api uuid_transfer "); n != 2 {
		t.Fatalf("%d uuid_transfer, want 2 (the lost one, then again)", n)
	}
	c.OK("media", "session", "stop", msg{"session_id": "resent"})
	e.noLeaks()
}

// FreeSWITCH ends a call whose RTP stopped for media_timeout (the shipped dialplan sets
// it; here 800 ms): the session stops with 2302.
func TestFreeSWITCHMediaTimeout(t *testing.T) {
	e := newEnv(t, envOpts{fake: fakefs.Options{DialplanOverride: map[string]string{"media_timeout": "800"}}})
	causes := make(chan string, 4)
	e.fs.OnHangup(func(_ fakefs.Channel, cause string) { causes <- cause })
	c := e.dial()
	p := newRTCPeer(t) // sends no audio
	sid := startPark(t, e, c, p, nil)
	if stop := c.Event(apitest.Media("session", "stop", sid), nil); num(stop["code"]) != 2302 {
		t.Fatalf("stop: %v", stop)
	}
	if cause := <-causes; cause != "MEDIA_TIMEOUT" {
		t.Fatalf("FreeSWITCH hung up with %s", cause)
	}
	e.noLeaks()
}
