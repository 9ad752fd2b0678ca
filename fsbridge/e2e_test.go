package fsbridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

const (
	clientTone = 1000.0 // what the WebRTC client sends
	confTone   = 600.0  // what the fake conference plays
)

// startPark starts a park session on the FreeSWITCH backend from a real WebRTC offer and
// completes the client's side. It returns the session id.
func startPark(t *testing.T, e *env, c *apitest.Conn, p *rtcPeer, extra msg) string {
	t.Helper()
	data := msg{"type": "park", "backend": "freeswitch", "offer": msg{"sdp": p.offer(), "sdp_type": "webrtc"}}
	for k, v := range extra {
		data[k] = v
	}
	d := c.OK("media", "session", "start", data)
	sid, _ := d["session_id"].(string)
	ans, _ := d["answer"].(map[string]any)
	sdp, _ := ans["sdp"].(string)
	if sid == "" || !strings.Contains(sdp, "a=fingerprint") {
		t.Fatalf("start reply without session id or WebRTC answer: %v", d)
	}
	p.setAnswer(sdp)
	return sid
}

// The whole path: control API over a WebSocket, a pion WebRTC offer, the media engine's
// plain-RTP SIP leg to the FreeSWITCH stand-in, the channel found through events,
// uuid_transfer park → echo → conference, mcu_layout, room events, stop → uuid_kill/BYE.
// The audio the client hears proves where FreeSWITCH really has the call.
func TestEndToEndParkEchoMCUStop(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	c.OK("core", "event", "subscribe", msg{"class": "media", "subclass": "room"})
	p := newRTCPeer(t)
	sid := startPark(t, e, c, p, msg{"session_id": "e2e-1"})
	p.waitConnected()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.sendTone(ctx, clientTone)

	ch := e.channelOf(sid)
	if ch.Context != "nkbridge" || ch.Var("sip_h_X-NKB-Session") != "e2e-1" {
		t.Fatalf("channel not made by the dialplan for our call: %+v", ch)
	}
	if cmd := e.waitCommand("api uuid_transfer " + ch.UUID); cmd.Line != "api uuid_transfer "+ch.UUID+" park inline" {
		t.Fatalf("park transfer: %q", cmd.Line)
	}
	if got, _ := e.fs.Channel(ch.UUID); got.Application != "park" {
		t.Fatalf("channel runs %q, want park", got.Application)
	}
	info := c.OK("media", "session", "info", msg{"session_id": sid})
	if info["backend"] != "freeswitch" || info["type"] != "park" || info["state"] != "ready" {
		t.Fatalf("session info: %v", info)
	}

	// Park: FreeSWITCH receives the client's audio and sends nothing back.
	peers.WaitFor(t, 5*time.Second, "RTP reaching FreeSWITCH", func() bool {
		if in, _, _ := e.sip.RTPStats(ch.UUID); in < 50 {
			return false
		}
		return true
	})
	m := p.mark()
	time.Sleep(time.Second) // the subject: a second in which park sends nothing
	if _, out, _ := e.sip.RTPStats(ch.UUID); out != 0 {
		t.Fatalf("parked channel sent %d packets", out)
	}
	if heard := p.mark() - m; heard > 0 {
		p.mu.Lock()
		got := p.pcm[m:]
		p.mu.Unlock()
		if r := rmsOf(got); r > 300 {
			t.Fatalf("parked client hears audio (RMS %.0f)", r)
		}
	}

	// Echo: the client hears its own tone, through FreeSWITCH.
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "echo"})
	if cmd := e.waitCommand("api uuid_transfer " + ch.UUID + " echo"); cmd.Line != "api uuid_transfer "+ch.UUID+" echo inline" {
		t.Fatalf("echo transfer: %q", cmd.Line)
	}
	ev := c.Event(apitest.Media("session", "updated_type", sid), nil)
	if ev["type"] != "echo" {
		t.Fatalf("updated_type: %v", ev)
	}
	f, ratio, rms := p.heardSince(p.mark(), 2*time.Second, clientTone, confTone)
	if f != clientTone || ratio < 10 || rms < 500 {
		t.Fatalf("echo: heard %.0f Hz (ratio %.1f, RMS %.0f), want the client's own %v Hz", f, ratio, rms, clientTone)
	}

	// Media options apply to nkbridge's leg: muting the client stops its audio to
	// FreeSWITCH.
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "media", "use_audio": false})
	// The update's reply comes once the engine applied it: at most a packet or two in flight.
	in1, _, _ := e.sip.RTPStats(ch.UUID)
	time.Sleep(time.Second) // the subject: a second in which nothing may arrive
	if in2, _, _ := e.sip.RTPStats(ch.UUID); in2-in1 > 5 {
		t.Fatalf("muted client still reaches FreeSWITCH: %d packets in 1s", in2-in1)
	}
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "media", "use_audio": true})
	peers.WaitFor(t, 5*time.Second, "unmuted audio reaching FreeSWITCH", func() bool {
		if in3, _, _ := e.sip.RTPStats(ch.UUID); in3-in1 < 20 {
			return false
		}
		return true
	})

	// MCU: conference:<room>@nkbridge; the client hears the room (600 Hz), not itself.
	// The room must exist first.
	c.Fail(2030, "media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "mcu", "room_id": "room-1"})
	c.OK("media", "room", "create", msg{"class": "mcu", "room_id": "room-1", "backend": "freeswitch"})
	c.Event(apitest.Media("room", "started", "room-1"), nil)
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "mcu", "room_id": "room-1"})
	want := "api uuid_transfer " + ch.UUID + " conference:room-1@nkbridge inline"
	if cmd := e.waitCommand("api uuid_transfer " + ch.UUID + " conference"); cmd.Line != want {
		t.Fatalf("conference transfer: %q, want %q", cmd.Line, want)
	}
	ev = c.Event(apitest.Media("session", "updated_type", sid), func(b msg) bool { return b["type"] == "mcu" })
	if ev["room_id"] != "room-1" {
		t.Fatalf("updated_type mcu without room: %v", ev)
	}
	mem := c.Event(apitest.Media("room", "started_member", "room-1"), nil)
	if mem["session_id"] != sid || mem["member_id"] == "" {
		t.Fatalf("started_member: %v", mem)
	}
	inf := c.Event(apitest.Media("session", "info", sid), func(b msg) bool {
		i, _ := b["info"].(map[string]any)
		return i["event"] == "room_joined"
	})
	if i := inf["info"].(map[string]any); i["room_id"] != "room-1" {
		t.Fatalf("info: %v", inf)
	}
	f, ratio, rms = p.heardSince(p.mark(), 2*time.Second, clientTone, confTone)
	if f != confTone || ratio < 10 || rms < 500 {
		t.Fatalf("mcu: heard %.0f Hz (ratio %.1f, RMS %.0f), want the room's %v Hz", f, ratio, rms, confTone)
	}
	info = c.OK("media", "session", "info", msg{"session_id": sid})
	if info["type"] != "mcu" || info["room_id"] != "room-1" {
		t.Fatalf("session info after update: %v", info)
	}
	rinfo := c.OK("media", "room", "info", msg{"room_id": "room-1"})
	members, _ := rinfo["members"].(map[string]any)
	if rinfo["backend"] != "freeswitch" || rinfo["class"] != "mcu" || members[sid] == nil {
		t.Fatalf("room info: %v", rinfo)
	}

	// Talking and layout.
	if err := e.fs.Talk(ch.UUID, true); err != nil {
		t.Fatal(err)
	}
	tk := c.Event(apitest.Media("room", "talking", "room-1"), nil)
	if tk["talking"] != true || tk["session_id"] != sid {
		t.Fatalf("talking: %v", tk)
	}
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "mcu_layout", "mcu_layout": "2x2"})
	if l := e.fs.Layout("room-1"); l != "2x2" {
		t.Fatalf("layout %q", l)
	}
	c.Fail(1048, "media", "session", "update", msg{"session_id": sid, "type": "mcu_layout", "mcu_layout": "2x2\napi status"})
	c.Fail(1048, "media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "mcu", "room_id": "a@b"})
	c.Fail(1048, "media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "proxy"})

	// Stop: uuid_kill, BYE, nothing left.
	c.OK("media", "session", "stop", msg{"session_id": sid})
	stop := c.Event(apitest.Media("session", "stop", sid), nil)
	if num(stop["code"]) != 1013 {
		t.Fatalf("stop: %v", stop)
	}
	e.waitCommand("api uuid_kill " + ch.UUID)
	c.Event(apitest.Media("room", "stopped_member", "room-1"), nil)
	// The room was created explicitly: it outlives its members until destroyed.
	if _, err := e.core.RoomInfo("room-1"); err != nil {
		t.Fatalf("explicit room gone with its last member: %v", err)
	}
	c.OK("media", "room", "destroy", msg{"room_id": "room-1"})
	c.Event(apitest.Media("room", "destroyed", "room-1"), nil)
	e.noLeaks()
}

func rmsOf(s []int16) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	if len(s) == 0 {
		return 0
	}
	return sqrt(sum / float64(len(s)))
}

