package signaling

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"
)

// CallerInfo says who is calling.
type CallerInfo struct {
	Name  string // caller_name
	ID    string // caller_id
	User  string // the authenticated user that started the call, if any
	Owner string // the front end's connection key of the caller (resolvers skip it)
}

// Destination is what a Resolver turns into invitees.
type Destination struct {
	Type   string // "user", "session", "sip", "verto", ... or "" (every resolver is asked)
	Callee string // the user, session id, URL, ... to reach
	Data   map[string]any
	Caller CallerInfo
}

// Resolver finds who to ring for a destination. Several resolvers may be
// registered for one call type; the invitees of all of them ring in parallel.
type Resolver interface {
	Resolve(ctx context.Context, dest Destination) ([]Invitee, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, dest Destination) ([]Invitee, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, dest Destination) ([]Invitee, error) {
	return f(ctx, dest)
}

// Invitation is what an invitee is asked to accept. Its maps are shared by
// all invitees of the call: read them, do not modify them.
type Invitation struct {
	CallID string
	Type   string
	Callee string
	Offer  Desc
	Caller CallerInfo
	Data   map[string]any
	// MediaSession, when not "", is the id (for SessionMedia and MediaAs) of
	// the media whose SideFar is this invitee's leg, when that is not the
	// call's session: an offer adapted for the invitee (MediaAdapter). Its
	// in-dialog requests (re-INVITEs, INFO digits) go there.
	MediaSession string
}

// Invitee is one party a call rings (an API connection, a SIP contact, a
// Verto login).
type Invitee interface {
	// Invite starts ringing. It must return promptly and report progress
	// later through h (from any goroutine); an error is an immediate
	// rejection.
	Invite(ctx context.Context, inv Invitation, h InviteHandle) error
	// Hangup ends this invitee's part of the call, at any time: answered
	// elsewhere (2025), caller hangup, ring timeout (2023), or the end of an
	// answered call. It is called at most once, only after Invite, and must
	// not block.
	Hangup(err *Error)
}

// InviteHandle is how an invitee reports its progress. Methods may be
// called from any goroutine; calls after the invitee is out of the call are
// ignored (or answer an error).
type InviteHandle interface {
	// Ringing: the invitee is alerting, optionally with an early answer.
	Ringing(answer Desc)
	// Accepted: the invitee answers. The first acceptance wins; later ones get
	// 2024 already_answered. calleeSession, if not "", is a session of the
	// invitee linked to the call (it stops when the call ends).
	Accepted(answer Desc, calleeSession string) error
	// Rejected: the invitee declines (before acceptance). After acceptance it
	// ends the call like Hangup.
	Rejected(err *Error)
	// Hangup: the invitee ends the call (an answered call hangs up; before
	// acceptance it is a rejection).
	Hangup(err *Error)
}

// CallObserver is told about a call by the core, for originators that are not
// on the event bus (SIP and Verto inbound calls). Methods must not block.
type CallObserver interface {
	CallRinging(callID string, answer Desc)
	// CallAnswered carries the answer for the originator (the linked session's
	// answer after set_answer, i.e. the backend's answer for proxy sessions).
	CallAnswered(callID string, answer Desc)
	CallHangup(callID string, err *Error)
}

// CallRequest starts a call.
type CallRequest struct {
	CallID    string // optional; generated when empty
	Type      string
	Callee    string
	SessionID string // the caller's session, linked to the call (optional)
	// Offer goes to the invitees. When the linked session's backend made an
	// offer for the far side (proxy), its SDP replaces Offer's.
	Offer    Desc
	Caller   CallerInfo
	Data     map[string]any
	RingTime time.Duration // 0: default; capped by the maximum
	Observer CallObserver  // optional
	// MaxOwned, if > 0, bounds the sessions of Caller.Owner including the
	// auxiliary sessions that adapt this call's offer for its invitees:
	// beyond it an invitee gets the offer as is.
	MaxOwned int
}

const (
	callNew = iota
	callRinging
	callAnswered
	callEnded
)

type call struct {
	id       string
	req      CallRequest
	state    int
	invs     []*invitation
	winner   *invitation
	rang     bool
	sessions []string // linked sessions (caller's, callee's)
	timer    *time.Timer
	log      *slog.Logger
	early    earlyState // early.go
	// for records (record.go)
	created, rangAt, answeredAt time.Time
	hangupBy                    string
}

type invitation struct {
	c        *Core
	call     *call
	inv      Invitee
	inviting bool   // Invite is running
	invited  bool   // Invite returned
	done     bool   // out of the call
	endErr   *Error // ended while Invite was running: Hangup after it returns
	// set when the invitee was rung with an adapted offer (adapt.go)
	finish  func(ctx context.Context, answer Desc) (Desc, error)
	release func()
	// earlyFinished is finish's result for the invitee's early answer (early.go)
	earlyFinished Desc
}

// endLocked takes an invitation out of the call and returns the invitee to
// hang up now, if any.
func (iv *invitation) endLocked(err *Error) Invitee {
	if iv.done {
		return nil
	}
	iv.done = true
	if iv.invited {
		return iv.inv
	}
	if iv.inviting {
		iv.endErr = err
	}
	return nil
}

// Call is a prepared call; Start makes it ring.
type Call struct {
	c  *Core
	cl *call
}

// ID returns the call id.
func (cl *Call) ID() string { return cl.cl.id }

// AddResolver registers r for call type typ ("user", "session", "sip", ...).
func (c *Core) AddResolver(typ string, r Resolver) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resolvers = append(c.resolvers, resolverEntry{typ: typ, r: r})
}

