package verto

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/verto/vertotest"
)

func TestInviteEarlyMediaAnswerBye(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	m, err := c.Call(e.ctx, "login", map[string]any{"login": "alice", "passwd": "secret", "userVariables": map[string]any{"email": "a@b.c", "n": 1, "obj": map[string]any{}}})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	c.SessID = m.Str("sessid")
	callID := uuid.NewString()
	dp := vertotest.DialogParams(callID, "early")
	dp["userVariables"] = map[string]any{"tag": "x"}
	m, err = c.Call(e.ctx, "verto.invite", map[string]any{"sdp": offerSDP, "dialogParams": dp, "sessid": c.SessID})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	if m.Str("message") != "CALL CREATED" || m.Str("callID") != callID {
		t.Fatalf("invite reply %+v", m.Result)
	}
	ic := e.inbound()
	if ic.inv.CallID != callID || ic.inv.Destination != "early" || ic.inv.User != "alice" ||
		ic.inv.SessionID != c.SessID || ic.inv.SDP != offerSDP || ic.inv.CallerIDNumber != "1008" ||
		ic.inv.CallerIDName != "Verto Test" || !ic.inv.Recover || ic.inv.LoginVariables["email"] != "a@b.c" ||
		ic.inv.UserVariables["tag"] != "x" || ic.inv.CalleeIDNumber != "early" {
		t.Fatalf("handler got %+v", ic.inv)
	}
	// verto.media (queued by the handler before the reply) carries the answer SDP.
	media := e.next(c, "verto.media")
	if media.Str("callID") != callID || media.Str("sdp") != answerSDP {
		t.Fatalf("verto.media %+v", media.Params)
	}
	if !strings.Contains(media.Str("sdp"), "\r\na=candidate:") {
		t.Fatal("SDP lost its CRLF candidates")
	}
	// Answer after early media: no SDP again.
	if err := ic.call.Answer("ignored"); err != nil {
		t.Fatal(err)
	}
	ans := e.next(c, "verto.answer")
	if ans.Str("callID") != callID {
		t.Fatalf("verto.answer %+v", ans.Params)
	}
	if _, has := ans.Params["sdp"]; has {
		t.Fatal("verto.answer repeated the SDP after verto.media")
	}
	if !ic.call.Answered() {
		t.Fatal("call not answered")
	}
	if err := ic.call.Answer(answerSDP); !errors.Is(err, ErrBadState) {
		t.Fatalf("second Answer: %v", err)
	}

	// DTMF in the call reaches the handler.
	r, err := c.DTMF(e.ctx, callID, "1")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	if r.Str("message") != "SENT" {
		t.Fatalf("info reply %+v", r.Result)
	}
	ic.rec.expect(t, "dtmf:1")
	r, _ = c.DTMF(e.ctx, callID, "23#*a+9@200")
	wantOK(t, r)
	ic.rec.expect(t, "dtmf:23#*A9")

	// Hold, unhold, toggleHold.
	for _, step := range []struct{ action, state, event string }{
		{"hold", "held", "hold:true"},
		{"hold", "held", ""},
		{"unhold", "active", "hold:false"},
		{"toggleHold", "held", "hold:true"},
		{"toggleHold", "active", "hold:false"},
	} {
		r, err := c.Modify(e.ctx, callID, step.action)
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, r)
		if r.Str("holdState") != step.state || r.Str("action") != step.action || r.Str("callID") != callID {
			t.Fatalf("%s: %+v", step.action, r.Result)
		}
		if step.event != "" {
			ic.rec.expect(t, step.event)
		}
	}
	ic.rec.none(t, 20*time.Millisecond)

	// Client hangs up with a cause.
	r, err = c.Bye(e.ctx, callID, "USER_BUSY")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	if r.Str("message") != "CALL ENDED" || r.Str("cause") != "USER_BUSY" || r.Result["causeCode"] != float64(17) {
		t.Fatalf("bye reply %+v", r.Result)
	}
	ic.rec.expect(t, "hangup:USER_BUSY")
	// The server sends no bye back, and the call is gone.
	e.noRequest(c, "verto.bye", 50*time.Millisecond)
	r, _ = c.Bye(e.ctx, callID, "")
	wantErr(t, r, CodeCallError, "CALL DOES NOT EXIST")
	if r.Error["callID"] != callID {
		t.Fatalf("error without callID: %+v", r.Error)
	}
	select {
	case <-ic.call.Context().Done():
	default:
		t.Fatal("call context not done")
	}
	if err := ic.call.Hangup(CauseNormalClearing); !errors.Is(err, ErrCallEnded) {
		t.Fatalf("Hangup after end: %v", err)
	}
	if _, calls := e.counts(); calls != 0 {
		t.Fatalf("%d calls left", calls)
	}
}

