package wsapi

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/signaling"
)

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
	if !c.srv.open && !c.checkPassword(f, d.User, *pw) {
		return
	}
	c.log = c.log.With("user", d.User, "login_session", sid)
	c.srv.mu.Lock()
	c.user, c.loginID = d.User, sid
	c.srv.mu.Unlock()
	c.mu.Lock()
	c.meta = d.Meta // before registerLogin: the contact it publishes carries it
	c.mu.Unlock()
	if !c.srv.registerLogin(c, d.User, sid) {
		c.srv.mu.Lock()
		c.user, c.loginID = "", ""
		c.srv.mu.Unlock()
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", sid))
		return
	}
	c.mu.Lock()
	c.loggedIn = true
	c.admin = c.srv.cfg.Users.Admin(d.User) || slices.Contains(c.srv.cfg.Admins, d.User)
	c.mu.Unlock()
	c.loginTimer.Stop()
	if c.srv.open {
		c.log.Warn("api login accepted WITHOUT password check (no users configured, loopback only)")
	} else {
		c.log.Info("api login")
	}
	bus := c.srv.core.Bus()
	bus.Subscribe(c, signaling.Subscription{Class: signaling.ClassCore, Subclass: "user_event", Type: "*", ObjID: d.User})
	bus.Subscribe(c, signaling.Subscription{Class: signaling.ClassCore, Subclass: "session_event", Type: "*", ObjID: sid})
	c.reply(f.tid, map[string]any{"session_id": sid})
	c.startPing()
}

// checkPassword checks a login's password behind the login guard (lockout
// and concurrency checked before any hashing); on failure it answers the
// request (after the back-off) and returns false.
func (c *conn) checkPassword(f frame, user, password string) bool {
	end, err := c.srv.logins.Begin(c.ctx, c.source, user)
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("api login refused before the password check", "user", user, "err", err)
			c.replyErr(f.tid, signaling.Errorf(signaling.CodeUnauthorized, "Unauthorized: %v", err))
		}
		return false
	}
	ok := c.srv.cfg.Users.Check(user, password)
	delay := end(ok)
	if ok {
		return true
	}
	c.log.Warn("api login failed", "user", user, "delay", delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeUnauthorized, "Unauthorized"))
	case <-c.ctx.Done():
	}
	return false
}

// ---- core commands

type userData struct {
	User string `json:"user"`
}

type sessionIDData struct {
	SessionID string `json:"session_id"`
}

func alreadyLoggedIn(*conn, context.Context, *request) (any, error) {
	return nil, signaling.Errorf(signaling.CodeAlreadyAuthenticated, "Already authenticated")
}

func ping(*conn, context.Context, *request) (any, error) {
	return map[string]any{"time": time.Now().Unix()}, nil
}

// listUsers lists the users with a connection: all of them for an admin,
// the user itself for the others.
func (c *conn) listUsers(ctx context.Context, _ *request) (any, error) {
	c.srv.mu.Lock()
	users := make([]string, 0, len(c.srv.byUser))
	for u := range c.srv.byUser {
		if c.admin || u == c.user {
			users = append(users, u)
		}
	}
	c.srv.mu.Unlock()
	if dir := c.srv.core.Directory(); dir != nil {
		remote, err := dir.Users(ctx)
		if err != nil {
			c.log.Warn("user list: other nodes not reached", "err", err)
		}
		for _, u := range remote {
			if (c.admin || u == c.user) && !slices.Contains(users, u) {
				users = append(users, u)
			}
		}
	}
	sort.Strings(users)
	return users, nil
}