// StartCall prepares and starts a call and returns its id.
func (c *Core) StartCall(ctx context.Context, req CallRequest) (string, error) {
	cl, err := c.NewCall(req)
	if err != nil {
		return "", err
	}
	cl.Start(ctx)
	return cl.ID(), nil
}

// NewCall registers a call (linking it to req.SessionID) without ringing
// anybody yet, so that the caller can subscribe to its events and reply
// before Start; a call never started is ended by HangupCall or StopOwned.
func (c *Core) NewCall(req CallRequest) (*Call, error) {
	if req.CallID == "" {
		req.CallID = uuid.NewString()
	} else if !ValidID(req.CallID) {
		return nil, InvalidField("call_id")
	}
	if req.RingTime <= 0 {
		req.RingTime = c.opts.RingTime
	}
	if req.RingTime > c.opts.MaxRingTime {
		req.RingTime = c.opts.MaxRingTime
	}
	lg := c.log.With("call_id", req.CallID, "call_type", req.Type)
	if req.SessionID != "" {
		lg = lg.With("session_id", req.SessionID) // one call followed across the logs
	}
	cl := &call{id: req.CallID, req: req, log: lg, created: time.Now()}
	if err := c.addCall(cl); err != nil {
		return nil, err
	}
	if c.obs != nil {
		c.obs.CallStarted(req.Type)
	}
	c.monitorCall(cl)
	return &Call{c: c, cl: cl}, nil
}

// addCall registers a new call, linking it to its caller's session.
func (c *Core) addCall(cl *call) error {
	req := cl.req
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.refuseLocked(); e != nil {
		return e
	}
	if _, dup := c.calls[cl.id]; dup {
		return Errorf(CodeInvalidParameters, "Duplicated call id: %s", cl.id)
	}
	if req.SessionID != "" {
		s, ok := c.sessions[req.SessionID]
		if !ok || s.stopped {
			return Errorf(CodeSessionNotFound, "Session not found: %s", req.SessionID)
		}
		if s.callID != "" {
			return Errorf(CodeInvalidOperation, "Session %s already has a call", req.SessionID)
		}
		s.callID, s.recCall = cl.id, cl.id
		cl.sessions = append(cl.sessions, s.id)
		if len(s.outOffer) > 0 {
			cl.req.Offer = farOffer(req.Offer, s.outOffer)
		}
	}
	c.calls[cl.id] = cl
	if req.Caller.Owner != "" {
		addTo(c.callOwner, req.Caller.Owner, cl.id)
	}
	return nil
}

// farOffer is the offer a call from a session with a backend-made offer
// (proxy, listen) carries: the backend's SDP, with the client's other fields
// (caller_name, caller_id, ...).
func farOffer(client, backend Desc) Desc {
	out := backend.Clone()
	for k, v := range client {
		if k != "sdp" && k != "sdp_type" {
			out[k] = v
		}
	}
	return out
}

