package verto

import (
	"context"
	"encoding/json"
	"errors"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

const maxLoginFailDelay = 3200 * time.Millisecond

// dispatch runs one request and returns its result or error, plus work to do after the reply
// has been queued (server requests that must follow the reply, and CallEvents callbacks).
func (c *conn) dispatch(m incoming) (map[string]any, *rpcError, func()) {
	params := object{}
	hasParams := m.params != nil
	if hasParams {
		var ok bool
		if params, ok = parseObject(m.params); !ok {
			return nil, newError(CodeInvalidParams, "Invalid params: params must be an object"), nil
		}
	}

	// The auth gate (verto.md §2.1): every login, and every request before login, is checked.
	var loginAfter func()
	if m.method == "login" || !c.authed.Load() {
		if m.method == "login" && !hasParams {
			return nil, newError(CodeAuthFailure, "Missing params"), nil
		}
		if !params.isString("login") {
			return nil, newError(CodeAuthRequired, "Authentication Required"), nil
		}
		res, err, after := c.login(params)
		if err != nil || m.method == "login" {
			return res, err, after
		}
		loginAfter = after
	}

	var (
		res   map[string]any
		err   *rpcError
		after func()
	)
	switch m.method {
	case "verto.ping":
		res = map[string]any{"message": "PONG"}
	case "verto.invite":
		res, err, after = c.invite(params)
	case "verto.answer":
		res, err, after = c.answer(params)
	case "verto.bye":
		res, err, after = c.bye(params)
	case "verto.info":
		res, err, after = c.info(params)
	case "verto.modify":
		res, err, after = c.modify(params)
	case "verto.attach":
		res, err, after = c.attach(params)
	case "verto.subscribe":
		err = &rpcError{Code: CodeCallError, Message: "Permission Denied",
			Extra: map[string]any{"unauthorizedChannels": channelList(params)}}
	case "verto.unsubscribe":
		res = map[string]any{"unsubscribedChannels": []string{}, "notSubscribedChannels": channelList(params)}
	default:
		err = newError(CodeMethodNotFound, "Invalid Method, Missing Method or Permission Denied")
	}
	switch {
	case loginAfter == nil:
		return res, err, after
	case after == nil:
		return res, err, loginAfter
	default:
		return res, err, func() { loginAfter(); after() }
	}
}

func channelList(p object) []string {
	out := []string{}
	if ch := p.str("eventChannel"); ch != "" {
		return append(out, ch)
	}
	if raw, ok := p.get("eventChannel"); ok {
		var list []string
		if json.Unmarshal(raw, &list) == nil && len(list) <= 64 {
			return append(out, list...)
		}
	}
	return out
}

// validToken accepts the ids clients make up (UUIDs, GUIDs): 1-128 printable ASCII characters.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// login checks credentials and binds the socket to its sessid (verto.md §1.4, §2).
func (c *conn) login(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	login, passwd := p.str("login"), p.str("passwd")
	if passwd == "" {
		return nil, newError(CodeAuthFailure, "Missing passwd"), nil
	}
	cr := Credentials{Login: login, User: login, Password: passwd, LoginParams: p.stringMap("loginParams", 32)}
	if i := strings.LastIndexByte(login, '@'); i >= 0 {
		cr.Domain = login[i+1:]
		if !s.cfg.KeepDomain {
			cr.User = login[:i]
		}
	}
	if cr.User == "" || len(login) > 256 {
		return nil, newError(CodeAuthFailure, "Missing or improper credentials"), nil
	}
	ip := remoteIP(c.remote)
	if s.loginBlocked(ip) {
		c.log.Warn("verto: login refused, too many failures from this address", "login", login)
		return nil, newError(CodeAuthFailure, "Too many failed logins, try later"), func() {
			c.kill(websocket.ClosePolicyViolation, "too many failed logins")
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	end, gerr := s.logins.Begin(ctx, ip, cr.User)
	if gerr != nil {
		cancel()
		c.log.Warn("verto: login refused before the password check", "login", login, "err", gerr)
		return nil, newError(CodeAuthFailure, "Authentication Failure: "+gerr.Error()), nil
	}
	user, aerr := s.auth.Authenticate(ctx, cr)
	cancel()
	locked := end(aerr == nil && user != "")
	s.loginResult(ip, aerr == nil && user != "")
	if aerr != nil || user == "" {
		c.authFails++
		delay := s.cfg.LoginFailDelay << min(c.authFails-1, 10)
		delay = max(min(delay, maxLoginFailDelay), locked) // answered when the lockout is over
		c.log.Info("verto: login failed", "login", login, "failures", c.authFails)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.done:
		case <-s.ctx.Done():
		}
		t.Stop()
		var after func()
		if c.authFails >= s.cfg.MaxLoginFailures {
			after = func() { c.kill(websocket.ClosePolicyViolation, "too many login failures") }
		}
		return nil, newError(CodeAuthFailure, "Authentication Failure"), after
	}
	c.authFails = 0

	if c.authed.Load() { // a repeated login on a bound socket
		s.mu.Lock()
		same := c.user == user
		s.mu.Unlock()
		if !same {
			return nil, newError(CodeAuthFailure, "Already logged in as another user"), nil
		}
		return map[string]any{"message": "logged in"}, nil, nil
	}

	sessid := p.str("sessid")
	if !validToken(sessid) {
		sessid = uuid.NewString()
	}
	var d deferred
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, newError(CodeAuthFailure, "Server shutting down"), nil
	}
	sess := s.sessions[sessid]
	if sess != nil && sess.user != user {
		s.mu.Unlock()
		c.log.Warn("verto: sessid held by another user", "sessid", sessid, "user", user)
		return nil, newError(CodeAuthFailure, "Session in use"), func() {
			c.kill(websocket.ClosePolicyViolation, "session in use")
		}
	}
	if sess == nil {
		n := 0
		for _, o := range s.sessions {
			if o.user == user {
				n++
			}
		}
		if n >= s.cfg.MaxSessionsPerUser {
			s.mu.Unlock()
			return nil, newError(CodeAuthFailure, "Too many sessions for this user"), nil
		}
		sess = &session{id: sessid, user: user, calls: make(map[string]*Call)}
		s.sessions[sessid] = sess
	} else {
		if sess.grace != nil {
			sess.grace.Stop()
			sess.grace = nil
		}
		sess.graceGen++
		if old := sess.conn; old != nil && old != c {
			// Takeover by the same user (verto.md §1.4, §12): punt the old socket.
			old.sendRequest("verto.punt", map[string]any{})
			old.sess = nil
			s.detachCallsLocked(sess, &d)
			old.kill(websocket.CloseNormalClosure, "punted")
		}
	}
	sess.conn = c
	if f := s.cfg.OnPresence; f != nil {
		d.add(func() { f(user, sessid, true) })
	}
	sess.vars = p.stringMap("userVariables", 64)
	c.sess, c.user = sess, user
	c.authed.Store(true)
	var reattach []*Call
	for _, call := range sess.calls {
		if call.state == stateDetached || call.state == stateReattaching {
			reattach = append(reattach, call)
		}
	}
	slices.SortFunc(reattach, func(a, b *Call) int { return strings.Compare(a.id, b.id) })
	s.mu.Unlock()
	d.run()
	c.log.Info("verto: logged in", "user", user, "sessid", sessid, "reattach", len(reattach))
	return map[string]any{"message": "logged in"}, nil, func() { c.reattach(reattach) }
}

// reattach sends verto.attach (with a fresh server offer) for every kept call of the session,
// then verto.clientReady listing them (verto.md §2.6, §10).
func (c *conn) reattach(calls []*Call) {
	s := c.srv
	ids := []string{}
	for _, call := range calls {
		s.mu.Lock()
		rec, _ := call.events.(Recoverable)
		ok := rec != nil && (call.state == stateDetached || call.state == stateReattaching) && call.sess.conn == c
		s.mu.Unlock()
		if !ok {
			continue
		}
		sdp, err := rec.ReattachOffer(call.ctx)
		var d deferred
		s.mu.Lock()
		switch {
		case call.state != stateDetached && call.state != stateReattaching, call.sess.conn != c:
		case err != nil || sdp == "":
			c.log.Warn("verto: no re-attach offer", "callID", call.id, "err", err)
			s.endCallLocked(call, CauseBearerCapNotAvail, false, true, &d)
		default:
			call.state = stateReattaching
			call.localSDP = sdp
			c.sendRequest("verto.attach", call.attachParamsLocked(sdp))
			ids = append(ids, call.id)
			if call.reattachTimer != nil {
				call.reattachTimer.Stop()
			}
			call.reattachTimer = time.AfterFunc(s.cfg.DetachGrace, func() {
				defer s.recovered("re-attach timer")
				s.reattachExpired(call)
			})
		}
		s.mu.Unlock()
		d.run()
	}
	if !c.readyOnce {
		c.readyOnce = true
		c.sendRequest("verto.clientReady", map[string]any{"reattached_sessions": ids})
	}
}

// reattachExpired ends a call whose client never answered our verto.attach.
func (s *Server) reattachExpired(call *Call) {
	var d deferred
	s.mu.Lock()
	if call.state == stateReattaching {
		s.endCallLocked(call, CauseRecoveryOnTimerExpire, true, true, &d)
	}
	s.mu.Unlock()
	d.run()
}

// callParams reads dialogParams.callID, reporting mod_verto's errors when missing.
// handleInvite calls the CallHandler; a panic in it rejects this call only.
func (s *Server) handleInvite(ctx context.Context, inv Invite, call *Call) (ev CallEvents, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("verto: panic recovered", "in", "HandleInvite", "callID", inv.CallID, "panic", v, "stack", string(debug.Stack()))
			ev, err = nil, CauseNormalTemporaryFailure
		}
	}()
	return s.handler.HandleInvite(ctx, inv, call)
}