// getUser describes a user's connections (remote address included): the
// user's own, or any user's for an admin.
func (c *conn) getUser(ctx context.Context, r *request) (any, error) {
	var d userData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if d.User == "" {
		return nil, signaling.MissingField("user")
	}
	c.srv.mu.Lock()
	var conns map[*conn]struct{}
	if c.admin || d.User == c.user {
		conns = c.srv.byUser[d.User]
	}
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
	if dir := c.srv.core.Directory(); dir != nil && (c.admin || d.User == c.user) {
		remote, err := dir.Contacts(ctx, d.User)
		if err != nil {
			c.log.Warn("user get: other nodes not reached", "err", err)
		}
		for _, rc := range remote {
			if rc.Kind != signaling.ContactAPI {
				continue
			}
			info := map[string]any{"session_id": rc.ID, "type": "api", "node": rc.Node}
			for k, v := range rc.Info {
				if k == "remote" || k == "meta" {
					info[k] = v
				}
			}
			sessions = append(sessions, info)
		}
	}
	if len(sessions) == 0 {
		return nil, signaling.Errorf(signaling.CodeUserNotFound, "User not found: %s", d.User)
	}
	sort.Slice(sessions, func(i, j int) bool {
		return sessions[i]["session_id"].(string) < sessions[j]["session_id"].(string)
	})
	return map[string]any{"user": d.User, "sessions": sessions}, nil
}

// stopLoginSession closes an API connection (after the reply).
func (c *conn) stopLoginSession(_ context.Context, r *request) (any, error) {
	var d sessionIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	c.srv.mu.Lock()
	o, ok := c.srv.bySession[d.SessionID]
	c.srv.mu.Unlock()
	if !ok {
		return nil, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", d.SessionID)
	}
	r.after = func() { o.closeWith(websocket.CloseNormalClosure, "Session stopped") }
	return nil, nil
}

func (c *conn) subscribe(_ context.Context, r *request) (any, error) {
	d, err := subscriptionOf(r)
	if err != nil {
		return nil, err
	}
	if err := c.budgetSubscription(d); err != nil {
		return nil, err
	}
	c.srv.core.Bus().Subscribe(c, d)
	return nil, nil
}

func (c *conn) unsubscribe(_ context.Context, r *request) (any, error) {
	d, err := subscriptionOf(r)
	if err != nil {
		return nil, err
	}
	if !c.srv.core.Bus().Unsubscribe(c, d) {
		n := d.Normalize()
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Not subscribed: %s/%s/%s/%s", d.Class, n.Subclass, n.Type, n.ObjID)
	}
	return nil, nil
}

func subscriptionOf(r *request) (signaling.Subscription, error) {
	var d signaling.Subscription
	if e := decodeData(r.data, &d); e != nil {
		return d, e
	}
	if d.Class == "" {
		return d, signaling.MissingField("class")
	}
	return d, nil
}

func (c *conn) getSubscriptions(context.Context, *request) (any, error) {
	subs := c.srv.core.Bus().Subscriptions(c)
	sort.Slice(subs, func(i, j int) bool {
		a, b := subs[i], subs[j]
		return a.Class+"/"+a.Subclass+"/"+a.Type+"/"+a.ObjID < b.Class+"/"+b.Subclass+"/"+b.Type+"/"+b.ObjID
	})
	return subs, nil
}

// sendEvent publishes a client's event (core/event/send, and core/event
// with anything but the seed's media/call progress).
func (c *conn) sendEvent(_ context.Context, r *request) (any, error) {
	var d signaling.Event
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if err := checkClientEvent(d); err != nil {
		return nil, err
	}
	if err := c.checkEventTarget(d); err != nil {
		return nil, err
	}
	d.User = c.user
	c.srv.core.Bus().Publish(d)
	return nil, nil
}

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

