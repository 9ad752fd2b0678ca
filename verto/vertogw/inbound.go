package vertogw

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// HandleInvite routes a call a Verto client places (verto.CallHandler). It decides at once
// what can be decided without waiting (a bad or unknown destination, an extension without a
// backend, too many calls) and returns an error carrying the Verto cause; the rest runs in the
// background and reports through the call: verto.answer, verto.media, verto.bye.
func (g *Gateway) HandleInvite(_ context.Context, inv verto.Invite, call *verto.Call) (verto.CallEvents, error) {
	if g.draining() {
		return nil, verto.CauseSystemShutdown
	}
	route, err := g.cfg.Route(inv.Destination)
	if err != nil {
		g.log.Info("verto call refused", "user", inv.User, "dest", inv.Destination, "err", err)
		return nil, routeCause(err)
	}
	if route.IsExtension() {
		if _, _, err := g.core.Backends().Lookup(route.SessionType, ""); err != nil {
			g.log.Info("verto extension unavailable", "dest", inv.Destination, "type", route.SessionType, "err", err)
			return nil, causeOf(err, "")
		}
	}
	if !g.take(inv.User) {
		return nil, verto.CauseNormalCircuitCongestion
	}
	ib := &inbound{
		g: g, call: call, inv: inv, route: route,
		log:  g.log.With("verto_call", inv.CallID, "user", inv.User, "dest", inv.Destination),
		done: make(chan struct{}),
	}
	ib.dtmf = newDTMFQueue(&g.wg)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.release(inv.User)
		ib.run()
		<-ib.done
	}()
	// Every call may survive a page reload: its leg is kept if the session's media can
	// re-attach it (reattach.go).
	return recoverableInbound{ib}, nil
}

// inbound is one call a Verto client placed: its CallEvents and, for routed calls, the core's
// CallObserver.
type inbound struct {
	g     *Gateway
	call  *verto.Call
	inv   verto.Invite
	route Route
	log   *slog.Logger
	dtmf  *dtmfQueue

	mu        sync.Mutex
	sessionID string // the caller's session, once started
	begun     bool   // a session was started (the call then ends through finish)
	p2p       bool   // the session has no media (answers go to the client as they are)
	callID    string // the router's call, once registered
	ended     bool   // the call is over (either side)
	unsub     func()
	done      chan struct{}

	held bool // the client's hold state (verto.modify)

	leg keptLeg // the client's WebRTC leg, the caller side of the session (reattach.go)
}

