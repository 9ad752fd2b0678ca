package wsapi

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/signaling"
)

func (c *conn) handleRequest(f frame) {
	if !c.loggedIn {
		if f.class == "core" && f.subclass == "user" && f.cmd == "login" {
			c.login(f)
			return
		}
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeNotAuthenticated, "Not authenticated: log in first"))
		return
	}
	var (
		data  any
		err   error
		after func()
	)
	switch f.class {
	case signaling.ClassCore:
		data, err, after = c.coreCommand(f)
	case signaling.ClassMedia:
		data, err, after = c.mediaCommand(f)
	default:
		err = signaling.Errorf(signaling.CodeUnknownClass, "Unknown class: %s", f.class)
	}
	if _, async := err.(asyncReply); async {
		return
	}
	if err != nil {
		c.replyErr(f.tid, signaling.AsError(err))
	} else {
		c.reply(f.tid, data)
	}
	if after != nil {
		after()
	}
}

// asyncReply is returned by handlers whose reply comes from runAsync.
type asyncReply struct{}

func (asyncReply) Error() string { return "reply sent asynchronously" }

func unknownCmd(f frame) error {
	return signaling.Errorf(signaling.CodeUnknownCommand, "Unknown command: %s/%s/%s", f.class, f.subclass, f.cmd)
}

// ---- login

type loginData struct {
	User      string         `json:"user"`
	Password  *string        `json:"password"`
	Pass      *string        `json:"pass"`
	SessionID string         `json:"session_id"`
	Meta      map[string]any `json:"meta"`
}