// reason is the text of a hangup or rejection: the seed's `error`, else the later `reason`.
func (d *callIDData) reason() string {
	if d.Error != "" {
		return d.Error
	}
	return d.Reason
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
	Stream     map[string]any `json:"stream"` // stream.go
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

// ---- sessions

func startIsAsync(_ *conn, r *request) bool {
	var d struct {
		Type    string `json:"type"`
		Backend string `json:"backend"`
	}
	_ = decodeData(r.data, &d)
	return d.Type != signaling.TypeP2P || d.Backend != ""
}

func (c *conn) startSession(ctx context.Context, r *request) (any, error) {
	var d startSessionData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if d.Type == "" {
		return nil, signaling.MissingField("type")
	}
	wait, e := seconds(d.WaitTimeout, "wait_timeout")
	if e != nil {
		return nil, e
	}
	ready, e := seconds(d.ReadyTimeout, "ready_timeout")
	if e != nil {
		return nil, e
	}
	sid := d.SessionID
	if sid == "" {
		sid = uuid.NewString()
	} else {
		if !signaling.ValidID(sid) {
			return nil, signaling.Errorf(signaling.CodeInvalidSessionID, "Invalid session id: %q", sid)
		}
		// Checked before subscribing to the id's events.
		if _, exists := c.srv.core.LookupSession(sid); exists {
			return nil, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", sid)
		}
	}
	release, err := c.srv.quotas.take(c, quotaSessions)
	if err != nil {
		return nil, err
	}
	defer release()
	subscribe := d.Subscribe == nil || *d.Subscribe
	key := "session:" + sid
	if subscribe && len(d.EventsBody) > 0 {
		if err := c.budgetSubscription(signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, ObjID: sid, Body: d.EventsBody}); err != nil {
			return nil, err
		}
	}
	if subscribe {
		c.autoSubscribe(key, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: "*", ObjID: sid, Body: d.EventsBody})
	}
	req := signaling.SessionRequest{
		SessionID: sid, Type: d.Type, Offer: d.Offer, Answer: d.Answer,
		WaitTimeout: wait, ReadyTimeout: ready, Backend: d.Backend, Peer: d.Peer,
		Owner: c.id, User: c.user, MaxOwned: c.srv.cfg.MaxOwned,
	}
	if d.Type != signaling.TypeP2P || d.Backend != "" {
		req.Options = r.opts
	}
	res, err := c.srv.core.StartSession(ctx, req)
	if err != nil {
		if subscribe {
			c.dropAutoSub(key)
		}
		c.unclaimRooms(r.opts)
		return nil, err
	}
	if res.RoomID != "" {
		asked, _ := r.opts["room_id"].(string)
		c.srv.rooms.join(res.RoomID, c.user, c.source, asked == "")
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

func (c *conn) stopSession(_ context.Context, r *request) (any, error) {
	var d stopData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	reason := d.Reason
	if reason == "" {
		reason = d.Error
	}
	return nil, c.srv.core.StopSession(d.SessionID, signaling.ReasonError(d.Code, reason, signaling.Err(signaling.CodeUserStop)))
}

func (c *conn) setAnswer(ctx context.Context, r *request) (any, error) {
	var d answerData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if len(d.Answer) == 0 {
		return nil, signaling.MissingField("answer")
	}
	ans, err := c.srv.core.SetAnswer(ctx, d.SessionID, d.Answer)
	if err != nil || r.sess.Backend == "" {
		return nil, err
	}
	return map[string]any{"answer": ans}, nil
}

func (c *conn) updateSession(ctx context.Context, r *request) (any, error) {
	var d updateData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	kind := d.UpdateType
	if kind == "" {
		kind = d.Type
	}
	if kind == "" {
		return nil, signaling.MissingField("type")
	}
	res, err := c.srv.core.UpdateSession(ctx, d.SessionID, kind, r.opts)
	if err != nil {
		c.unclaimRooms(r.opts)
		return nil, err
	}
	if v, ok := r.opts["stream"]; ok && kind == signaling.UpdateMedia {
		sres, err := c.updateStream(ctx, d.SessionID, v) // stream.go
		if err != nil {
			return nil, err
		}
		if len(sres) > 0 && res == nil {
			res = map[string]any{}
		}
		for k, v := range sres {
			res[k] = v
		}
	}
	if len(res) == 0 {
		return nil, nil
	}
	if room, _ := res["room_id"].(string); room != "" {
		asked, _ := r.opts["room_id"].(string)
		c.srv.rooms.join(room, c.user, c.source, asked == "")
	}
	return res, nil
}

func (c *conn) setCandidate(ctx context.Context, r *request) (any, error) {
	var d candidateData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	cand := signaling.Candidate{End: r.cmd == "set_candidate_end", MID: d.SDPMid, MLineIndex: d.SDPMLineIndex}
	if !cand.End {
		switch {
		case object(d.Candidate):
			if e := decodeData(d.Candidate, &cand); e != nil {
				return nil, e
			}
		case len(d.Candidate) > 0 && d.Candidate[0] == '"':
			cand.Candidate, _ = str(d.Candidate)
		default:
			return nil, signaling.MissingField("candidate")
		}
	}
	return nil, c.srv.core.SetCandidate(ctx, d.SessionID, cand)
}

func (c *conn) sessionInfo(_ context.Context, r *request) (any, error) {
	var d sessionIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	return c.srv.core.SessionInfo(d.SessionID)
}

// listSessions lists the user's sessions (every session for an admin).
func (c *conn) listSessions(ctx context.Context, _ *request) (any, error) {
	return c.remoteList(ctx, "media/session/list", c.onlyMine(c.srv.core.ListSessions(), func(id string) bool {
		m, ok := c.srv.core.LookupSession(id)
		return ok && c.ownsSession(m)
	})), nil
}

// onlyMine is ids as this connection may see them: all of them for an
// admin, else those mine says are the user's.
func (c *conn) onlyMine(ids []string, mine func(id string) bool) []string {
	if c.admin {
		return ids
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if mine(id) {
			out = append(out, id)
		}
	}
	return out
}

// ---- calls

func (c *conn) startCall(_ context.Context, r *request) (any, error) {
	var d callStartData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
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
		return nil, signaling.MissingField(field)
	}
	if _, n := c.srv.core.Owned(c.id); n >= c.srv.cfg.MaxOwned {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Too many calls on this connection (max %d, api.max_owned)", c.srv.cfg.MaxOwned)
	}
	release, err := c.srv.quotas.take(c, quotaCalls)
	if err != nil {
		return nil, err
	}
	defer release()
	ring, e := seconds(d.RingTime, "ring_time")
	if e != nil {
		return nil, e
	}
	if len(d.EventsBody) > 0 && (d.Subscribe == nil || *d.Subscribe) {
		if err := c.budgetSubscription(signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Body: d.EventsBody}); err != nil {
			return nil, err
		}
	}
	startStream, err := c.callStream(d, callee) // stream.go
	if err != nil {
		return nil, err
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
		Caller: caller, Data: rawData(r.data), RingTime: ring, MaxOwned: c.srv.cfg.MaxOwned,
	})
	if err != nil {
		return nil, err
	}
	if d.Subscribe == nil || *d.Subscribe {
		c.autoSubscribe("call:"+call.ID(), signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: "*", ObjID: call.ID(), Body: d.EventsBody})
	}
	r.after = func() { call.Start(c.srv.ctx) }
	if startStream != nil {
		// the stream connects before the call rings; a failure hangs the call up
		r.after = func() {
			c.srv.wg.Add(1)
			go func() {
				defer c.srv.wg.Done()
				if err := startStream(call.ID()); err != nil {
					_ = c.srv.core.HangupCall(call.ID(), signaling.AsError(err))
					return
				}
				call.Start(c.srv.ctx)
			}()
		}
	}
	return map[string]any{"call_id": call.ID()}, nil
}