func sqrt(x float64) float64 {
	z := x
	if z == 0 {
		return 0
	}
	for i := 0; i < 50; i++ {
		z -= (z*z - x) / (2 * z)
	}
	return z
}

// FreeSWITCH hanging the channel up stops the session with 2302, and the API client is
// told.
func TestFreeSWITCHHangupStopsSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	p := newRTCPeer(t)
	sid := startPark(t, e, c, p, nil)
	ch := e.channelOf(sid)
	if err := e.fs.Hangup(ch.UUID, "CALL_REJECTED"); err != nil {
		t.Fatal(err)
	}
	stop := c.Event(apitest.Media("session", "stop", sid), nil)
	if num(stop["code"]) != 2302 || !strings.Contains(stop["reason"].(string), "FreeSWITCH") {
		t.Fatalf("stop: %v", stop)
	}
	e.noLeaks()
	if n := e.countCommands("api uuid_kill"); n != 0 {
		t.Fatalf("nkbridge killed a channel FreeSWITCH had already hung up (%d uuid_kill)", n)
	}
}

// Bridge two parked sessions with uuid_bridge, then move one back to park.
func TestBridgeTwoSessions(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	a := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "bridge-a"})
	b := startPark(t, e, c, newRTCPeer(t), msg{"session_id": "bridge-b"})
	cha, chb := e.channelOf(a), e.channelOf(b)
	res := c.OK("media", "session", "update", msg{"session_id": a, "type": "session_type", "session_type": "bridge", "peer": b})
	if res["peer"] != b {
		t.Fatalf("bridge update reply: %v", res)
	}
	e.waitCommand("api uuid_bridge " + cha.UUID + " " + chb.UUID)
	if got, _ := e.fs.Channel(cha.UUID); got.BridgedTo != chb.UUID {
		t.Fatalf("not bridged: %+v", got)
	}
	c.OK("media", "session", "update", msg{"session_id": a, "type": "session_type", "session_type": "park"})
	peers.WaitFor(t, 5*time.Second, "both parked", func() bool {
		ga, _ := e.fs.Channel(cha.UUID)
		gb, _ := e.fs.Channel(chb.UUID)
		if ga.Application != "park" || gb.Application != "park" || ga.BridgedTo != "" {
			return false
		}
		return true
	})
	// A session can also start as a bridge to a parked one.
	p3 := newRTCPeer(t)
	d := c.OK("media", "session", "start", msg{"type": "bridge", "backend": "freeswitch", "peer": b,
		"offer": msg{"sdp": p3.offer(), "sdp_type": "webrtc"}})
	ch3 := e.channelOf(d["session_id"].(string))
	e.waitCommand("api uuid_bridge " + ch3.UUID + " " + chb.UUID)
	c.OK("media", "session", "stop", msg{"session_id": d["session_id"]})
	peers.WaitFor(t, 5*time.Second, "partner parked again", func() bool {
		if gb, _ := e.fs.Channel(chb.UUID); gb.Application != "park" {
			return false
		}
		return true
	})
	if _, ok := e.core.LookupSession(b); !ok {
		t.Fatal("stopping one side of a bridge stopped the other")
	}
	// Bridging to something that is not a FreeSWITCH session fails cleanly.
	c.Fail(1062, "media", "session", "update", msg{"session_id": a, "type": "session_type", "session_type": "bridge", "peer": "nope"})
	c.OK("media", "session", "stop", msg{"session_id": a})
	c.OK("media", "session", "stop", msg{"session_id": b})
	e.noLeaks()
}