func (c *conn) login(f frame) {
	var d loginData
	if e := decodeData(f.data, &d); e != nil {
		c.replyErr(f.tid, e)
		return
	}
	if d.User == "" {
		c.replyErr(f.tid, signaling.MissingField("user"))
		return
	}
	pw := d.Password
	if pw == nil {
		pw = d.Pass
	}
	if pw == nil && !c.srv.open {
		c.replyErr(f.tid, signaling.MissingField("password"))
		return
	}
	sid := d.SessionID
	if sid != "" {
		if _, err := uuid.Parse(sid); err != nil || len(sid) != 36 {
			c.replyErr(f.tid, signaling.Errorf(signaling.CodeInvalidSessionID, "Invalid session id: %q", sid))
			return
		}
		if c.srv.sessionTaken(sid) {
			c.replyErr(f.tid, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", sid))
			return
		}
	} else {
		sid = uuid.NewString()
	}
	c.ack(f.tid)
	ok := c.srv.open
	if !ok {
		// Password hashing is deliberately slow: a few at a time, so that
		// floods of logins cannot take every CPU.
		select {
		case c.srv.hashSem <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		ok = c.srv.cfg.Users.Check(d.User, *pw)
		<-c.srv.hashSem
	}
	if !ok {
		c.loginFails++
		host := c.remote
		if h, _, err := splitHost(c.remote); err == nil {
			host = h
		}
		delay := c.srv.loginDelay(host, c.loginFails)
		c.log.Warn("api login failed", "user", d.User, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeUnauthorized, "Unauthorized"))
		return
	}
	c.log = c.log.With("user", d.User, "login_session", sid)
	c.srv.mu.Lock()
	c.user, c.loginID = d.User, sid
	c.srv.mu.Unlock()
	if !c.srv.registerLogin(c, d.User, sid) {
		c.srv.mu.Lock()
		c.user, c.loginID = "", ""
		c.srv.mu.Unlock()
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", sid))
		return
	}
	c.mu.Lock()
	c.loggedIn = true
	c.meta = d.Meta
	c.mu.Unlock()
	c.loginTimer.Stop()
	if c.srv.open {
		c.log.Warn("api login accepted WITHOUT password check (no users configured, loopback only)")
	} else {
		c.log.Info("api login")
	}
	bus := c.srv.core.Bus()
	bus.Subscribe(c, signaling.Subscription{Class: "core", Subclass: "user_event", Type: "*", ObjID: d.User})
	bus.Subscribe(c, signaling.Subscription{Class: "core", Subclass: "session_event", Type: "*", ObjID: sid})
	c.reply(f.tid, map[string]any{"session_id": sid})
	c.startPing()
}

// ---- core commands

type userData struct {
	User string `json:"user"`
}

type sessionIDData struct {
	SessionID string `json:"session_id"`
}

func (c *conn) coreCommand(f frame) (any, error, func()) {
	switch f.subclass + "/" + f.cmd {
	case "user/login":
		return nil, signaling.Errorf(signaling.CodeAlreadyAuthenticated, "Already authenticated"), nil
	case "core/ping":
		return map[string]any{"time": time.Now().Unix()}, nil, nil
	case "user/list":
		c.srv.mu.Lock()
		users := make([]string, 0, len(c.srv.byUser))
		for u := range c.srv.byUser {
			users = append(users, u)
		}
		c.srv.mu.Unlock()
		sort.Strings(users)
		return users, nil, nil
	case "user/get":
		var d userData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if d.User == "" {
			return nil, signaling.MissingField("user"), nil
		}
		c.srv.mu.Lock()
		conns := c.srv.byUser[d.User]
		sessions := make([]map[string]any, 0, len(conns))
		for o := range conns {
			info := map[string]any{"session_id": o.loginID, "type": "api", "remote": o.remote}
			o.mu.Lock()
			if o.meta != nil {
				info["meta"] = o.meta
			}
			o.mu.Unlock()
			sessions = append(sessions, info)
		}
		c.srv.mu.Unlock()
		if len(sessions) == 0 {
			return nil, signaling.Errorf(signaling.CodeUserNotFound, "User not found: %s", d.User), nil
		}
		sort.Slice(sessions, func(i, j int) bool {
			return sessions[i]["session_id"].(string) < sessions[j]["session_id"].(string)
		})
		return map[string]any{"user": d.User, "sessions": sessions}, nil, nil
	case "session/stop":
		var d sessionIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if d.SessionID == "" {
			return nil, signaling.MissingField("session_id"), nil
		}
		c.srv.mu.Lock()
		o, ok := c.srv.bySession[d.SessionID]
		c.srv.mu.Unlock()
		if !ok || o.user != c.user {
			return nil, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", d.SessionID), nil
		}
		return nil, nil, func() { o.closeWith(websocket.CloseNormalClosure, "Session stopped") }
	case "event/subscribe", "event/unsubscribe":
		var d signaling.Subscription
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if d.Class == "" {
			return nil, signaling.MissingField("class"), nil
		}
		bus := c.srv.core.Bus()
		if f.cmd == "unsubscribe" {
			if !bus.Unsubscribe(c, d) {
				return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Not subscribed: %s/%s/%s/%s", d.Class, d.Normalize().Subclass, d.Normalize().Type, d.Normalize().ObjID), nil
			}
			return nil, nil, nil
		}
		if len(bus.Subscriptions(c)) >= maxSubscriptions {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Too many subscriptions (max %d)", maxSubscriptions), nil
		}
		bus.Subscribe(c, d)
		return nil, nil, nil
	case "event/get_subscriptions":
		subs := c.srv.core.Bus().Subscriptions(c)
		sort.Slice(subs, func(i, j int) bool {
			a, b := subs[i], subs[j]
			return a.Class+"/"+a.Subclass+"/"+a.Type+"/"+a.ObjID < b.Class+"/"+b.Subclass+"/"+b.Type+"/"+b.ObjID
		})
		return subs, nil, nil
	case "event/send":
		var d signaling.Event
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if err := checkClientEvent(d); err != nil {
			return nil, err, nil
		}
		c.srv.core.Bus().Publish(d)
		return nil, nil, nil
	case "core/event":
		return c.clientEvent(f)
	}
	return nil, unknownCmd(f), nil
}

const maxSubscriptions = 1000

func checkClientEvent(d signaling.Event) error {
	if d.Class == "" {
		return signaling.MissingField("class")
	}
	if d.Type == "" {
		return signaling.MissingField("type")
	}
	if d.Class == signaling.ClassMedia || d.Class == "*" || d.Subclass == "*" || d.Type == "*" || d.ObjID == "*" {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Clients cannot send events of class media or with '*' selectors")
	}
	return nil
}

type eventBody struct {
	Answer    signaling.Desc `json:"answer"`
	SessionID string         `json:"session_id"`
	Code      int            `json:"code"`
	Error     string         `json:"error"`
	Reason    string         `json:"reason"`
}

// reason is the text of a hangup or rejection: the seed's `error`, else the later `reason`.
func (d *callIDData) reason() string {
	if d.Error != "" {
		return d.Error
	}
	return d.Reason
}

// clientEvent handles a core/event request from the client: the seed's
// callee progress (media/call ringing/accepted/rejected/hangup), or any
// other event, which is published like event/send.
func (c *conn) clientEvent(f frame) (any, error, func()) {
	var d signaling.Event
	if e := decodeData(f.data, &d); e != nil {
		return nil, e, nil
	}
	if d.Class == signaling.ClassMedia && d.Subclass == signaling.SubclassCall {
		if d.ObjID == "" {
			return nil, signaling.MissingField("obj_id"), nil
		}
		var body eventBody
		if d.Body != nil {
			raw, _ := json.Marshal(d.Body)
			if e := decodeData(raw, &body); e != nil {
				return nil, e, nil
			}
		}
		reason := body.Error
		if reason == "" {
			reason = body.Reason
		}
		switch d.Type {
		case "ringing":
			return nil, c.calleeRinging(d.ObjID, body.Answer), nil
		case "accepted", "answer", "answered":
			return c.answer(f, d.ObjID, body.Answer, body.SessionID)
		case "rejected":
			return nil, c.calleeRejected(d.ObjID, body.Code, reason), nil
		case "hangup":
			return nil, c.hangupCall(d.ObjID, body.Code, reason), nil
		}
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Unknown call event type: %s", d.Type), nil
	}
	if err := checkClientEvent(d); err != nil {
		return nil, err, nil
	}
	c.srv.core.Bus().Publish(d)
	return nil, nil, nil
}

// ---- media commands

type startSessionData struct {
	Type         string         `json:"type"`
	Offer        signaling.Desc `json:"offer"`
	Answer       signaling.Desc `json:"answer"`
	SessionID    string         `json:"session_id"`
	WaitTimeout  *float64       `json:"wait_timeout"`
	ReadyTimeout *float64       `json:"ready_timeout"`
	Subscribe    *bool          `json:"subscribe"`
	EventsBody   map[string]any `json:"events_body"`
	Backend      string         `json:"backend"`
	Peer         string         `json:"peer"`
}

type stopData struct {
	SessionID string `json:"session_id"`
	Code      int    `json:"code"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
}

type answerData struct {
	SessionID string         `json:"session_id"`
	Answer    signaling.Desc `json:"answer"`
}

type updateData struct {
	SessionID  string `json:"session_id"`
	Type       string `json:"type"`
	UpdateType string `json:"update_type"`
}

type candidateData struct {
	SessionID     string          `json:"session_id"`
	Candidate     json.RawMessage `json:"candidate"`
	SDPMid        string          `json:"sdpMid"`
	SDPMLineIndex int             `json:"sdpMLineIndex"`
}

type callStartData struct {
	Type       string         `json:"type"`
	SessionID  string         `json:"session_id"`
	Offer      signaling.Desc `json:"offer"`
	User       string         `json:"user"`
	Session    string         `json:"session"`
	URL        string         `json:"url"`
	UserID     string         `json:"user_id"`
	Callee     string         `json:"callee"`
	RingTime   *float64       `json:"ring_time"`
	CallerName string         `json:"caller_name"`
	CallerID   string         `json:"caller_id"`
	Subscribe  *bool          `json:"subscribe"`
	EventsBody map[string]any `json:"events_body"`
}

type callIDData struct {
	CallID    string         `json:"call_id"`
	Answer    signaling.Desc `json:"answer"`
	SessionID string         `json:"session_id"`
	Code      int            `json:"code"`
	Error     string         `json:"error"`
	Reason    string         `json:"reason"`
}

func seconds(v *float64, name string) (time.Duration, *signaling.Error) {
	if v == nil {
		return 0, nil
	}
	if *v <= 0 || *v > 10*365*86400 {
		return 0, signaling.InvalidField(name)
	}
	return time.Duration(*v * float64(time.Second)), nil
}

// ownSession checks that the session exists and belongs to this
// connection's user.
func (c *conn) ownSession(id string) (signaling.SessionMeta, error) {
	if id == "" {
		return signaling.SessionMeta{}, signaling.MissingField("session_id")
	}
	m, ok := c.srv.core.LookupSession(id)
	if !ok || (m.Owner != c.id && (m.User == "" || m.User != c.user)) {
		return m, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", id)
	}
	return m, nil
}

func (c *conn) mediaCommand(f frame) (any, error, func()) {
	core := c.srv.core
	switch f.subclass + "/" + f.cmd {
	case "session/start":
		return c.startSession(f)
	case "session/stop":
		var d stopData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if _, err := c.ownSession(d.SessionID); err != nil {
			return nil, err, nil
		}
		reason := d.Reason
		if reason == "" {
			reason = d.Error
		}
		return nil, core.StopSession(d.SessionID, signaling.ReasonError(d.Code, reason, signaling.Err(signaling.CodeUserStop))), nil
	case "session/set_answer":
		var d answerData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		m, err := c.ownSession(d.SessionID)
		if err != nil {
			return nil, err, nil
		}
		if len(d.Answer) == 0 {
			return nil, signaling.MissingField("answer"), nil
		}
		run := func(ctx context.Context) (any, error) {
			ans, err := core.SetAnswer(ctx, d.SessionID, d.Answer)
			if err != nil || m.Backend == "" {
				return nil, err
			}
			return map[string]any{"answer": ans}, nil
		}
		if m.Backend == "" {
			data, err := run(c.ctx)
			return data, err, nil
		}
		c.runAsync(f.tid, run)
		return nil, asyncReply{}, nil
	case "session/update":
		var d updateData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		m, err := c.ownSession(d.SessionID)
		if err != nil {
			return nil, err, nil
		}
		kind := d.UpdateType
		if kind == "" {
			kind = d.Type
		}
		if kind == "" {
			return nil, signaling.MissingField("type"), nil
		}
		opts := rawData(f.data)
		run := func(ctx context.Context) (any, error) {
			res, err := core.UpdateSession(ctx, d.SessionID, kind, opts)
			if err != nil || len(res) == 0 {
				return nil, err
			}
			return res, nil
		}
		if m.Backend == "" {
			data, err := run(c.ctx)
			return data, err, nil
		}
		c.runAsync(f.tid, run)
		return nil, asyncReply{}, nil
	case "session/set_candidate", "session/set_candidate_end":
		var d candidateData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		m, err := c.ownSession(d.SessionID)
		if err != nil {
			return nil, err, nil
		}
		cand := signaling.Candidate{End: f.cmd == "set_candidate_end", MID: d.SDPMid, MLineIndex: d.SDPMLineIndex}
		if !cand.End {
			switch {
			case object(d.Candidate):
				if e := decodeData(d.Candidate, &cand); e != nil {
					return nil, e, nil
				}
			case len(d.Candidate) > 0 && d.Candidate[0] == '"':
				cand.Candidate, _ = str(d.Candidate)
			default:
				return nil, signaling.MissingField("candidate"), nil
			}
		}
		run := func(ctx context.Context) (any, error) { return nil, core.SetCandidate(ctx, d.SessionID, cand) }
		if m.Backend == "" {
			_, err := run(c.ctx)
			return nil, err, nil
		}
		c.runAsync(f.tid, run)
		return nil, asyncReply{}, nil
	case "session/info":
		var d sessionIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if _, err := c.ownSession(d.SessionID); err != nil {
			return nil, err, nil
		}
		info, err := core.SessionInfo(d.SessionID)
		return info, err, nil
	case "session/list":
		return core.ListSessions(), nil, nil
	case "call/start":
		return c.startCall(f)
	case "call/hangup":
		var d callIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		return nil, c.hangupCall(d.CallID, d.Code, d.reason()), nil
	case "call/ringing":
		var d callIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		return nil, c.calleeRinging(d.CallID, d.Answer), nil
	case "call/answered", "call/accepted":
		var d callIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		return c.answer(f, d.CallID, d.Answer, d.SessionID)
	case "call/rejected":
		var d callIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		return nil, c.calleeRejected(d.CallID, d.Code, d.reason()), nil
	case "call/info":
		var d callIDData
		if e := decodeData(f.data, &d); e != nil {
			return nil, e, nil
		}
		if d.CallID == "" {
			return nil, signaling.MissingField("call_id"), nil
		}
		info, err := core.CallInfo(d.CallID)
		return info, err, nil
	case "call/list":
		return core.ListCalls(), nil, nil
	}
	switch f.subclass {
	case "session", "call":
		return nil, unknownCmd(f), nil
	case "room":
		return c.roomCommand(f)
	}
	return nil, signaling.Errorf(signaling.CodeUnknownCommand, "Unknown command: media/%s/%s", f.subclass, f.cmd), nil
}

func (c *conn) startSession(f frame) (any, error, func()) {
	var d startSessionData
	if e := decodeData(f.data, &d); e != nil {
		return nil, e, nil
	}
	if d.Type == "" {
		return nil, signaling.MissingField("type"), nil
	}
	wait, e := seconds(d.WaitTimeout, "wait_timeout")
	if e != nil {
		return nil, e, nil
	}
	ready, e := seconds(d.ReadyTimeout, "ready_timeout")
	if e != nil {
		return nil, e, nil
	}
	sid := d.SessionID
	if sid == "" {
		sid = uuid.NewString()
	} else {
		if !signaling.ValidID(sid) {
			return nil, signaling.Errorf(signaling.CodeInvalidSessionID, "Invalid session id: %q", sid), nil
		}
		// Checked before subscribing to the id's events.
		if _, exists := c.srv.core.LookupSession(sid); exists {
			return nil, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", sid), nil
		}
	}
	if d.Peer != "" {
		if _, err := c.ownSession(d.Peer); err != nil {
			return nil, signaling.Errorf(signaling.CodeSessionNotFound, "Peer session not found: %s", d.Peer), nil
		}
	}
	subscribe := d.Subscribe == nil || *d.Subscribe
	key := "session:" + sid
	if subscribe {
		c.autoSubscribe(key, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: "*", ObjID: sid, Body: d.EventsBody})
	}
	req := signaling.SessionRequest{
		SessionID: sid, Type: d.Type, Offer: d.Offer, Answer: d.Answer,
		WaitTimeout: wait, ReadyTimeout: ready, Backend: d.Backend, Peer: d.Peer,
		Owner: c.id, User: c.user, MaxOwned: c.srv.cfg.MaxOwned,
	}
	run := func(ctx context.Context) (any, error) {
		if d.Type != signaling.TypeP2P || d.Backend != "" {
			req.Options = rawData(f.data)
		}
		res, err := c.srv.core.StartSession(ctx, req)
		if err != nil {
			if subscribe {
				c.dropAutoSub(key)
			}
			return nil, err
		}
		out := map[string]any{"session_id": res.SessionID}
		if res.Answer != nil {
			out["answer"] = res.Answer
		}
		if res.Offer != nil {
			out["offer"] = res.Offer
		}
		if res.RoomID != "" {
			out["room_id"] = res.RoomID
		}
		return out, nil
	}
	if d.Type == signaling.TypeP2P && d.Backend == "" {
		data, err := run(c.ctx)
		return data, err, nil
	}
	c.runAsync(f.tid, run)
	return nil, asyncReply{}, nil
}

func (c *conn) startCall(f frame) (any, error, func()) {
	var d callStartData
	if e := decodeData(f.data, &d); e != nil {
		return nil, e, nil
	}
	callee, field := d.Callee, "callee"
	switch d.Type {
	case signaling.CallTypeUser:
		field = "user"
		if d.User != "" {
			callee = d.User
		}
	case signaling.CallTypeSession:
		field = "session"
		if d.Session != "" {
			callee = d.Session
		}
	case signaling.CallTypeSIP:
		field = "url"
		if d.URL != "" {
			callee = d.URL
		}
	case signaling.CallTypeVerto:
		field = "user_id"
		if d.UserID != "" {
			callee = d.UserID
		}
	case "":
		for _, v := range []string{d.User, d.Session, d.URL, d.UserID} {
			if callee == "" {
				callee = v
			}
		}
	}
	if callee == "" {
		return nil, signaling.MissingField(field), nil
	}
	if d.SessionID != "" {
		if _, err := c.ownSession(d.SessionID); err != nil {
			return nil, err, nil
		}
	}
	if _, n := c.srv.core.Owned(c.id); n >= c.srv.cfg.MaxOwned {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Too many calls on this connection (max %d)", c.srv.cfg.MaxOwned), nil
	}
	ring, e := seconds(d.RingTime, "ring_time")
	if e != nil {
		return nil, e, nil
	}
	caller := signaling.CallerInfo{Name: d.CallerName, ID: d.CallerID, User: c.user, Owner: c.id}
	if caller.Name == "" {
		caller.Name = d.Offer.String("caller_name")
	}
	if caller.ID == "" {
		caller.ID = d.Offer.String("caller_id")
	}
	call, err := c.srv.core.NewCall(signaling.CallRequest{
		Type: d.Type, Callee: callee, SessionID: d.SessionID, Offer: d.Offer,
		Caller: caller, Data: rawData(f.data), RingTime: ring,
	})
	if err != nil {
		return nil, err, nil
	}
	if d.Subscribe == nil || *d.Subscribe {
		c.autoSubscribe("call:"+call.ID(), signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: "*", ObjID: call.ID(), Body: d.EventsBody})
	}
	return map[string]any{"call_id": call.ID()}, nil, func() { call.Start(c.srv.ctx) }
}

// hangupCall: the caller (or the answering callee) hangs up the call; a
// callee still ringing rejects it.
func (c *conn) hangupCall(callID string, code int, reason string) error {
	if callID == "" {
		return signaling.MissingField("call_id")
	}
	err := signaling.ReasonError(code, reason, signaling.Err(signaling.CodeUserStop))
	c.mu.Lock()
	inv := c.invites[callID]
	c.mu.Unlock()
	if inv != nil {
		inv.h.Hangup(err)
		return nil
	}
	owner, ok := c.srv.core.CallOwner(callID)
	if !ok || (owner != c.id && c.srv.connUser(owner) != c.user) {
		return signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", callID)
	}
	return c.srv.core.HangupCall(callID, err)
}

func (c *conn) invitation(callID string) (*invitee, error) {
	if callID == "" {
		return nil, signaling.MissingField("call_id")
	}
	c.mu.Lock()
	inv := c.invites[callID]
	wasInvited := false
	for _, id := range c.recent {
		wasInvited = wasInvited || id == callID
	}
	c.mu.Unlock()
	if inv == nil {
		if wasInvited {
			if call, ok := c.srv.core.LookupCall(callID); ok && call.State == signaling.CallAnswered {
				return nil, signaling.Errorf(signaling.CodeAlreadyAnswered, "Call already answered: %s", callID)
			}
		}
		return nil, signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", callID)
	}
	return inv, nil
}

func (c *conn) calleeRinging(callID string, answer signaling.Desc) error {
	inv, err := c.invitation(callID)
	if err != nil {
		return err
	}
	inv.h.Ringing(answer)
	return nil
}

// answer handles a callee's acceptance; when the caller's session has a
// media backend (which computes the caller's answer) it runs after an ack,
// off the reader goroutine.
func (c *conn) answer(f frame, callID string, answer signaling.Desc, sessionID string) (any, error, func()) {
	media := false
	if call, ok := c.srv.core.LookupCall(callID); ok && call.SessionID != "" {
		m, _ := c.srv.core.LookupSession(call.SessionID)
		media = m.Backend != ""
	}
	if !media {
		return nil, c.calleeAnswered(callID, answer, sessionID), nil
	}
	c.runAsync(f.tid, func(context.Context) (any, error) {
		return nil, c.calleeAnswered(callID, answer, sessionID)
	})
	return nil, asyncReply{}, nil
}

func (c *conn) calleeAnswered(callID string, answer signaling.Desc, sessionID string) error {
	inv, err := c.invitation(callID)
	if err != nil {
		return err
	}
	if sessionID != "" {
		if _, err := c.ownSession(sessionID); err != nil {
			return err
		}
	}
	key := "call:" + callID
	c.mu.Lock()
	inv.accepted = true
	c.mu.Unlock()
	c.autoSubscribe(key, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: "*", ObjID: callID})
	if err := inv.h.Accepted(answer, sessionID); err != nil {
		c.mu.Lock()
		inv.accepted = false
		c.mu.Unlock()
		c.dropAutoSub(key)
		return err
	}
	return nil
}

func (c *conn) calleeRejected(callID string, code int, reason string) error {
	inv, err := c.invitation(callID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.invites, callID)
	c.mu.Unlock()
	inv.h.Rejected(signaling.ReasonError(code, reason, signaling.Err(signaling.CodeCallRejected)))
	return nil
}

type roomData struct {
	Class   string `json:"class"`
	RoomID  string `json:"room_id"`
	Backend string `json:"backend"`
}

// roomCommand handles media/room/create|destroy|list|info.
func (c *conn) roomCommand(f frame) (any, error, func()) {
	core := c.srv.core
	var d roomData
	if e := decodeData(f.data, &d); e != nil {
		return nil, e, nil
	}
	switch f.cmd {
	case "create":
		opts := rawData(f.data)
		c.runAsync(f.tid, func(ctx context.Context) (any, error) {
			id, err := core.CreateRoom(ctx, d.Class, d.Backend, d.RoomID, opts)
			if err != nil {
				return nil, err
			}
			return map[string]any{"room_id": id}, nil
		})
		return nil, asyncReply{}, nil
	case "destroy":
		if d.RoomID == "" {
			return nil, signaling.MissingField("room_id"), nil
		}
		c.runAsync(f.tid, func(ctx context.Context) (any, error) { return nil, core.DestroyRoom(ctx, d.RoomID) })
		return nil, asyncReply{}, nil
	case "list":
		return core.ListRooms(), nil, nil
	case "info":
		info, err := core.RoomInfo(d.RoomID)
		return info, err, nil
	}
	return nil, unknownCmd(f), nil
}