// hangupCall: the caller (or the answering callee) hangs up the call; a
// callee still ringing rejects it.
func (c *conn) hangupCall(_ context.Context, r *request) (any, error) {
	var d callIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	err := signaling.ReasonError(d.Code, d.reason(), signaling.Err(signaling.CodeUserStop))
	c.mu.Lock()
	inv := c.invites[d.CallID]
	c.mu.Unlock()
	if inv != nil {
		inv.h.Hangup(err)
		return nil, nil
	}
	return nil, c.srv.core.HangupCall(d.CallID, err)
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

func (c *conn) calleeRinging(_ context.Context, r *request) (any, error) {
	var d callIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	inv, err := c.invitation(d.CallID)
	if err != nil {
		return nil, err
	}
	inv.h.Ringing(d.Answer)
	return nil, nil
}

// callHasMedia: the caller's session has a media backend, which computes
// the caller's answer (it may take a while).
func callHasMedia(c *conn, r *request) bool {
	var d ids
	_ = decodeData(r.data, &d)
	if call, ok := c.srv.core.LookupCall(d.CallID); ok && call.SessionID != "" {
		m, _ := c.srv.core.LookupSession(call.SessionID)
		return m.Backend != ""
	}
	return false
}

// calleeAnswered handles a callee's acceptance.
func (c *conn) calleeAnswered(_ context.Context, r *request) (any, error) {
	var d callIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	inv, err := c.invitation(d.CallID)
	if err != nil {
		return nil, err
	}
	if d.SessionID != "" {
		if _, err := c.session(d.SessionID, "session_id"); err != nil {
			return nil, err
		}
	}
	key := "call:" + d.CallID
	c.mu.Lock()
	inv.accepted = true
	c.mu.Unlock()
	c.autoSubscribe(key, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: "*", ObjID: d.CallID})
	if err := inv.h.Accepted(d.Answer, d.SessionID); err != nil {
		c.mu.Lock()
		inv.accepted = false
		c.mu.Unlock()
		c.dropAutoSub(key)
		return nil, err
	}
	return nil, nil
}

