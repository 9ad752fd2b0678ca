package sipgw

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
)

// Transfer of a SIP leg (signaling.Transferer): the leg is the party that moves. The gateway
// starts a new proxy session from the leg's SDP and a call from it through the router (the
// target is whatever a call reaches: a user, a SIP URL, a Verto login), placed with the
// transferor's permissions. When that call is answered the leg is re-INVITEd with the new
// session's SDP (its origin line continued, so the peer sees one session), the leg's
// in-dialog events follow it into the new session, and the old call is hung up, which releases
// the transferor. A failure at any step hangs up what was started and leaves the old call as
// it was.

// sipLeg is one answered SIP dialog served by the gateway and the call and session it is in
// now (they change when it is transferred).
type sipLeg struct {
	g *Gateway
	// user is the leg's own user (digest user of an inbound call, the registered user of a
	// device we called), the permissions it transfers its calls with.
	user string
	log  *slog.Logger

	mu     sync.Mutex
	call   *sip.Call // the SIP dialog in this place (another one takes it over: Replaces)
	callID string
	sid    string
	side   signaling.Side
	obs    *inObserver   // progress of callID when the leg is its caller (nil for a callee)
	moved  chan struct{} // closed (and replaced) when the leg moves to another call
	busy   bool          // a transfer is under way
	// orphan: the old call ended while the transfer was under way (a transferor that hangs
	// up right after its REFER); a failed transfer then hangs the leg up.
	orphan bool
	// onMove runs when the leg has moved, before the old call is hung up (an outbound leg
	// stops being that call's invitee).
	onMove func()
	// released: the dialog left this place for another call's (attended transfer); the place
	// is over without hanging the dialog up.
	released bool
	// stop ends the place (closed by the invitee when its call ends: callee places).
	stop     chan struct{}
	stopOnce sync.Once
}

func newSIPLeg(g *Gateway, call *sip.Call, user, callID, sid string, side signaling.Side, obs *inObserver, log *slog.Logger) *sipLeg {
	l := &sipLeg{g: g, call: call, user: user, callID: callID, sid: sid, side: side, obs: obs, moved: make(chan struct{}), stop: make(chan struct{}), log: log}
	g.trackLeg(nil, call, l)
	return l
}

// sipCall is the SIP dialog in the place now.
func (l *sipLeg) sipCall() *sip.Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.call
}

// endPosition ends the place: its serving goroutine hangs up the dialog in it.
func (l *sipLeg) endPosition() { l.stopOnce.Do(func() { close(l.stop) }) }

func (l *sipLeg) isReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

// takeOver puts dialog nc in the place of the current one, which it returns (detached from
// the place: its end no longer ends the call; the caller hangs it up).
func (l *sipLeg) takeOver(nc *sip.Call) *sip.Call {
	l.mu.Lock()
	old, sid, side := l.call, l.sid, l.side
	l.call = nc
	close(l.moved)
	l.moved = make(chan struct{})
	l.mu.Unlock()
	l.g.trackLeg(old, nc, l)
	old.SetEvents(nil)
	nc.SetEvents(&legEvents{g: l.g, sessionID: sid, side: side, leg: l})
	return old
}

// release ends the place without hanging up its dialog, which went elsewhere.
func (l *sipLeg) release() {
	l.mu.Lock()
	l.released = true
	close(l.moved)
	l.moved = make(chan struct{})
	onMove := l.onMove
	l.onMove = nil
	l.mu.Unlock()
	if onMove != nil {
		onMove()
	}
}

// trackLeg records that dialog nc is in place l (old, if not nil, no longer is).
func (g *Gateway) trackLeg(old, nc *sip.Call, l *sipLeg) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old != nil && g.legs[old] == l {
		delete(g.legs, old)
	}
	if nc != nil {
		g.legs[nc] = l
	}
}

// untrackLeg forgets dialog c's place, if it is still l.
func (g *Gateway) untrackLeg(c *sip.Call, l *sipLeg) {
	g.mu.Lock()
	if g.legs[c] == l {
		delete(g.legs, c)
	}
	g.mu.Unlock()
}