func callParams(p object) (object, string, *rpcError) {
	dp, ok := p.obj("dialogParams")
	if !ok {
		return nil, "", callError("", "Dialog data missing")
	}
	id := dp.str("callID")
	if id == "" {
		return nil, "", callError("", "CallID missing")
	}
	if !validToken(id) {
		return nil, "", callError("", "Invalid callID")
	}
	return dp, id, nil
}

func inviteError(callID, msg string, cause Cause) *rpcError {
	e := &rpcError{Code: CodeCallError, Message: msg,
		Extra: map[string]any{"cause": cause.Name, "causeCode": cause.Code}}
	if callID != "" {
		e.Extra["callID"] = callID
	}
	return e
}

// lookupLocked finds a live call of this socket's session.
func (c *conn) lookupLocked(callID string) *Call {
	if c.sess == nil {
		return nil
	}
	call := c.sess.calls[callID]
	if call == nil || call.state == stateEnded {
		return nil
	}
	return call
}

// lockCall takes s.mu and returns this connection's live call callID with s.mu still held.
// Without such a call it releases s.mu and returns the CALL DOES NOT EXIST error.
func (c *conn) lockCall(callID string) (*Call, *rpcError) {
	c.srv.mu.Lock()
	call := c.lookupLocked(callID)
	if call == nil {
		c.srv.mu.Unlock()
		return nil, callError(callID, "CALL DOES NOT EXIST")
	}
	return call, nil
}