func (c *conn) calleeRejected(_ context.Context, r *request) (any, error) {
	var d callIDData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	inv, err := c.invitation(d.CallID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	delete(c.invites, d.CallID)
	c.mu.Unlock()
	inv.h.Rejected(signaling.ReasonError(d.Code, d.reason(), signaling.Err(signaling.CodeCallRejected)))
	return nil, nil
}

func (c *conn) callInfo(_ context.Context, r *request) (any, error) {
	var d ids
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	return c.srv.core.CallInfo(d.CallID)
}

// listCalls lists the user's calls, placed or invited to (every call for
// an admin).
func (c *conn) listCalls(ctx context.Context, _ *request) (any, error) {
	return c.remoteList(ctx, "media/call/list", c.onlyMine(c.srv.core.ListCalls(), func(id string) bool { return c.ownsCall(id, false) })), nil
}

// ---- rooms

type roomData struct {
	Class   string `json:"class"`
	RoomID  string `json:"room_id"`
	Backend string `json:"backend"`
	Private bool   `json:"private"`
}

func (c *conn) createRoom(ctx context.Context, r *request) (any, error) {
	var d roomData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if err := c.srv.quotas.check(c, quotaRooms); err != nil {
		return nil, err
	}
	if d.RoomID != "" && c.room(d.RoomID, roomJoin) != nil && !c.srv.roomExists(d.RoomID) {
		// Being created by another user.
		return nil, signaling.Errorf(signaling.CodeRoomAlreadyExists, "Room already exists: %s", d.RoomID)
	}
	id, err := c.srv.core.CreateRoom(ctx, d.Class, d.Backend, d.RoomID, rawData(r.data))
	if err != nil {
		if d.RoomID != "" && !c.srv.roomExists(d.RoomID) {
			c.srv.rooms.forget(d.RoomID)
		}
		return nil, err
	}
	c.srv.rooms.set(id, roomOwner{user: c.user, source: c.source, private: d.Private, claimed: time.Now()})
	return map[string]any{"room_id": id}, nil
}

func (c *conn) destroyRoom(ctx context.Context, r *request) (any, error) {
	var d roomData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if err := c.srv.core.DestroyRoom(ctx, d.RoomID); err != nil {
		return nil, err
	}
	c.srv.rooms.forget(d.RoomID)
	return nil, nil
}

// listRooms lists the rooms the user may use (every room for an admin).
func (c *conn) listRooms(ctx context.Context, _ *request) (any, error) {
	all := c.srv.core.ListRooms()
	if c.admin {
		return c.remoteRooms(ctx, all), nil
	}
	out := make([]signaling.RoomSummary, 0, len(all))
	for _, rm := range all {
		if o, ok := c.srv.rooms.get(rm.RoomID); ok && o.sees(c.user) {
			out = append(out, rm)
		}
	}
	return c.remoteRooms(ctx, out), nil
}

func (c *conn) roomInfo(_ context.Context, r *request) (any, error) {
	var d roomData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	return c.srv.core.RoomInfo(d.RoomID)
}

// monitorList answers core/monitor/list {what} for admins: a front end's snapshot
// (signaling.Core.AddLister: "registrations" with SIP enabled).
func (c *conn) monitorList(_ context.Context, r *request) (any, error) {
	if !c.admin {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation,
			"Admin only: core/monitor/list needs a user with admin: true in the users setting (users[].admin)")
	}
	var d struct {
		What string `json:"what"`
	}
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if d.What == "" {
		return nil, signaling.MissingField("what")
	}
	return c.srv.core.List(d.What)
}