// legOf is the place of dialog c, or nil.
func (g *Gateway) legOf(c *sip.Call) *sipLeg {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.legs[c]
}

func (l *sipLeg) current() (callID, sid string, side signaling.Side, obs *inObserver, moved chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.callID, l.sid, l.side, l.obs, l.moved
}

// holdForTransfer reports whether a transfer is under way, noting that the leg's call ended
// meanwhile: the leg then waits for the transfer's outcome instead of hanging up.
func (l *sipLeg) holdForTransfer() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy {
		l.orphan = true
	}
	return l.busy
}

// legObserver is the CallObserver of a call whose caller is a SIP leg: it passes progress to
// the leg's owner and moves the leg when the call is transferred by its callee.
type legObserver struct {
	*inObserver
	leg *sipLeg
}

// Transfer moves the caller's SIP leg (signaling.Transferer).
func (o legObserver) Transfer(ctx context.Context, t signaling.Transfer) (string, error) {
	return o.leg.transfer(ctx, t)
}

// Transfer moves the callee's SIP leg (signaling.Transferer).
func (o *outInvitee) Transfer(ctx context.Context, t signaling.Transfer) (string, error) {
	o.mu.Lock()
	l := o.leg
	o.mu.Unlock()
	if l == nil {
		return "", signaling.Errorf(signaling.CodeInvalidOperation, "The SIP leg of call %s is not answered", t.CallID)
	}
	return l.transfer(ctx, t)
}

// farKind is the far side of the session a transferred leg moves into: RTP toward SIP URLs,
// the user far side toward users, WebRTC toward Verto (the router adapts offers to invitees
// of the other kind anyway).
func (g *Gateway) farKind(d signaling.Destination) string {
	switch d.Type {
	case signaling.CallTypeSIP:
		return "rtp"
	case signaling.CallTypeVerto:
		return "webrtc"
	}
	if isSIPURL(d.Callee) {
		return "rtp"
	}
	return g.farSide(Route{CallType: signaling.CallTypeUser, Callee: d.Callee})
}

