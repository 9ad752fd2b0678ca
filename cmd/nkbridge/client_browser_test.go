package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// clientScenario runs nkbridge.js against the real server inside the page
// and returns what it observed; the Go side asserts.
const clientScenario = `async () => {
	const { NkbClient, ApiError } = await import("/demo/nkbridge.js");
	const out = {};
	const code = async (p) => { try { await p; return 0; } catch (e) { return e instanceof ApiError ? e.code : String(e); } };
	const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

	const carol = new NkbClient(), dave = new NkbClient(undefined, { inviteStyle: "event" });
	await carol.connect(); await dave.connect();
	out.url = carol.url;
	out.beforeLogin = await code(carol.listSessions());
	out.login = await carol.login("carol", "pw");
	await dave.login("dave", "pw");

	// Sessions: p2p start, info, errors.
	const s = await carol.startSession("p2p", { offer: { type: "offer", sdp: "v=0 carol" } });
	out.info = await carol.sessionInfo(s.session_id);
	out.subs = await carol.getSubscriptions();
	out.unknownType = await code(carol.startSession("nope", { offer: { sdp: "v=0" } }));
	out.echo = await code(carol.startSession("echo", { offer: { sdp: "v=0" } }));
	out.stopMissing = await code(carol.stopSession("no-such-session"));
	out.acks = carol.counters.acks; // echo start is asynchronous: acked first
	// set_answer and update on a second p2p session.
	const s2 = await carol.startSession("p2p", { offer: { sdp: "v=0 carol 2" } });
	await carol.setAnswer(s2.session_id, { type: "answer", sdp: "v=0 answer 2" });
	const info2 = await carol.sessionInfo(s2.session_id);
	out.setAnswer = { state: info2.state, sdp: info2.answer && info2.answer.sdp };
	out.answerTwice = await code(carol.setAnswer(s2.session_id, { sdp: "v=0" }));
	out.updateP2P = await code(carol.updateSession(s2.session_id, "media", { use_audio: false }));
	out.stop2 = await code(carol.stopSession(s2.session_id, { code: 0, reason: "done" }));
	out.listAfter = await carol.listSessions();

	// Events: subscribe, send, unsubscribe.
	await dave.subscribe({ class: "demo", type: "*" });
	const got = dave.waitEvent({ class: "demo", type: "hello" }, 3000);
	await carol.sendEvent({ class: "demo", type: "hello", obj_id: "x", body: { n: 1 } });
	out.event = await got;
	await dave.unsubscribe({ class: "demo", type: "*" });
	const lateEvent = dave.waitEvent({ class: "demo" }, 500);
	await carol.sendEvent({ class: "demo", type: "again" });
	out.unsubscribed = await code(lateEvent); // 1005: nothing came

	// Trickle: a p2p session's candidates come back as media/session/candidate events.
	const cands = [];
	const off = carol.on({ class: "media", subclass: "session", type: "candidate", obj_id: s.session_id }, (ev) => cands.push(ev.body));
	await carol.setCandidate(s.session_id, { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host", sdpMid: "0", sdpMLineIndex: 0 });
	await carol.setCandidateEnd(s.session_id);
	await sleep(200);
	off();
	out.candidates = cands;

	// Calls. Dave accepts in the seed "event" style (his client's default here).
	dave.addEventListener("invite", (e) => {
		const inv = e.detail;
		out.invite = { callId: inv.callId, callerName: inv.callerName, offer: inv.offer };
		inv.ringing().then(() => inv.accept({ type: "answer", sdp: "v=0 dave" }));
	}, { once: true });
	const answer = carol.waitEvent({ class: "media", subclass: "session", type: "answer", obj_id: s.session_id });
	const accepted = carol.waitEvent({ class: "media", subclass: "call", type: "accepted" });
	const ringing = carol.waitEvent({ class: "media", subclass: "call", type: "ringing" });
	const call = await carol.startCall({ type: "user", callee: "dave", session_id: s.session_id, offer: { sdp: "v=0 carol", caller_name: "Carol" } });
	out.ringing = (await ringing).obj_id === call.call_id;
	out.answer = (await answer).body.answer;
	out.accepted = (await accepted).obj_id === call.call_id;
	const daveHangup = dave.waitEvent({ class: "media", subclass: "call", type: "hangup", obj_id: call.call_id });
	const stopped = carol.waitEvent({ class: "media", subclass: "session", type: "stop", obj_id: s.session_id });
	await carol.hangup(call.call_id, { reason: "bye" });
	out.daveHangup = (await daveHangup).body;
	out.sessionStop = (await stopped).body;

	// Rejections in both styles, and a caller that gives up while it rings.
	const rejectWith = async (style) => {
		dave.addEventListener("invite", (e) => e.detail.reject({ style, reason: "No thanks " + style }), { once: true });
		const c = await carol.startCall({ type: "user", callee: "dave", offer: { sdp: "v=0" } });
		return (await carol.waitEvent({ class: "media", subclass: "call", type: "hangup", obj_id: c.call_id })).body;
	};
	out.rejectCommand = await rejectWith("command");
	out.rejectEvent = await rejectWith("event");
	const invited = new Promise((r) => dave.addEventListener("invite", (e) => r(e.detail), { once: true }));
	const c3 = await carol.startCall({ type: "user", callee: "dave", offer: { sdp: "v=0" } });
	const inv3 = await invited;
	const ended = new Promise((r) => inv3.addEventListener("hangup", (e) => r(e.detail), { once: true }));
	await carol.hangup(c3.call_id, { code: 2025, reason: "Gave up" });
	out.cancelled = { detail: await ended, state: inv3.state, late: await code(inv3.accept({ sdp: "v=0" })) };

	// Pings: the server pings every second and closes connections that do not answer within 1 s.
	await sleep(2500);
	out.pings = carol.counters.pings;
	out.connected = carol.connected && dave.connected;
	carol.close(); dave.close();
	return out;
}`