// An mcu session started directly gets a room of its own (returned in the reply), others
// join it by id; destroying a room stops its members (2032); the API connection going
// away stops the sessions and kills their channels.
func TestMCUStartAndOwnerGone(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial()
	p := newRTCPeer(t)
	d := c.OK("media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "offer": msg{"sdp": p.offer(), "sdp_type": "webrtc"}})
	sid, _ := d["session_id"].(string)
	room, _ := d["room_id"].(string)
	if sid == "" || room == "" {
		t.Fatalf("mcu start reply: %v", d)
	}
	c.Event(apitest.Media("session", "info", sid), func(b msg) bool {
		i, _ := b["info"].(map[string]any)
		return i["event"] == "room_joined" && i["room_id"] == room
	})
	ch := e.channelOf(sid)
	e.waitCommand("api uuid_transfer " + ch.UUID + " conference:" + room + "@nkbridge inline")
	if got, _ := e.fs.Channel(ch.UUID); got.Conference != room {
		t.Fatalf("channel is in conference %q, want %q", got.Conference, room)
	}
	// A second session joins the same room by id.
	d2 := c.OK("media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "room_id": room,
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	if d2["room_id"] != room {
		t.Fatalf("second member: %v", d2)
	}
	ch2 := e.channelOf(d2["session_id"].(string))
	if got, _ := e.fs.Channel(ch2.UUID); got.Conference != room || got.MemberID != 2 {
		t.Fatalf("second member channel: %+v", got)
	}
	// Destroying a room stops its member sessions with 2032.
	c.OK("media", "room", "create", msg{"class": "mcu", "room_id": "doomed", "backend": "freeswitch"})
	c.Fail(2031, "media", "room", "create", msg{"class": "mcu", "room_id": "doomed", "backend": "freeswitch"})
	d3 := c.OK("media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "room_id": "doomed",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	sid3, _ := d3["session_id"].(string)
	ch3 := e.channelOf(sid3)
	c.OK("media", "room", "destroy", msg{"room_id": "doomed"})
	if stop := c.Event(apitest.Media("session", "stop", sid3), nil); num(stop["code"]) != 2032 {
		t.Fatalf("member of a destroyed room: %v", stop)
	}
	e.waitCommand("api uuid_kill " + ch3.UUID)
	c.Fail(2030, "media", "session", "start", msg{"type": "mcu", "backend": "freeswitch", "room_id": "doomed",
		"offer": msg{"sdp": newRTCPeer(t).offer(), "sdp_type": "webrtc"}})
	var rooms []any
	if err := c.Req("media", "room", "list", nil, &rooms); err != nil || len(rooms) != 1 {
		t.Fatalf("room list: %v, %v", rooms, err)
	}

	_ = c.C.Close()
	e.waitCommand("api uuid_kill " + ch.UUID)
	e.waitCommand("api uuid_kill " + ch2.UUID)
	e.noLeaks()
}

// FreeSWITCH's park sends no audio: a parked call outlives the media engine's media
// timeout, while a call whose FreeSWITCH side goes silent elsewhere (echo with a silent
// client) is ended by it.
func TestParkOutlivesMediaTimeout(t *testing.T) {
	e := newEnv(t, envOpts{mediaTimeout: time.Second})
	c := e.dial()
	p := newRTCPeer(t)
	sid := startPark(t, e, c, p, nil)
	p.waitConnected()
	ctx, cancel := context.WithCancel(context.Background())
	p.sendTone(ctx, clientTone)
	// The subject: 2.5 media timeouts of park, where FreeSWITCH sends nothing back (the
	// fake's own media_timeout is the dialplan's 300 s, so it
	// does not end the park either).
	time.Sleep(2500 * time.Millisecond) // the subject: see above
	if _, ok := e.core.LookupSession(sid); !ok {
		t.Fatal("a parked session was ended by the media timeout")
	}
	// Out of park, silence from FreeSWITCH counts again: the client stops sending, so the
	// echo sends nothing back.
	cancel()
	c.OK("media", "session", "update", msg{"session_id": sid, "type": "session_type", "session_type": "echo"})
	// 1060 from the engine's timeout, never 2302 from the hangup its BYE causes: the first
	// reason reported wins (signaling TestFirstStoppedWins).
	stop := c.Event(apitest.Media("session", "stop", sid), nil)
	if num(stop["code"]) != 1060 {
		t.Fatalf("stop: %v", stop)
	}
	e.noLeaks()
}