func TestInviteAnswerThenServerHangup(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	callID := uuid.NewString()
	m, _ := c.Invite(e.ctx, callID, "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	ans := e.next(c, "verto.answer")
	if ans.Str("sdp") != answerSDP {
		t.Fatal("verto.answer without early media must carry the SDP")
	}
	if err := ic.call.Display("Bob", "2000"); err != nil {
		t.Fatal(err)
	}
	d := e.next(c, "verto.display")
	if d.Str("display_name") != "Bob" || d.Str("display_number") != "2000" || d.Str("display_direction") != "inbound" || d.Str("callID") != callID {
		t.Fatalf("display %+v", d.Params)
	}
	if err := ic.call.SendDTMF("5#"); err != nil {
		t.Fatal(err)
	}
	info := e.next(c, "verto.info")
	if info.Str("dtmf") != "5#" || info.Str("callID") != callID {
		t.Fatalf("info %+v", info.Params)
	}
	if err := ic.call.Hangup(CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	bye := e.next(c, "verto.bye")
	if bye.Str("callID") != callID || bye.Str("cause") != "NORMAL_CLEARING" || bye.Params["causeCode"] != float64(16) {
		t.Fatalf("bye %+v", bye.Params)
	}
	// The server never reports its own hangup back to the handler.
	ic.rec.none(t, 30*time.Millisecond)
	// The classic client echoes a bye: tolerated with CALL DOES NOT EXIST.
	r, _ := c.Bye(e.ctx, callID, "")
	wantErr(t, r, CodeCallError, "CALL DOES NOT EXIST")
}

func TestHandlerHangsUpDuringInvite(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	callID := uuid.NewString()
	go func() {
		ic := e.inbound()
		_ = ic.call.Hangup(CauseNoRouteDestination)
	}()
	m, _ := c.Invite(e.ctx, callID, "ring", offerSDP)
	wantOK(t, m)
	bye := e.next(c, "verto.bye")
	if bye.Str("cause") != "NO_ROUTE_DESTINATION" || bye.Str("callID") != callID {
		t.Fatalf("bye %+v", bye.Params)
	}
}

func TestInviteErrors(t *testing.T) {
	e := newEnv(t, Config{InviteBurst: 50, InviteRate: 50})
	c := e.login("alice", "secret", "")
	call := func(params map[string]any) *vertotest.Message {
		t.Helper()
		m, err := c.Call(e.ctx, "verto.invite", params)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	wantErr(t, call(map[string]any{"sdp": offerSDP}), CodeCallError, "Dialog data missing")
	wantErr(t, call(map[string]any{"sdp": offerSDP, "dialogParams": map[string]any{"destination_number": "x"}}), CodeCallError, "CallID missing")
	wantErr(t, call(map[string]any{"sdp": offerSDP, "dialogParams": map[string]any{"callID": 42}}), CodeCallError, "CallID missing")
	m := call(map[string]any{"dialogParams": vertotest.DialogParams("c-nosdp", "echo")})
	wantErr(t, m, CodeCallError, "SDP missing")
	if m.Error["cause"] != "INVALID_MSG_UNSPECIFIED" || m.Error["causeCode"] != float64(95) || m.Error["callID"] != "c-nosdp" {
		t.Fatalf("error fields %+v", m.Error)
	}
	wantErr(t, call(map[string]any{"sdp": 5, "dialogParams": vertotest.DialogParams("c-sdpnum", "echo")}), CodeCallError, "SDP missing")
	wantErr(t, call(map[string]any{"sdp": offerSDP, "dialogParams": "nope"}), CodeCallError, "Dialog data missing")
	wantErr(t, call(map[string]any{"sdp": offerSDP, "dialogParams": vertotest.DialogParams(strings.Repeat("x", 200), "echo")}), CodeCallError, "Invalid callID")

	m, _ = c.Invite(e.ctx, "c-busy", "busy", offerSDP)
	wantErr(t, m, CodeCallError, "CALL ERROR")
	if m.Error["cause"] != "USER_BUSY" || m.Error["causeCode"] != float64(17) {
		t.Fatalf("busy error %+v", m.Error)
	}
	m, _ = c.Invite(e.ctx, "c-dup", "ring", offerSDP)
	wantOK(t, m)
	e.inbound()
	m, _ = c.Invite(e.ctx, "c-dup", "ring", offerSDP)
	wantErr(t, m, CodeCallError, "Call ID already in use")
	// Another user cannot touch alice's call.
	b := e.login("bob", "bobpw", "")
	r, _ := b.Bye(e.ctx, "c-dup", "")
	wantErr(t, r, CodeCallError, "CALL DOES NOT EXIST")
	r, _ = b.Invite(e.ctx, "c-dup", "ring", offerSDP)
	wantErr(t, r, CodeCallError, "Call ID already in use")
}

func TestInCallWrongParams(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	callID := uuid.NewString()
	m, _ := c.Invite(e.ctx, callID, "ring", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	call := func(method string, params map[string]any) *vertotest.Message {
		t.Helper()
		m, err := c.Call(e.ctx, method, params)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	dp := map[string]any{"callID": callID}
	wantErr(t, call("verto.info", nil), CodeCallError, "Params data missing")
	wantErr(t, call("verto.info", map[string]any{"dtmf": "12x", "dialogParams": dp}), CodeCallError, "Invalid DTMF")
	wantErr(t, call("verto.info", map[string]any{"dtmf": "", "dialogParams": dp}), CodeCallError, "Invalid DTMF")
	// DTMF for an unknown call: an empty success, like mod_verto.
	m = call("verto.info", map[string]any{"dtmf": "1", "dialogParams": map[string]any{"callID": "unknown"}})
	wantOK(t, m)
	if len(m.Result) != 1 {
		t.Fatalf("want only sessid, got %+v", m.Result)
	}
	wantErr(t, call("verto.info", map[string]any{"msg": map[string]any{"to": "bob", "body": "hi"}}), CodeCallError, "")
	wantErr(t, call("verto.modify", map[string]any{"dialogParams": dp}), CodeCallError, "action missing")
	wantErr(t, call("verto.modify", map[string]any{"action": "hold"}), CodeCallError, "Dialog data missing")
	wantErr(t, call("verto.modify", map[string]any{"action": "transfer", "dialogParams": dp}), CodeCallError, "Unsupported action: transfer")
	wantErr(t, call("verto.modify", map[string]any{"action": "hold", "dialogParams": dp}), CodeCallError, "CALL NOT ANSWERED")
	wantErr(t, call("verto.modify", map[string]any{"action": "hold", "dialogParams": map[string]any{"callID": "nope"}}), CodeCallError, "CALL DOES NOT EXIST")
	wantErr(t, call("verto.bye", map[string]any{}), CodeCallError, "Dialog data missing")
	wantErr(t, call("verto.bye", map[string]any{"dialogParams": map[string]any{}}), CodeCallError, "CallID missing")
	wantErr(t, call("verto.answer", map[string]any{"dialogParams": dp}), CodeCallError, "SDP missing")
	// Answering one's own outgoing call is not allowed.
	wantErr(t, call("verto.answer", map[string]any{"dialogParams": dp, "sdp": offerSDP}), CodeCallError, "CALL ERROR")
	wantErr(t, call("verto.attach", map[string]any{"dialogParams": dp, "sdp": offerSDP}), CodeCallError, "CALL ERROR")
	wantErr(t, call("verto.attach", map[string]any{"dialogParams": dp}), CodeCallError, "SDP missing")
	// Nothing of that disturbed the call.
	ic.rec.none(t, 20*time.Millisecond)
	if err := ic.call.Answer(answerSDP); err != nil {
		t.Fatal(err)
	}
	e.next(c, "verto.answer")
	// causeCode as a numeric string, unknown cause name falls back to it.
	m = call("verto.bye", map[string]any{"dialogParams": dp, "cause": "NOT_A_CAUSE", "causeCode": "21"})
	wantOK(t, m)
	ic.rec.expect(t, "hangup:CALL_REJECTED")
}

func TestDisconnectEndsUnansweredCall(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	m, _ := c.Invite(e.ctx, "c-ring", "ring", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	c.Drop()
	ic.rec.expect(t, "hangup:DESTINATION_OUT_OF_ORDER")
	peers.WaitFor(t, 5*time.Second, "session gone", func() bool { s, calls := e.counts(); return s == 0 && calls == 0 })
	if err := ic.call.Answer(answerSDP); !errors.Is(err, ErrCallEnded) {
		t.Fatalf("Answer on ended call: %v", err)
	}
}

func TestDisconnectEndsNonRecoverableCall(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	m, _ := c.Invite(e.ctx, "c-nr", "norecover", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	_ = ic.call.Answer(answerSDP)
	e.next(c, "verto.answer")
	c.Close()
	ic.rec.expect(t, "hangup:NORMAL_CLEARING")

	// recoverCall:false in dialogParams also ends the call on disconnect.
	c2 := e.login("alice", "secret", "")
	dp := vertotest.DialogParams("c-nr2", "echo")
	dp["recoverCall"] = false
	m, _ = c2.Call(e.ctx, "verto.invite", map[string]any{"sdp": offerSDP, "dialogParams": dp})
	wantOK(t, m)
	ic = e.inbound()
	if ic.inv.Recover {
		t.Fatal("Recover should be false")
	}
	c2.Close()
	ic.rec.expect(t, "hangup:NORMAL_CLEARING")
	peers.WaitFor(t, 5*time.Second, "session gone", func() bool { s, calls := e.counts(); return s == 0 && calls == 0 })
}

func TestReattachWithinGrace(t *testing.T) {
	e := newEnv(t, Config{DetachGrace: 5 * time.Second})
	c := e.login("alice", "secret", "")
	sid := c.SessID
	callID := uuid.NewString()
	m, _ := c.Invite(e.ctx, callID, "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	e.next(c, "verto.answer")
	_ = ic.call.Display("Echo", "echo")
	e.next(c, "verto.display")

	c.Drop() // page reload
	ic.rec.expect(t, "detached")
	if s, calls := e.counts(); s != 1 || calls != 1 {
		t.Fatalf("sessions %d calls %d during grace", s, calls)
	}
	if e.srv.Online("alice") {
		t.Fatal("a detached session is not online")
	}
	// Server messages for a detached call are dropped, not an error.
	if err := ic.call.Display("Echo2", "echo"); err != nil {
		t.Fatal(err)
	}

	n := e.dial()
	n.SessID = sid
	lm, err := n.LoginSW(e.ctx, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, lm)
	ic.rec.expect(t, "reattach-offer")
	att := e.next(n, "verto.attach")
	if att.Str("callID") != callID || att.Str("sdp") != "offer-2" || att.Str("display_direction") != "inbound" ||
		att.Str("caller_id_number") != "1008" || att.Str("callee_id_name") != "Echo2" {
		t.Fatalf("verto.attach %+v", att.Params)
	}
	ready := e.next(n, "verto.clientReady")
	if rs, _ := ready.Params["reattached_sessions"].([]any); len(rs) != 1 || rs[0] != callID {
		t.Fatalf("clientReady %+v", ready.Params)
	}
	// The client answers the new offer with its own verto.attach.
	r, err := n.Attach(e.ctx, callID, "answer-2")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	ic.rec.expect(t, "reattached:answer-2")
	d := e.next(n, "verto.display")
	if d.Str("callID") != callID || d.Str("display_name") != "Echo2" {
		t.Fatalf("display after attach %+v", d.Params)
	}
	// The call lives on: DTMF and hangup work on the new socket.
	r, _ = n.DTMF(e.ctx, callID, "7")
	wantOK(t, r)
	ic.rec.expect(t, "dtmf:7")
	r, _ = n.Bye(e.ctx, callID, "")
	wantOK(t, r)
	ic.rec.expect(t, "hangup:NORMAL_CLEARING")
}

func TestReattachGraceExpires(t *testing.T) {
	e := newEnv(t, Config{DetachGrace: 150 * time.Millisecond})
	c := e.login("alice", "secret", "")
	sid := c.SessID
	m, _ := c.Invite(e.ctx, "c-exp", "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	e.next(c, "verto.answer")
	c.Close()
	ic.rec.expect(t, "detached")
	ic.rec.expect(t, "hangup:RECOVERY_ON_TIMER_EXPIRE")
	peers.WaitFor(t, 5*time.Second, "session gone", func() bool { s, calls := e.counts(); return s == 0 && calls == 0 })
	// Logging in with the old sessid afterwards re-attaches nothing.
	n := e.login("alice", "secret", sid)
	if n.SessID != sid {
		t.Fatal("sessid should be reused")
	}
	ready := e.next(n, "verto.clientReady")
	if rs, _ := ready.Params["reattached_sessions"].([]any); len(rs) != 0 {
		t.Fatalf("clientReady %+v", ready.Params)
	}
	e.noRequest(n, "verto.attach", 50*time.Millisecond)
}

func TestReattachNeverAnswered(t *testing.T) {
	e := newEnv(t, Config{DetachGrace: 200 * time.Millisecond})
	c := e.login("alice", "secret", "")
	m, _ := c.Invite(e.ctx, "c-na", "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	e.next(c, "verto.answer")
	c.Drop()
	ic.rec.expect(t, "detached")
	n := e.login("alice", "secret", c.SessID) // vertojs-like: ignores verto.attach
	ic.rec.expect(t, "reattach-offer")
	e.next(n, "verto.attach")
	ic.rec.expect(t, "hangup:RECOVERY_ON_TIMER_EXPIRE")
	bye := e.next(n, "verto.bye")
	if bye.Str("callID") != "c-na" {
		t.Fatalf("bye %+v", bye.Params)
	}
}

func TestPuntKeepsAnsweredCall(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	m, _ := c.Invite(e.ctx, "c-punt", "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	e.next(c, "verto.answer")
	n := e.login("alice", "secret", c.SessID) // a second tab with the same sessid
	e.next(c, "verto.punt")
	ic.rec.expect(t, "detached")
	ic.rec.expect(t, "reattach-offer")
	att := e.next(n, "verto.attach")
	if att.Str("callID") != "c-punt" {
		t.Fatalf("%+v", att.Params)
	}
	r, _ := n.Attach(e.ctx, "c-punt", "answer-3")
	wantOK(t, r)
	ic.rec.expect(t, "reattached:answer-3")
}

func TestServerCloseHangsUpCalls(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	m, _ := c.Invite(e.ctx, "c-close", "echo", offerSDP)
	wantOK(t, m)
	ic := e.inbound()
	e.next(c, "verto.answer")
	e.srv.Close()
	ic.rec.expect(t, "hangup:SYSTEM_SHUTDOWN")
	bye := e.next(c, "verto.bye")
	if bye.Str("cause") != "SYSTEM_SHUTDOWN" {
		t.Fatalf("%+v", bye.Params)
	}
	if err := c.WaitClosed(e.ctx); err == nil {
		t.Fatal("socket should close")
	}
	if _, err := e.srv.Invite(context.Background(), OutboundRequest{User: "alice", SDP: offerSDP}, newRecorder()); err == nil {
		t.Fatal("Invite after Close must fail")
	}
}