// nkbridge.js against the real server in Chromium: login, errors, p2p
// sessions, subscriptions and events, trickle candidates, calls with
// invites accepted and rejected in both styles, a cancelled invite, pings.
// The demo page shows the 2001 error clearly when no media backend serves echo.
func TestClientLibraryBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startBinary(t, "NKB_MEDIA_ENABLED=false", "NKB_API_PING_INTERVAL=1s", "NKB_API_REQUEST_TIMEOUT=1s")
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	p := b.NewPage(ctx, "http://"+d.addr+"/demo/")
	var raw json.RawMessage
	if err := p.Eval(ctx, clientScenario, &raw); err != nil {
		t.Fatalf("scenario: %v\nconsole: %v", err, p.Console())
	}
	var out struct {
		URL         string `json:"url"`
		BeforeLogin any    `json:"beforeLogin"`
		Login       struct {
			SessionID string `json:"session_id"`
		} `json:"login"`
		Info                                         map[string]any   `json:"info"`
		Subs                                         []map[string]any `json:"subs"`
		UnknownType, Echo, StopMissing, Unsubscribed any
		Acks                                         int              `json:"acks"`
		Event                                        map[string]any   `json:"event"`
		Candidates                                   []map[string]any `json:"candidates"`
		Invite                                       map[string]any   `json:"invite"`
		Ringing                                      bool             `json:"ringing"`
		Answer                                       map[string]any   `json:"answer"`
		Accepted                                     bool             `json:"accepted"`
		DaveHangup                                   map[string]any   `json:"daveHangup"`
		SessionStop                                  map[string]any   `json:"sessionStop"`
		RejectCommand, RejectEvent                   map[string]any
		Cancelled                                    struct {
			Detail map[string]any `json:"detail"`
			State  string         `json:"state"`
			Late   any            `json:"late"`
		} `json:"cancelled"`
		SetAnswer struct {
			State string `json:"state"`
			SDP   string `json:"sdp"`
		} `json:"setAnswer"`
		AnswerTwice, UpdateP2P, Stop2 any
		ListAfter                     []string `json:"listAfter"`
		Pings                         int      `json:"pings"`
		Connected                     bool     `json:"connected"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("observed: %s", raw)
	want := func(cond bool, what string) {
		t.Helper()
		if !cond {
			t.Errorf("%s", what)
		}
	}
	want(out.URL == "ws://"+d.addr+"/api", "default URL = "+out.URL)
	want(out.BeforeLogin == float64(1031), "request before login not 1031")
	want(out.Login.SessionID != "", "login gave no session_id")
	want(out.Info["type"] == "p2p" && out.Info["state"] == "wait" && out.Info["user"] == "carol", "session info wrong")
	want(len(out.Subs) >= 1, "no automatic session subscription")
	want(out.UnknownType == float64(2002), "unknown type not 2002")
	want(out.Echo == float64(2001), "echo without media not 2001")
	want(out.StopMissing == float64(1062), "stop of a missing session not 1062")
	want(out.SetAnswer.State == "ready" && out.SetAnswer.SDP == "v=0 answer 2", "set_answer did not make the session ready")
	want(out.AnswerTwice == float64(2016), "second set_answer not 2016")
	want(out.UpdateP2P == float64(1006), "update of a p2p session not 1006")
	want(out.Stop2 == float64(0) && len(out.ListAfter) == 1, "stop of the second session failed")
	want(out.Acks >= 1, "no ack counted for an asynchronous request")
	want(out.Event["type"] == "hello" && out.Event["obj_id"] == "x" && out.Event["body"].(map[string]any)["n"] == float64(1), "event not delivered")
	want(out.Unsubscribed == float64(1005), "event delivered after unsubscribe")
	want(len(out.Candidates) == 2 && out.Candidates[0]["candidate"] != nil && out.Candidates[1]["candidate_end"] == true, "trickle events wrong")
	want(out.Invite["callerName"] == "Carol" && out.Invite["offer"].(map[string]any)["sdp"] == "v=0 carol", "invite wrong")
	want(out.Ringing && out.Accepted, "ringing/accepted events missing")
	want(out.Answer["sdp"] == "v=0 dave", "caller did not get the callee's answer")
	want(out.DaveHangup["reason"] == "bye", "callee's hangup event wrong")
	want(out.SessionStop["reason"] == "bye", "caller's session stop wrong")
	want(out.RejectCommand["code"] == float64(2021) && out.RejectCommand["reason"] == "No thanks command", "command-style reject wrong")
	want(out.RejectEvent["code"] == float64(2021) && out.RejectEvent["reason"] == "No thanks event", "event-style reject wrong")
	want(out.Cancelled.Detail["code"] == float64(2025) && out.Cancelled.State == "ended" && out.Cancelled.Late == float64(2020), "cancelled invite wrong")
	want(out.Pings >= 2 && out.Connected, "pings not answered")

	// The demo page with no media backend: the echo test shows 2001 plainly.
	dp := &demoPage{t: t, name: "demo", p: p, ctx: ctx}
	if err := p.Goto(ctx, "http://"+d.addr+"/demo/"); err != nil {
		t.Fatal(err)
	}
	dp.login("erin")
	dp.click("#echo-start")
	dp.wait(`!document.getElementById("echo-error").hidden`, "echo error shown")
	if e := dp.text("echo-error"); !containsAll(e, "Echo test failed", "2001", "no media backend") {
		t.Errorf("echo error = %q", e)
	}
	if s := dp.text("echo-status"); s != "failed" {
		t.Errorf("echo status = %q", s)
	}
	if err := p.Screenshot(ctx, browsertest.ArtifactDir(t)+"/demo-echo-2001.png"); err != nil {
		t.Fatal(err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
