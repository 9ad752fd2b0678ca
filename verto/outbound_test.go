package verto

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

func (e *env) invite(req OutboundRequest) (*OutboundCall, *recorder) {
	e.t.Helper()
	rec := newRecorder()
	if req.SDP == "" {
		req.SDP = answerSDP // any complete SDP with candidates stands in for the server offer
	}
	o, err := e.srv.Invite(e.ctx, req, rec)
	if err != nil {
		e.t.Fatal(err)
	}
	return o, rec
}

func TestOutboundInviteAnswer(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("bob", "bobpw", "")
	o, rec := e.invite(OutboundRequest{User: "bob", CallerIDName: "Alice", CallerIDNumber: "1000", CalleeIDName: "Bob", CalleeIDNumber: "2000"})
	inv := e.next(c, "verto.invite")
	want := map[string]string{"callID": o.ID(), "sdp": answerSDP, "caller_id_name": "Alice", "caller_id_number": "1000",
		"callee_id_name": "Bob", "callee_id_number": "2000", "display_direction": "outbound"}
	for k, v := range want {
		if inv.Str(k) != v {
			t.Fatalf("verto.invite %s = %q, want %q", k, inv.Str(k), v)
		}
	}
	if _, ok := inv.Params["variables"].(map[string]any); !ok {
		t.Fatal("verto.invite without variables")
	}
	if o.Call() != nil {
		t.Fatal("no winner yet")
	}
	r, err := c.Answer(e.ctx, o.ID(), offerSDP)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	if len(r.Result) != 1 {
		t.Fatalf("verto.answer reply must be empty plus sessid: %+v", r.Result)
	}
	rec.expect(t, "answered:"+o.ID()+":"+offerSDP)
	call := o.Call()
	if call == nil || call.Direction() != Outbound || !call.Answered() || call.User() != "bob" || call.SessionID() != c.SessID {
		t.Fatal("winner call wrong")
	}
	// The server sends no verto.answer back for this direction.
	e.noRequest(c, "verto.answer", 30*time.Millisecond)
	// In-call: DTMF and hold reach the outbound events.
	r, _ = c.DTMF(e.ctx, o.ID(), "42")
	wantOK(t, r)
	rec.expect(t, "dtmf:42")
	r, _ = c.Modify(e.ctx, o.ID(), "hold")
	wantOK(t, r)
	rec.expect(t, "hold:true")
	if !call.Held() {
		t.Fatal("Held false")
	}
	// The far end hangs up: Cancel on an answered call sends the bye.
	o.Cancel(CauseNormalClearing)
	bye := e.next(c, "verto.bye")
	if bye.Str("callID") != o.ID() || bye.Str("cause") != "NORMAL_CLEARING" {
		t.Fatalf("bye %+v", bye.Params)
	}
	rec.none(t, 30*time.Millisecond)
}

func TestOutboundClientHangsUpAfterAnswer(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("bob", "bobpw", "")
	o, rec := e.invite(OutboundRequest{User: "bob", CallerIDName: "Alice", CallerIDNumber: "1000"})
	e.next(c, "verto.invite")
	r, _ := c.Answer(e.ctx, o.ID(), offerSDP)
	wantOK(t, r)
	rec.expect(t, "answered:"+o.ID()+":"+offerSDP)
	r, _ = c.Bye(e.ctx, o.ID(), "")
	wantOK(t, r)
	rec.expect(t, "hangup:NORMAL_CLEARING")
}

func TestOutboundReject(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("bob", "bobpw", "")
	o, rec := e.invite(OutboundRequest{User: "bob"})
	e.next(c, "verto.invite")
	r, err := c.Bye(e.ctx, o.ID(), "CALL_REJECTED")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	if r.Str("cause") != "CALL_REJECTED" || r.Result["causeCode"] != float64(21) {
		t.Fatalf("%+v", r.Result)
	}
	rec.expect(t, "rejected:CALL_REJECTED")
	// Late answer: the call is gone.
	r, _ = c.Answer(e.ctx, o.ID(), offerSDP)
	wantErr(t, r, CodeCallError, "CALL DOES NOT EXIST")
	o.Cancel(CauseOriginatorCancel) // harmless after the end
	rec.none(t, 30*time.Millisecond)
	if _, calls := e.counts(); calls != 0 {
		t.Fatalf("%d calls left", calls)
	}
}