// sdpCallParams is callParams for a request that must also carry an SDP (answer, attach).
func sdpCallParams(p object) (dp object, callID, sdp string, perr *rpcError) {
	dp, callID, perr = callParams(p)
	if perr != nil {
		return nil, "", "", perr
	}
	sdp = p.str("sdp")
	if strings.TrimSpace(sdp) == "" {
		return nil, "", "", callError(callID, "SDP missing")
	}
	return dp, callID, sdp, nil
}

// invite handles a call placed by the client (verto.md §4).
func (c *conn) invite(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	dp, callID, perr := callParams(p)
	if perr != nil {
		return nil, inviteError("", perr.Message, CauseInvalidMsgUnspecified), nil
	}
	sdp := p.str("sdp")
	if strings.TrimSpace(sdp) == "" {
		return nil, inviteError(callID, "SDP missing", CauseInvalidMsgUnspecified), nil
	}
	if !c.inviteLimit.Allow(time.Now()) {
		c.log.Info("verto: invite rate limited", "callID", callID)
		e := inviteError(callID, "Too many calls, slow down", CauseNormalCircuitCongestion)
		e.Code = CodeRateLimited
		return nil, e, nil
	}
	dest := dp.str("destination_number")
	if dest == "" {
		dest = "service"
	}
	recover := true
	if v, ok := dp.boolean("recoverCall"); ok && !v {
		recover = false
	}
	s.mu.Lock()
	sess := c.sess
	switch {
	case s.closed || sess == nil:
		s.mu.Unlock()
		return nil, inviteError(callID, "CALL ERROR", CauseSystemShutdown), nil
	case s.calls[callID] != nil:
		s.mu.Unlock()
		return nil, inviteError(callID, "Call ID already in use", CauseInvalidMsgUnspecified), nil
	case len(sess.calls) >= s.cfg.MaxCallsPerSession:
		s.mu.Unlock()
		return nil, inviteError(callID, "Too many calls", CauseNormalCircuitCongestion), nil
	}
	cctx, cancel := context.WithCancel(s.ctx)
	call := &Call{
		srv: s, id: callID, dir: Inbound, ctx: cctx, cancel: cancel,
		sess: sess, state: stateTrying, recover: recover, localSDP: "",
		callerIDName: dp.str("caller_id_name"), callerIDNumber: dp.str("caller_id_number"),
		calleeIDName: dp.str("remote_caller_id_name"), calleeIDNumber: dp.str("remote_caller_id_number"),
	}
	if call.calleeIDNumber == "" {
		call.calleeIDNumber = dest
	}
	s.calls[callID] = call
	sess.calls[callID] = call
	inv := Invite{
		CallID: callID, User: sess.user, SessionID: sess.id, Destination: dest,
		CallerIDName: call.callerIDName, CallerIDNumber: call.callerIDNumber,
		CalleeIDName: call.calleeIDName, CalleeIDNumber: call.calleeIDNumber,
		SDP: sdp, UserVariables: dp.stringMap("userVariables", 64), LoginVariables: sess.vars, Recover: recover,
	}
	s.mu.Unlock()

	ev, err := s.handleInvite(cctx, inv, call)
	var d deferred
	s.mu.Lock()
	if err != nil {
		cause := CauseNormalTemporaryFailure
		var ce Cause
		if errors.As(err, &ce) {
			cause = ce
		}
		s.endCallLocked(call, cause, false, false, &d)
		s.mu.Unlock()
		c.log.Info("verto: invite rejected", "callID", callID, "dest", dest, "err", err)
		return nil, inviteError(callID, "CALL ERROR", cause), nil
	}
	if ev == nil {
		ev = nopEvents{}
	}
	call.events = ev
	s.mu.Unlock()
	c.log.Debug("verto: call created", "callID", callID, "dest", dest)
	return map[string]any{"message": "CALL CREATED", "callID": callID}, nil, func() {
		s.mu.Lock()
		call.flushLocked()
		s.mu.Unlock()
	}
}