// transfer moves the leg into a new call to t.Dest (see the file comment).
func (l *sipLeg) transfer(ctx context.Context, t signaling.Transfer) (_ string, err error) {
	g := l.g
	switch into := t.Into.(type) {
	case nil:
	case *sipLeg:
		if into == l {
			return "", signaling.Errorf(signaling.CodeInvalidOperation, "Attended transfer of call %s: it cannot join itself", t.CallID)
		}
		return l.transferInto(ctx, t, into)
	case Route:
		return l.transferToSession(ctx, t, into)
	default:
		return "", signaling.Errorf(signaling.CodeInvalidOperation, "Transfer of call %s: not a SIP target", t.CallID)
	}
	oldCall, oldSID, call, finish, err := l.startTransfer(t.CallID)
	if err != nil {
		return "", err
	}
	defer func() { finish(err) }()
	offer := call.RemoteSDP()
	if len(offer) == 0 {
		return "", signaling.Errorf(signaling.CodeSIPNoSDP, "The SIP leg of call %s has no SDP to move", t.CallID)
	}
	info := call.Info()
	log := l.log.With("transfer_from", oldCall, "to_type", t.Dest.Type, "to", t.Dest.Callee)
	owner := ownerPrefix + call.ID()
	desc := signaling.Desc{"sdp": string(offer), "sdp_type": "rtp"}
	name, id := displayName(info.CallerName), info.CallerID
	if call.Direction() == sip.Outbound { // the party we called: To's identity
		name, id = "", info.ToUser
	}
	if !isUserName(id) {
		id = ""
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	res, err := g.core.StartSession(sctx, signaling.SessionRequest{
		Type: signaling.TypeProxy, Offer: desc, Owner: owner, User: t.Dest.Caller.User,
		Options: map[string]any{"proxy_type": g.farKind(t.Dest)},
	})
	cancel()
	if err != nil {
		log.Info("transfer: session refused", "err", err)
		return "", err
	}
	sid := res.SessionID
	obs := newInObserver()
	caller := signaling.CallerInfo{Name: name, ID: id, User: t.Dest.Caller.User, Owner: owner}
	sctx, cancel = context.WithTimeout(ctx, 15*time.Second)
	newCall, err := g.core.StartCall(sctx, signaling.CallRequest{
		Type: t.Dest.Type, Callee: t.Dest.Callee, SessionID: sid, Offer: res.Offer, Caller: caller,
		RingTime: g.cfg.RingTime, Observer: legObserver{inObserver: obs, leg: l},
		Data: map[string]any{"sip_call_id": info.CallID, "transferred_from": oldCall},
	})
	cancel()
	if err != nil {
		_ = g.core.StopSession(sid, signaling.AsError(err))
		log.Info("transfer: call refused", "err", err)
		return "", err
	}
	log = log.With("new_call_id", newCall, "new_session_id", sid)
	fail := func(e *signaling.Error) (string, error) {
		_ = g.core.HangupCall(newCall, e)
		_ = g.core.StopSession(sid, e)
		log.Info("transfer failed", "err", fmtErr(e))
		return "", e
	}
	var answer signaling.Desc
wait:
	for {
		select {
		case <-obs.ringing:
		case answer = <-obs.answered:
			break wait
		case e := <-obs.hangup:
			_ = g.core.StopSession(sid, e)
			log.Info("transfer: new call not answered", "err", fmtErr(e))
			return "", e
		case <-call.Done():
			return fail(signaling.Errorf(signaling.CodeSIPBye, "The transferred SIP party hung up"))
		case <-ctx.Done():
			return fail(signaling.Errorf(signaling.CodeTimeout, "Transfer abandoned: %v", ctx.Err()))
		}
	}
	sdp := answer.SDP()
	if sdp == "" {
		return fail(signaling.Errorf(signaling.CodeSIPNoSDP, "The transfer target answered without SDP"))
	}
	if e := l.reinviteInto(ctx, call, sid, sdp, log); e != nil {
		return fail(e)
	}
	log.Info("SIP leg transferred")
	l.moveTo(t, call, newCall, sid, obs, oldCall, oldSID, t.Dest.Callee)
	return newCall, nil
}

// startTransfer marks the leg busy with a transfer of its call callID and returns what the
// transfer starts from; finish, deferred with the transfer's error, clears the mark and, when
// the old call ended meanwhile and the transfer failed (nothing to go back to), hangs the leg
// up and stops its old session.
func (l *sipLeg) startTransfer(callID string) (oldCall, oldSID string, call *sip.Call, finish func(error), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy {
		return "", "", nil, nil, signaling.Errorf(signaling.CodeInvalidOperation, "Call %s: a transfer is already under way", callID)
	}
	if l.callID != callID {
		return "", "", nil, nil, signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", callID)
	}
	l.busy = true
	oldCall, oldSID, call = l.callID, l.sid, l.call
	finish = func(err error) {
		l.mu.Lock()
		l.busy = false
		orphan := l.orphan
		l.orphan = false
		l.mu.Unlock()
		if err != nil && orphan {
			hangup(call)
			_ = l.g.core.StopSession(oldSID, signaling.AsError(err))
		}
	}
	return oldCall, oldSID, call, finish, nil
}

// reinviteInto re-INVITEs the leg's dialog with answer (session sid's SDP, the dialog's
// origin continued) and gives the SIP party's answer to that session's media.
func (l *sipLeg) reinviteInto(ctx context.Context, call *sip.Call, sid, answer string, log *slog.Logger) *signaling.Error {
	rctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	peerAnswer, err := call.Reinvite(rctx, ContinueOrigin(call.LocalSDP(), []byte(answer)))
	cancel()
	if err != nil {
		return signaling.Errorf(signaling.CodeSIPSendError, "The transferred SIP party refused the new media: %v", err)
	}
	if len(peerAnswer) > 0 {
		if m, err := signaling.MediaAs[signaling.RTPReofferer](l.g.core, sid); err == nil {
			if _, err := m.ReofferRTP(signaling.SideCaller, string(peerAnswer)); err != nil {
				log.Info("transfer: the SIP party's answer not applied", "err", err)
			}
		}
	}
	return nil
}

// moveTo records the leg's new place (call newCall, "" for none, with its observer, in
// session sid as the caller's side), tells the transfer it was answered, and ends the old call
// and session with 1013 "Transferred to <to>".
func (l *sipLeg) moveTo(t signaling.Transfer, call *sip.Call, newCall, sid string, obs *inObserver, oldCall, oldSID, to string) {
	l.mu.Lock()
	l.callID, l.sid, l.side, l.obs = newCall, sid, signaling.SideCaller, obs
	l.orphan = false
	close(l.moved)
	l.moved = make(chan struct{})
	onMove := l.onMove
	l.onMove = nil
	l.mu.Unlock()
	call.SetEvents(&legEvents{g: l.g, sessionID: sid, side: signaling.SideCaller, leg: l})
	if onMove != nil {
		onMove()
	}
	if t.Answered != nil {
		t.Answered()
	}
	e := signaling.Errorf(signaling.CodeUserStop, "Transferred to %s", to)
	_ = l.g.core.HangupCall(oldCall, e)
	_ = l.g.core.StopSession(oldSID, e)
}

// transferToSession moves the leg into a session of an extension's type (echo, park, a
// conference room: rt.SessionType) answering its SDP: re-INVITE with the session's answer, the
// old call hung up. The leg is then in no call; the session stopping hangs it up.
func (l *sipLeg) transferToSession(ctx context.Context, t signaling.Transfer, rt Route) (_ string, err error) {
	g := l.g
	oldCall, oldSID, call, finish, err := l.startTransfer(t.CallID)
	if err != nil {
		return "", err
	}
	defer func() { finish(err) }()
	offer := call.RemoteSDP()
	if len(offer) == 0 {
		return "", signaling.Errorf(signaling.CodeSIPNoSDP, "The SIP leg of call %s has no SDP to move", t.CallID)
	}
	opts := map[string]any{}
	if rt.RoomID != "" {
		opts["room_id"] = rt.RoomID
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	res, err := g.core.StartSession(sctx, signaling.SessionRequest{Type: rt.SessionType, Offer: signaling.Desc{"sdp": string(offer), "sdp_type": "rtp"},
		Owner: ownerPrefix + call.ID(), User: l.user, Options: opts})
	cancel()
	if err != nil {
		return "", err
	}
	sid := res.SessionID
	answer := res.Answer.SDP()
	if answer == "" {
		e := signaling.Errorf(signaling.CodeSIPNoSDP, "No answer from the %s session", rt.SessionType)
		_ = g.core.StopSession(sid, e)
		return "", e
	}
	if e := l.reinviteInto(ctx, call, sid, answer, l.log); e != nil {
		_ = g.core.StopSession(sid, e)
		return "", e
	}
	l.log.Info("SIP leg transferred to a session", "type", rt.SessionType, "new_session_id", sid)
	l.moveTo(t, call, "", sid, nil, oldCall, oldSID, rt.SessionType)
	return "", nil
}

// transferInto is an attended transfer: the leg's dialog takes place p (the transferor's other
// SIP dialog, in another call): it is re-INVITEd toward p's media (p's local SDP, the leg's
// origin continued), p's media is pointed at the leg's answer, the leg's old call is hung up
// (releasing the transferor there) and p's old dialog (the transferor's) gets BYE; p's call
// goes on with this dialog in it.
func (l *sipLeg) transferInto(ctx context.Context, t signaling.Transfer, p *sipLeg) (string, error) {
	g := l.g
	l.mu.Lock()
	if l.busy || l.released || l.callID != t.CallID {
		l.mu.Unlock()
		return "", signaling.Errorf(signaling.CodeInvalidOperation, "Call %s: a transfer is already under way", t.CallID)
	}
	l.busy = true
	oldCall, oldSID, call := l.callID, l.sid, l.call
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.busy, l.orphan = false, false
		l.mu.Unlock()
	}()
	p.mu.Lock()
	pCall, pCallID, pSID, pSide, pReleased := p.call, p.callID, p.sid, p.side, p.released
	p.mu.Unlock()
	if pReleased || pCallID == oldCall {
		return "", signaling.Errorf(signaling.CodeCallNotFound, "Attended transfer: the call to join is gone")
	}
	m, err := signaling.MediaAs[signaling.RTPReofferer](g.core, pSID)
	if err != nil {
		return "", err
	}
	local := pCall.LocalSDP()
	if len(local) == 0 {
		return "", signaling.Errorf(signaling.CodeSIPNoSDP, "Attended transfer: the call to join has no SDP")
	}
	rctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	ans, err := call.Reinvite(rctx, ContinueOrigin(call.LocalSDP(), local))
	cancel()
	if err != nil {
		return "", signaling.Errorf(signaling.CodeSIPSendError, "The transferred SIP party refused the new media: %v", err)
	}
	if len(ans) > 0 {
		if _, err := m.ReofferRTP(pSide, string(ans)); err != nil {
			l.log.Info("attended transfer: the party's answer not applied", "err", err)
			return "", signaling.Errorf(signaling.CodeSIPNoSDP, "Attended transfer: the answer was not applied: %v", err)
		}
	}
	l.release()
	prev := p.takeOver(call)
	l.log.Info("SIP leg joined the transferor's other call (attended transfer)", "new_call_id", pCallID, "new_session_id", pSID)
	if t.Answered != nil {
		t.Answered()
	}
	e := signaling.Errorf(signaling.CodeUserStop, "Transferred (attended)")
	_ = g.core.HangupCall(oldCall, e)
	_ = g.core.StopSession(oldSID, e)
	hangup(prev)
	return pCallID, nil
}

// replaceDialog answers an inbound INVITE with Replaces (RFC 3891): the new dialog takes the
// place of the replaced one (whose party it must be: same digest user, or for calls without
// one the same address), the place's media pointed at the new caller's offer, and the replaced
// dialog gets BYE.
func (g *Gateway) replaceDialog(call, old *sip.Call, log *slog.Logger) {
	p := g.legOf(old)
	if p == nil || p.isReleased() {
		_ = call.Reject(481, "Call/Transaction Does Not Exist (Replaces names no answered call)")
		return
	}
	ni, oi := call.Info(), old.Info()
	sameParty := ni.AuthUser != "" && strings.EqualFold(ni.AuthUser, p.user)
	if ni.AuthUser == "" && p.user == "" {
		sameParty = hostOf(ni.Source) != "" && hostOf(ni.Source) == hostOf(oi.Source)
	}
	if !sameParty {
		log.Info("INVITE with Replaces refused: not the replaced call's party", "user", ni.AuthUser)
		_ = call.Reject(403, "Forbidden (Replaces: not your call)")
		return
	}
	offer := call.RemoteSDP()
	if len(offer) == 0 {
		_ = call.Reject(488, "Not Acceptable Here (Replaces needs an SDP offer)")
		return
	}
	_, sid, side, _, _ := p.current()
	m, err := signaling.MediaAs[signaling.RTPReofferer](g.core, sid)
	if err != nil {
		_ = call.Reject(488, "Not Acceptable Here (this call's media cannot be moved)")
		return
	}
	ans, err := m.ReofferRTP(side, string(offer))
	if err != nil {
		_ = call.Reject(488, "Not Acceptable Here ("+oneLine(err.Error())+")")
		return
	}
	if err := call.Answer([]byte(ans)); err != nil {
		if prevOffer := old.RemoteSDP(); len(prevOffer) > 0 {
			_, _ = m.ReofferRTP(side, string(prevOffer)) // back to the replaced party
		}
		return
	}
	prev := p.takeOver(call)
	log.Info("SIP dialog replaced (Replaces)", "replaced_sip_call_id", oi.CallID)
	hangup(prev)
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// serveLeg owns an answered SIP leg until it ends, following it through transfers and
// through dialogs taking its place (Replaces): the end of the SIP dialog ends its call and
// session, the end of its call hangs the dialog up (as caller: the call's hangup; as callee:
// stop, closed by the invitee), and RFC 4733 digits from the other side go out as SIP INFO
// where needed.
func (g *Gateway) serveLeg(l *sipLeg) {
	for {
		l.mu.Lock()
		call, callID, sid, side, obs, moved, released := l.call, l.callID, l.sid, l.side, l.obs, l.moved, l.released
		l.mu.Unlock()
		if released {
			return // the dialog serves another call now
		}
		stopDTMF := g.watchDTMF(call, sid, side)
		var hangupCh chan *signaling.Error
		if obs != nil {
			hangupCh = obs.hangup
		}
		var sessionStopped <-chan struct{}
		unwatch := func() {}
		if callID == "" { // in a session of its own (an extension): its stop ends the dialog
			w := g.watchStop(sid)
			sessionStopped, unwatch = w.done, w.cancel
		}
		stopDTMF = func(f1, f2 func()) func() { return func() { f1(); f2() } }(stopDTMF, unwatch)
		select {
		case <-moved:
			stopDTMF()
			continue
		case <-sessionStopped:
			stopDTMF()
			hangup(call)
			g.untrackLeg(call, l)
			l.log.Info("SIP call ended by its session", "session_id", sid)
			return
		case e := <-hangupCh:
			stopDTMF()
			if cur, _, _, _, _ := l.current(); cur != callID || l.holdForTransfer() {
				continue // the call we left behind, or one we are leaving
			}
			hangup(call)
			_ = g.core.StopSession(sid, e)
			g.untrackLeg(call, l)
			l.log.Info("SIP call ended by its call", "call_id", callID, "err", fmtErr(e))
			return
		case <-l.stop:
			stopDTMF()
			hangup(call)
			g.untrackLeg(call, l)
			return
		case <-call.Done():
			stopDTMF()
			if l.sipCall() != call || l.isReleased() {
				continue // a dialog that left this place
			}
			e := sipEndError(call.End())
			if callID != "" {
				_ = g.core.HangupCall(callID, e)
			}
			_ = g.core.StopSession(sid, e)
			g.untrackLeg(call, l)
			l.log.Info("SIP call ended", "call_id", callID)
			return
		case <-g.ctx.Done():
			stopDTMF()
			e := signaling.Errorf(signaling.CodeSessionStop, "SIP gateway stopping")
			if callID != "" {
				_ = g.core.HangupCall(callID, e)
			}
			_ = g.core.StopSession(sid, e)
			hangup(call)
			g.untrackLeg(call, l)
			return
		}
	}
}

// ContinueOrigin returns next (an SDP for the same peer from a new session) with the origin
// line of prev, its version one higher, so that the peer sees a modification of the session
// it has (RFC 3264 §8) rather than a new one. Without an o= line in either, next is returned
// as is.
func ContinueOrigin(prev, next []byte) []byte {
	po := originLine(prev)
	no := originLine(next)
	if po == nil || no == nil {
		return next
	}
	f := bytes.Fields(po)
	if len(f) < 6 {
		return next
	}
	var v uint64
	if _, err := fmt.Sscan(string(f[2]), &v); err != nil {
		return next
	}
	f[2] = []byte(fmt.Sprint(v + 1))
	out := make([]byte, 0, len(next)+len(po))
	i := bytes.Index(next, no)
	out = append(out, next[:i]...)
	out = append(out, bytes.Join(f, []byte(" "))...)
	out = append(out, next[i+len(no):]...)
	return out
}

// originLine is the content of sdp's o= line (without the line end), or nil.
func originLine(sdp []byte) []byte {
	for line := range bytes.Lines(sdp) {
		if bytes.HasPrefix(line, []byte("o=")) {
			return bytes.TrimRight(line, "\r\n")
		}
	}
	return nil
}