// Start resolves the destination and rings every invitee in parallel. With
// no invitee the call hangs up with 2022 no_destination (or the resolvers'
// error).
func (cl *Call) Start(ctx context.Context) {
	c, call := cl.c, cl.cl
	req := call.req
	dest := Destination{Type: req.Type, Callee: req.Callee, Data: req.Data, Caller: req.Caller}
	c.mu.Lock()
	if call.state != callNew {
		c.mu.Unlock()
		return
	}
	call.state = callRinging
	var rs []Resolver
	for _, e := range c.resolvers {
		if req.Type == "" || e.typ == req.Type {
			rs = append(rs, e.r)
		}
	}
	c.mu.Unlock()

	var invitees []Invitee
	var firstErr error
	for _, r := range rs {
		got, err := r.Resolve(ctx, dest)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		invitees = append(invitees, got...)
	}
	if len(invitees) == 0 {
		e := Errorf(CodeNoDestination, "No destination: %s %s", req.Type, req.Callee)
		if firstErr != nil {
			e = AsError(firstErr)
		}
		call.log.Info("call has no destination", "err", e.Text)
		_ = c.hangupCall(call.id, e, HangupBySystem)
		return
	}
	c.mu.Lock()
	if call.state != callRinging {
		c.mu.Unlock()
		return
	}
	for _, inv := range invitees {
		call.invs = append(call.invs, &invitation{c: c, call: call, inv: inv})
	}
	id := call.id
	call.timer = time.AfterFunc(req.RingTime, func() {
		c.mu.Lock()
		ringing := call.state == callRinging
		c.mu.Unlock()
		if ringing {
			_ = c.hangupCall(id, Errorf(CodeNoAnswer, "No answer"), HangupBySystem)
		}
	})
	invs := append([]*invitation(nil), call.invs...)
	c.mu.Unlock()
	call.log.Info("call ringing", "invitees", len(invs))

	inv := Invitation{CallID: id, Type: req.Type, Callee: req.Callee, Offer: req.Offer, Caller: req.Caller, Data: req.Data}
	for _, iv := range invs {
		c.mu.Lock()
		if call.state != callRinging || iv.done {
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		ivInv := c.adaptedFor(ctx, iv, inv)
		c.mu.Lock()
		if call.state != callRinging || iv.done {
			rel := iv.takeReleaseLocked()
			c.mu.Unlock()
			runAll([]func(){rel})
			continue
		}
		iv.inviting = true
		c.mu.Unlock()
		if err := iv.inv.Invite(ctx, ivInv, iv); err != nil {
			c.mu.Lock()
			iv.inviting = false
			c.mu.Unlock()
			iv.Rejected(AsError(err))
			continue
		}
		c.mu.Lock()
		iv.inviting, iv.invited = false, true
		late := iv.endErr
		c.mu.Unlock()
		if late != nil {
			iv.inv.Hangup(late)
		}
	}
}

// HangupCall ends a call with err (nil: 1013 user_stop): every invitee still
// in it gets Hangup, media/call/hangup {code, reason} is published, the
// observer is told and linked sessions stop.
func (c *Core) HangupCall(id string, err *Error) error {
	return c.hangupCall(id, err, HangupByCaller)
}

// hangupCall is HangupCall by one party (for records): a HangupBy* constant.
func (c *Core) hangupCall(id string, err *Error, by string) error {
	return c.hangupCallFrom(id, err, by, "")
}

// hangupCallFrom is hangupCall; when sessionID is not "" the call ends because that linked
// session stopped, and the party is the session's (the caller's or the callee's).
func (c *Core) hangupCallFrom(id string, err *Error, by, sessionID string) error {
	if err == nil {
		err = Err(CodeUserStop)
	}
	c.mu.Lock()
	call, ok := c.calls[id]
	if !ok || call.state == callEnded {
		c.mu.Unlock()
		return Errorf(CodeCallNotFound, "Call not found: %s", id)
	}
	switch {
	case sessionID == "":
	case sessionID == call.req.SessionID:
		by = HangupByCaller
	default:
		by = HangupByCallee
	}
	if call.hangupBy == "" {
		call.hangupBy = by
	}
	answered := call.state == callAnswered
	call.state = callEnded
	delete(c.calls, id)
	if call.req.Caller.Owner != "" {
		delFrom(c.callOwner, call.req.Caller.Owner, id)
	}
	if call.timer != nil {
		call.timer.Stop()
	}
	var hang []Invitee
	var rels []func()
	for _, iv := range call.invs {
		rels = append(rels, iv.takeReleaseLocked())
		if iv == call.winner && !iv.done {
			iv.done = true
			hang = append(hang, iv.inv)
			continue
		}
		if inv := iv.endLocked(err); inv != nil {
			hang = append(hang, inv)
		}
	}
	sessions := call.sessions
	for _, sid := range sessions {
		if s, ok := c.sessions[sid]; ok && s.callID == id {
			s.callID = ""
		}
	}
	var rec CallRecord
	if c.rec != nil {
		rec = call.recordLocked()
	}
	c.mu.Unlock()

	call.log.Info("call hangup", "code", err.Code, "reason", err.Text)
	if c.obs != nil {
		c.obs.CallEnded(call.req.Type, callOutcome(answered, err.Code), err.Code)
	}
	if c.rec != nil {
		rec.End, rec.Code, rec.Reason, rec.Outcome = time.Now(), err.Code, err.Text, callOutcome(answered, err.Code)
		c.rec.CallEvent(CallEnded, rec)
	}
	for _, inv := range hang {
		inv.Hangup(err)
	}
	runAll(rels)
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassCall, Type: EventHangup, ObjID: id, User: call.req.Caller.User,
		Body: map[string]any{"code": err.Code, "reason": err.Text, "error": err.Text}})
	if call.req.Observer != nil {
		call.req.Observer.CallHangup(id, err)
	}
	for _, sid := range sessions {
		_ = c.StopSession(sid, err)
	}
	return nil
}