func TestOutboundRingsEveryLoginFirstAnswerWins(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.login("bob", "bobpw", "")
	b := e.login("bob", "bobpw", "")
	c := e.login("bob", "bobpw", "")
	other := e.login("alice", "secret", "")
	o, rec := e.invite(OutboundRequest{User: "bob", CallerIDName: "Alice"})
	ia, ib, ic := e.next(a, "verto.invite"), e.next(b, "verto.invite"), e.next(c, "verto.invite")
	ids := map[string]bool{ia.Str("callID"): true, ib.Str("callID"): true, ic.Str("callID"): true}
	if len(ids) != 3 {
		t.Fatal("each socket needs its own callID")
	}
	e.noRequest(other, "verto.invite", 30*time.Millisecond)
	// b answers first.
	r, _ := b.Answer(e.ctx, ib.Str("callID"), "sdp-b")
	wantOK(t, r)
	rec.expect(t, "answered:"+ib.Str("callID")+":sdp-b")
	byeA, byeC := e.next(a, "verto.bye"), e.next(c, "verto.bye")
	for _, bye := range []struct {
		got  string
		want string
		code any
	}{{byeA.Str("callID"), ia.Str("callID"), byeA.Params["causeCode"]}, {byeC.Str("callID"), ic.Str("callID"), byeC.Params["causeCode"]}} {
		if bye.got != bye.want || bye.code != float64(702) {
			t.Fatalf("loser bye %+v", bye)
		}
	}
	if byeA.Str("cause") != "LOSE_RACE" {
		t.Fatalf("%+v", byeA.Params)
	}
	e.noRequest(b, "verto.bye", 30*time.Millisecond)
	// A loser answering late is told the call does not exist; nothing reaches the events.
	r, _ = c.Answer(e.ctx, ic.Str("callID"), "sdp-c")
	wantErr(t, r, CodeCallError, "CALL DOES NOT EXIST")
	rec.none(t, 30*time.Millisecond)
	if o.Call() == nil || o.Call().ID() != ib.Str("callID") {
		t.Fatal("winner")
	}
}

func TestOutboundAllRejectOrVanish(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.login("bob", "bobpw", "")
	b := e.login("bob", "bobpw", "")
	o, rec := e.invite(OutboundRequest{User: "bob"})
	ia := e.next(a, "verto.invite")
	e.next(b, "verto.invite")
	r, _ := a.Bye(e.ctx, ia.Str("callID"), "USER_BUSY")
	wantOK(t, r)
	rec.none(t, 30*time.Millisecond) // b still rings
	b.Drop()
	rec.expect(t, "rejected:DESTINATION_OUT_OF_ORDER")
	if o.Call() != nil {
		t.Fatal("no winner expected")
	}
}

func TestOutboundCancelAndContext(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.login("bob", "bobpw", "")
	b := e.login("bob", "bobpw", "")
	o, rec := e.invite(OutboundRequest{User: "bob"})
	e.next(a, "verto.invite")
	e.next(b, "verto.invite")
	o.Cancel(CauseLoseRace) // another invitee (e.g. a SIP phone) answered first
	if bye := e.next(a, "verto.bye"); bye.Str("cause") != "LOSE_RACE" {
		t.Fatalf("%+v", bye.Params)
	}
	if bye := e.next(b, "verto.bye"); bye.Str("cause") != "LOSE_RACE" {
		t.Fatalf("%+v", bye.Params)
	}
	rec.none(t, 30*time.Millisecond)

	// The ctx given to Invite bounds the ringing.
	ctx, cancel := context.WithCancel(e.ctx)
	rec2 := newRecorder()
	o2, err := e.srv.Invite(ctx, OutboundRequest{User: "bob", SessionID: a.SessID, SDP: answerSDP}, rec2)
	if err != nil {
		t.Fatal(err)
	}
	inv := e.next(a, "verto.invite")
	if inv.Str("callID") != o2.ID() {
		t.Fatal("SessionID targeting")
	}
	e.noRequest(b, "verto.invite", 30*time.Millisecond)
	cancel()
	if bye := e.next(a, "verto.bye"); bye.Str("cause") != "ORIGINATOR_CANCEL" || bye.Str("callID") != o2.ID() {
		t.Fatalf("%+v", bye.Params)
	}
	rec2.none(t, 30*time.Millisecond)
	peers.WaitFor(t, 5*time.Second, "calls gone", func() bool { _, calls := e.counts(); return calls == 0 })
}

func TestOutboundNotLoggedIn(t *testing.T) {
	e := newEnv(t, Config{})
	if _, err := e.srv.Invite(e.ctx, OutboundRequest{User: "carol", SDP: answerSDP}, newRecorder()); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("want ErrNotLoggedIn, got %v", err)
	}
	e.login("carol", "c", "")
	if _, err := e.srv.Invite(e.ctx, OutboundRequest{User: "carol", SessionID: "nope", SDP: answerSDP}, newRecorder()); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("want ErrNotLoggedIn for unknown sessid, got %v", err)
	}
	if _, err := e.srv.Invite(e.ctx, OutboundRequest{User: "carol"}, newRecorder()); err == nil {
		t.Fatal("Invite without SDP must fail")
	}
}

// refusingEvents fails the answer (e.g. the media engine cannot use the SDP).
type refusingEvents struct{ *recorder }

func (r refusingEvents) Answered(call *Call, sdp string) error {
	r.put("answered")
	return errors.New("bad sdp")
}

func TestOutboundAnswerRefused(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("bob", "bobpw", "")
	rec := newRecorder()
	o, err := e.srv.Invite(e.ctx, OutboundRequest{User: "bob", SDP: answerSDP}, refusingEvents{rec})
	if err != nil {
		t.Fatal(err)
	}
	e.next(c, "verto.invite")
	r, _ := c.Answer(e.ctx, o.ID(), "garbage")
	wantErr(t, r, CodeCallError, "MEDIA ERROR")
	rec.expect(t, "answered")
	rec.none(t, 30*time.Millisecond)
	if _, calls := e.counts(); calls != 0 {
		t.Fatal("call should be gone")
	}
}