type nopEvents struct{}

func (nopEvents) DTMF(string)  {}
func (nopEvents) Hold(bool)    {}
func (nopEvents) Hangup(Cause) {}

// answer handles the client accepting a server-placed call (verto.md §5.3).
func (c *conn) answer(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	dp, callID, sdp, perr := sdpCallParams(p)
	if perr != nil {
		return nil, perr, nil
	}
	var d deferred
	call, cerr := c.lockCall(callID)
	if cerr != nil {
		return nil, cerr, nil
	}
	o := call.fork
	if call.dir != Outbound || call.state != stateRinging || o == nil || o.winner != nil || o.done {
		s.mu.Unlock()
		return nil, callError(callID, "CALL ERROR"), nil
	}
	o.winner = call
	delete(o.legs, callID)
	call.state = stateActive
	call.events = o.events
	if n := dp.str("callee_id_name"); n != "" {
		call.calleeIDName = n
	}
	if n := dp.str("callee_id_number"); n != "" {
		call.calleeIDNumber = n
	}
	for _, l := range o.legs {
		s.endCallLocked(l, CauseLoseRace, true, false, &d)
	}
	if o.stop != nil {
		o.stop()
	}
	s.mu.Unlock()
	d.run()
	if err := o.events.Answered(call, sdp); err != nil {
		s.mu.Lock()
		s.endCallLocked(call, CauseIncompatibleDestination, false, false, &d)
		s.mu.Unlock()
		d.run()
		c.log.Info("verto: answer refused", "callID", callID, "err", err)
		return nil, callError(callID, "MEDIA ERROR"), nil
	}
	return map[string]any{}, nil, nil
}