func (ib *inbound) run() {
	ctx := ib.call.Context()
	owner := ownerKey(ib.inv.SessionID)
	// The caller id the client gives, else its user name (mod_verto takes the directory's).
	name, number := ib.inv.CallerIDName, ib.inv.CallerIDNumber
	if number == "" {
		number = ib.inv.User
	}
	if name == "" {
		name = number
	}
	offer := signaling.Desc{"sdp": ib.inv.SDP, "sdp_type": "webrtc", "caller_name": name, "caller_id": number}
	req := signaling.SessionRequest{Offer: offer, Owner: owner, User: ib.inv.User, Options: map[string]any{}}
	if ib.route.IsExtension() {
		req.Type = ib.route.SessionType
		if ib.route.RoomID != "" {
			req.Options["room_id"] = ib.route.RoomID
		}
		if ib.route.Bot != "" {
			req.Options["bot"] = ib.route.Bot
		}
	} else {
		req.Type = signaling.TypeProxy
		far := ib.g.cfg.farKind(ib.route)
		req.Options["proxy_type"] = far
		if _, _, err := ib.g.core.Backends().Lookup(signaling.TypeProxy, ""); err != nil {
			if far != "webrtc" {
				ib.fail(err)
				return
			}
			// No media backend: the client's offer goes to the far side as it is (WebRTC both
			// ways, signalling only).
			req.Type, req.Options = signaling.TypeP2P, nil
		}
	}
	res, err := ib.g.core.StartSession(ctx, req)
	if err != nil {
		ib.fail(err)
		return
	}
	sid := res.SessionID
	if err := ib.leg.keep(ib.g.core, sid, signaling.SideCaller); err != nil {
		ib.log.Info("verto call cannot be re-attached", "session_id", sid, "err", err)
	}
	// Learn when the session stops on its own (media timeout, backend gone).
	sub := signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: signaling.EventStop, ObjID: sid}
	ib.g.core.Bus().Subscribe(ib, sub)
	stopDTMF := func() {}
	if req.Type != signaling.TypeP2P && !ib.route.IsExtension() {
		stopDTMF = ib.g.dtmfToClient(ib.call, sid, ib.log) // dtmfinfo.go
	}
	ib.mu.Lock()
	ib.sessionID, ib.p2p, ib.begun = sid, req.Type == signaling.TypeP2P, true
	ib.unsub = func() { ib.g.core.Bus().UnsubscribeAll(ib); stopDTMF() }
	ended := ib.ended
	ib.mu.Unlock()
	if _, alive := ib.g.core.LookupSession(sid); !alive {
		ib.sessionStopped(sid, map[string]any{"code": float64(signaling.CodeSessionStop)})
		return
	}
	if ended {
		ib.finish(byeError(verto.CauseNormalClearing))
		return
	}
	if ib.route.IsExtension() {
		if err := ib.call.Answer(res.Answer.SDP()); err != nil {
			ib.finish(byeError(verto.CauseNormalClearing))
			return
		}
		ib.log.Info("verto call answered by extension", "session_id", sid, "type", req.Type)
		return
	}
	cl, err := ib.g.core.NewCall(signaling.CallRequest{
		CallID: callIDFor(ib.inv.CallID), Type: ib.route.CallType, Callee: ib.route.Callee, SessionID: sid,
		Offer:    offer,
		Caller:   signaling.CallerInfo{Name: name, ID: number, User: ib.inv.User, Owner: owner},
		Data:     map[string]any{"verto_call_id": ib.inv.CallID}, // for call records
		Observer: ib,
	})
	if err != nil {
		ib.fail(err)
		return
	}
	ib.mu.Lock()
	ib.callID = cl.ID()
	ended = ib.ended
	ib.mu.Unlock()
	if ended {
		ib.finish(byeError(verto.CauseNormalClearing))
		return
	}
	ib.log.Info("verto call routed", "call_id", cl.ID(), "type", ib.route.CallType, "callee", ib.route.Callee, "session_id", sid)
	cl.Start(context.WithoutCancel(ctx))
}

// callIDFor reuses the Verto callID as the router's call id when the core accepts it.
func callIDFor(vertoID string) string {
	if signaling.ValidID(vertoID) {
		return vertoID
	}
	return ""
}

// fail ends a call that could not be routed.
func (ib *inbound) fail(err error) {
	cause := causeOf(err, ib.route.CallType)
	ib.log.Info("verto call failed", "err", errText(err), "cause", cause.Name)
	_ = ib.call.Hangup(cause)
	ib.finish(nil)
}

// finish ends what the call started (the router's call, else the session) with err (nil: it
// is already over) and releases the gateway's hold on it; it runs once.
func (ib *inbound) finish(err *signaling.Error) {
	ib.mu.Lock()
	ib.ended = true
	sid, callID, unsub := ib.sessionID, ib.callID, ib.unsub
	ib.unsub = nil
	select {
	case <-ib.done:
		ib.mu.Unlock()
		return
	default:
		close(ib.done)
	}
	ib.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	if err != nil {
		if callID != "" {
			_ = ib.g.core.HangupCall(callID, err)
		}
		if sid != "" {
			_ = ib.g.core.StopSession(sid, err)
		}
	}
}

// Deliver is the bus sink of the caller's session stop event (signaling.Sink).
func (ib *inbound) Deliver(ev signaling.Event) {
	if ev.Type == signaling.EventStop {
		ib.g.wg.Add(1)
		go func() {
			defer ib.g.wg.Done()
			ib.sessionStopped(ev.ObjID, ev.Body)
		}()
	}
}