// CallMeta is what front ends need to know about a call.
type CallMeta struct {
	ID, Type, Callee string
	State            string // CallNew, CallRinging, CallAnswered
	SessionID        string // the caller's session, if any
	User             string // the caller's user, if known
}

// LookupCall returns a call's metadata.
func (c *Core) LookupCall(id string) (CallMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	call, ok := c.calls[id]
	if !ok {
		return CallMeta{}, false
	}
	return CallMeta{ID: id, Type: call.req.Type, Callee: call.req.Callee, State: callStateName(call.state),
		SessionID: call.req.SessionID, User: call.req.Caller.User}, true
}

// CallInfo describes a call (media/call/info).
func (c *Core) CallInfo(id string) (map[string]any, error) {
	m, ok := c.LookupCall(id)
	if !ok {
		return nil, Errorf(CodeCallNotFound, "Call not found: %s", id)
	}
	info := map[string]any{"call_id": id, "type": m.Type, "callee": m.Callee, "state": m.State}
	if m.SessionID != "" {
		info["session_id"] = m.SessionID
	}
	if m.User != "" {
		info["user"] = m.User
	}
	return info, nil
}

// ListCalls returns the ids of all calls, sorted.
func (c *Core) ListCalls() []string {
	c.mu.Lock()
	ids := make([]string, 0, len(c.calls))
	for id := range c.calls {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// CallOwner returns the caller's owner key of a call.
func (c *Core) CallOwner(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	call, ok := c.calls[id]
	if !ok {
		return "", false
	}
	return call.req.Caller.Owner, true
}

func (iv *invitation) Ringing(answer Desc) {
	c, call := iv.c, iv.call
	if len(answer) > 0 {
		answer = c.applyEarly(iv, answer) // early media for the caller, or nothing (early.go)
	}
	c.mu.Lock()
	if call.state != callRinging || iv.done {
		c.mu.Unlock()
		return
	}
	first := !call.rang
	call.rang = true
	var rec CallRecord
	if first {
		call.rangAt = time.Now()
		if c.rec != nil {
			rec = call.recordLocked()
		}
	}
	c.mu.Unlock()
	if first && c.rec != nil {
		c.rec.CallEvent(CallRinging, rec)
	}
	if !first && len(answer) == 0 {
		return
	}
	body := map[string]any{}
	if len(answer) > 0 {
		body["answer"] = answer
	}
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassCall, Type: EventRinging, ObjID: call.id, User: call.req.Caller.User, Body: body})
	if call.req.Observer != nil {
		call.req.Observer.CallRinging(call.id, answer)
	}
}