// bye handles the client hanging up or rejecting (verto.md §6).
func (c *conn) bye(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	_, callID, perr := callParams(p)
	if perr != nil {
		return nil, perr, nil
	}
	cause := causeFromParams(p)
	var d deferred
	call, cerr := c.lockCall(callID)
	if cerr != nil {
		return nil, cerr, nil
	}
	s.endCallLocked(call, cause, false, true, &d)
	s.mu.Unlock()
	return map[string]any{"callID": callID, "message": "CALL ENDED", "causeCode": cause.Code, "cause": cause.Name},
		nil, d.run
}

// info handles DTMF (verto.md §7).
func (c *conn) info(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	if len(p) == 0 {
		return nil, callError("", "Params data missing"), nil
	}
	if p.has("dtmf") {
		var callID string
		if dp, ok := p.obj("dialogParams"); ok {
			callID = dp.str("callID")
		}
		s.mu.Lock()
		call := c.lookupLocked(callID)
		var ev CallEvents
		if call != nil {
			ev = call.events
		}
		s.mu.Unlock()
		if call == nil {
			return map[string]any{}, nil, nil // mod_verto answers an unknown call's DTMF with {}
		}
		digits, ok := cleanDTMF(p.str("dtmf"))
		if !ok {
			return nil, callError(callID, "Invalid DTMF"), nil
		}
		return map[string]any{"message": "SENT"}, nil, func() {
			if ev != nil {
				ev.DTMF(digits)
			}
		}
	}
	if p.has("msg") {
		return nil, callError("", "Chat messages are not supported"), nil
	}
	return map[string]any{}, nil, nil
}

// modify handles hold / unhold / toggleHold (verto.md §8).
func (c *conn) modify(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	_, callID, perr := callParams(p)
	if perr != nil {
		return nil, perr, nil
	}
	action := p.str("action")
	if action == "" {
		return nil, callError(callID, "action missing"), nil
	}
	call, cerr := c.lockCall(callID)
	if cerr != nil {
		return nil, cerr, nil
	}
	held := call.held
	switch action {
	case "hold":
		held = true
	case "unhold":
		held = false
	case "toggleHold":
		held = !held
	case "videoRefresh":
	default:
		s.mu.Unlock()
		return nil, callError(callID, "Unsupported action: "+truncate(action, 32)), nil
	}
	if held != call.held && call.state != stateActive {
		s.mu.Unlock()
		return nil, callError(callID, "CALL NOT ANSWERED"), nil
	}
	changed := held != call.held
	call.held = held
	ev := call.events
	s.mu.Unlock()
	state := "active"
	if held {
		state = "held"
	}
	var after func()
	if changed && ev != nil {
		after = func() { ev.Hold(held) }
	}
	return map[string]any{"callID": callID, "action": action, "holdState": state}, nil, after
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// attach handles the client's answer to our verto.attach after a reconnect (verto.md §10).
func (c *conn) attach(p object) (map[string]any, *rpcError, func()) {
	s := c.srv
	_, callID, sdp, perr := sdpCallParams(p)
	if perr != nil {
		return nil, perr, nil
	}
	call, cerr := c.lockCall(callID)
	if cerr != nil {
		return nil, cerr, nil
	}
	rec, _ := call.events.(Recoverable)
	if call.state != stateReattaching || rec == nil {
		s.mu.Unlock()
		return nil, callError(callID, "CALL ERROR"), nil
	}
	s.mu.Unlock()
	err := rec.Reattached(call.ctx, sdp)
	var d deferred
	s.mu.Lock()
	if call.state != stateReattaching {
		s.mu.Unlock()
		return nil, callError(callID, "CALL DOES NOT EXIST"), nil
	}
	if err != nil {
		s.endCallLocked(call, CauseBearerCapNotAvail, true, true, &d)
		s.mu.Unlock()
		c.log.Info("verto: re-attach failed", "callID", callID, "err", err)
		return nil, callError(callID, "MEDIA ERROR"), d.run
	}
	call.state = stateActive
	if call.reattachTimer != nil {
		call.reattachTimer.Stop()
		call.reattachTimer = nil
	}
	s.mu.Unlock()
	return map[string]any{}, nil, func() {
		s.mu.Lock()
		if call.state == stateActive {
			call.sendLocked("verto.display", call.displayParamsLocked())
		}
		s.mu.Unlock()
	}
}