// sessionStopped: the caller's session ended (for routed calls the call's hangup normally
// says so first; a kept leg's page going does not stop it, see reattach.go).
func (ib *inbound) sessionStopped(sid string, body map[string]any) {
	stop := signaling.StopError(body)
	ib.mu.Lock()
	current := sid == ib.sessionID
	ib.mu.Unlock()
	if !current {
		return
	}
	cause := causeOf(stop, ib.route.CallType)
	ib.log.Info("verto call's session stopped", "code", stop.Code, "reason", stop.Text, "cause", cause.Name)
	_ = ib.call.Hangup(cause)
	ib.finish(nil)
}

// --- verto.CallEvents: what the client does

// Hangup: the client's verto.bye, or its socket going away.
func (ib *inbound) Hangup(cause verto.Cause) {
	ib.log.Info("verto client hung up", "cause", cause.Name)
	ib.mu.Lock()
	started := ib.begun
	ib.ended = true
	ib.mu.Unlock()
	if started {
		ib.finish(byeError(cause))
	}
	// Not started yet: run sees ended and cleans up.
}

// DTMF: verto.info digits go to the far side of the caller's session.
func (ib *inbound) DTMF(digits string) {
	ib.mu.Lock()
	sid := ib.sessionID
	ib.mu.Unlock()
	if sid == "" {
		return
	}
	if ib.route.IsExtension() { // nobody on the far side: tell the session's subscribers
		ib.g.publishDTMF(sid, digits)
		return
	}
	if !ib.dtmf.run(ib.call.Context(), func(ctx context.Context) { ib.g.sendDTMF(ctx, sid, signaling.SideFar, digits, ib.log) }) {
		ib.log.Info("verto dtmf dropped: too many pending", "digits", digits)
	}
}

// Hold: verto.modify hold / unhold.
func (ib *inbound) Hold(held bool) {
	ib.mu.Lock()
	sid := ib.sessionID
	ib.held = held
	ib.mu.Unlock()
	if sid != "" {
		ib.g.setHold(ib.call.Context(), sid, held, ib.log)
	}
}

// --- signaling.CallObserver: what the router reports

func (ib *inbound) CallRinging(_ string, answer signaling.Desc) {
	sdp := answer.SDP()
	if sdp == "" {
		return
	}
	ib.mu.Lock()
	p2p, sid := ib.p2p, ib.sessionID
	ib.mu.Unlock()
	// Without media in between the early answer is the far side's, usable as it is. Through a
	// proxy session it is usable only once the invitee has applied it to the session (SIP 183:
	// the session is then ready and the answer is the session's answer for the client); a far
	// side's raw early answer is not, and the client just waits for verto.answer.
	if !p2p {
		if s, ok := ib.g.core.LookupSession(sid); !ok || s.State != signaling.SessionReady || answer.SDPType() != "webrtc" {
			return
		}
	}
	if err := ib.call.Early(sdp); err == nil {
		ib.log.Info("verto early media sent")
	}
}

func (ib *inbound) CallAnswered(_ string, answer signaling.Desc) {
	sdp := answer.SDP()
	if err := ib.call.Answer(sdp); err != nil {
		ib.log.Info("verto answer not sent", "err", err)
		ib.finish(byeError(verto.CauseNormalClearing))
		return
	}
	ib.log.Info("verto call answered", "callee_name", answer.String("callee_name"), "callee_id", answer.String("callee_id"))
	name, number := answer.String("callee_name"), answer.String("callee_id")
	if name != "" || number != "" {
		_ = ib.call.Display(name, number)
	}
}

func (ib *inbound) CallHangup(_ string, err *signaling.Error) {
	cause := causeOf(err, ib.route.CallType)
	ib.log.Info("verto call hung up by the router", "err", errText(err), "cause", cause.Name)
	_ = ib.call.Hangup(cause)
	ib.finish(nil)
}