func (iv *invitation) Accepted(answer Desc, calleeSession string) error {
	c, call := iv.c, iv.call
	c.mu.Lock()
	switch {
	case call.state == callAnswered:
		c.mu.Unlock()
		return Errorf(CodeAlreadyAnswered, "Call already answered: %s", call.id)
	case call.state != callRinging || iv.done:
		c.mu.Unlock()
		return Errorf(CodeCallNotFound, "Call not found: %s", call.id)
	}
	if calleeSession != "" {
		s, ok := c.sessions[calleeSession]
		if !ok || s.stopped {
			c.mu.Unlock()
			return Errorf(CodeSessionNotFound, "Session not found: %s", calleeSession)
		}
		if s.callID != "" {
			c.mu.Unlock()
			return Errorf(CodeInvalidOperation, "Session %s already has a call", calleeSession)
		}
		s.callID, s.recCall = call.id, call.id
		call.sessions = append(call.sessions, calleeSession)
	}
	call.state = callAnswered
	call.winner = iv
	if call.timer != nil {
		call.timer.Stop()
	}
	var others []Invitee
	var rels []func()
	elsewhere := Errorf(CodeOriginatorCancel, "Answered elsewhere")
	for _, o := range call.invs {
		if o != iv {
			if inv := o.endLocked(elsewhere); inv != nil {
				others = append(others, inv)
			}
			rels = append(rels, o.takeReleaseLocked())
		}
	}
	callerSession := call.req.SessionID
	finish := iv.finish
	call.answeredAt = time.Now()
	var rec CallRecord
	if c.rec != nil {
		rec = call.recordLocked()
	}
	c.mu.Unlock()

	call.log.Info("call answered")
	if c.obs != nil {
		c.obs.CallAnswered(call.req.Type)
	}
	if c.rec != nil {
		c.rec.CallEvent(CallAnswered, rec)
	}
	for _, o := range others {
		o.Hangup(elsewhere)
	}
	runAll(rels)
	finished, earlyAns, otherEarly := c.earlyFor(iv, answer)
	switch {
	case finished != nil: // the adapter took this invitee's early answer already
		answer = earlyWith(finished, answer)
	case finish != nil && len(answer) > 0:
		got, err := finish(context.Background(), answer)
		if err != nil {
			e := AsError(err)
			call.log.Info("adapted answer refused", "code", e.Code, "reason", e.Text)
			_ = c.hangupCall(call.id, e, HangupBySystem)
			return e
		}
		answer = got
	}
	result := answer
	switch {
	case earlyAns != nil:
		result = earlyWith(earlyAns, answer) // the caller has this invitee's answer since its early media
	case callerSession != "" && otherEarly:
		e := Errorf(CodeAnswerAlreadySet, "Call answered by another invitee than the one whose early media the caller has")
		call.log.Info("call answered after another invitee's early media")
		_ = c.hangupCall(call.id, e, HangupBySystem)
		return e
	case callerSession != "" && len(answer) > 0:
		got, err := c.SetAnswer(context.Background(), callerSession, answer)
		if err != nil {
			e := AsError(err)
			_ = c.hangupCall(call.id, e, HangupBySystem)
			return e
		}
		result = got
	}
	body := map[string]any{}
	if len(result) > 0 {
		body["answer"] = result
	}
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassCall, Type: EventAccepted, ObjID: call.id, User: call.req.Caller.User, Body: body})
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassCall, Type: EventAnswer, ObjID: call.id, User: call.req.Caller.User, Body: body})
	if call.req.Observer != nil {
		call.req.Observer.CallAnswered(call.id, result)
	}
	return nil
}

func (iv *invitation) Rejected(err *Error) {
	if err == nil {
		err = Errorf(CodeCallRejected, "Call rejected")
	}
	c, call := iv.c, iv.call
	c.mu.Lock()
	if call.state == callAnswered && call.winner == iv {
		c.mu.Unlock()
		_ = c.hangupCall(call.id, err, HangupByCallee)
		return
	}
	if call.state != callRinging || iv.done {
		c.mu.Unlock()
		return
	}
	iv.done = true
	rel := iv.takeReleaseLocked()
	all := true
	for _, o := range call.invs {
		if !o.done {
			all = false
		}
	}
	c.mu.Unlock()
	runAll([]func(){rel})
	call.log.Info("invitee rejected", "code", err.Code, "reason", err.Text)
	if all {
		rej := &Error{Code: CodeCallRejected, Text: err.Text}
		if err.Code == CodeNodeLost {
			rej.Code = CodeNodeLost // the last invitee's node died: say so
		}
		c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassCall, Type: EventRejected, ObjID: call.id, User: call.req.Caller.User,
			Body: map[string]any{"code": rej.Code, "error": rej.Text}})
		_ = c.hangupCall(call.id, rej, HangupByCallee)
	}
}

func (iv *invitation) Hangup(err *Error) {
	if err == nil {
		err = Err(CodeUserStop)
	}
	c, call := iv.c, iv.call
	c.mu.Lock()
	winner := call.state == callAnswered && call.winner == iv
	c.mu.Unlock()
	if winner {
		_ = c.hangupCall(call.id, err, HangupByCallee)
		return
	}
	iv.Rejected(err)
}
