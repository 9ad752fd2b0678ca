package signaling

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sort"
	"time"

	"github.com/google/uuid"
)

// SessionRequest starts a session (media/session/start).
type SessionRequest struct {
	SessionID    string // optional; a UUID is generated when empty
	Type         string // mandatory
	Offer        Desc
	Answer       Desc
	WaitTimeout  time.Duration // 0: default
	ReadyTimeout time.Duration // 0: default
	Backend      string        // forces a backend by name
	Peer         string        // links the session to another one
	Owner        string        // the front end's key for its connection (StopOwned)
	User         string        // the logged-in user, for info
	MaxOwned     int           // if > 0: refuse (1045) when Owner already has this many sessions
	Options      map[string]any
}

// SessionResult is the reply to a session start.
type SessionResult struct {
	SessionID string
	Answer    Desc
	Offer     Desc
	RoomID    string
}

const (
	stateStarting = iota
	stateWait
	stateReady
)

type session struct {
	id, typ      string
	backend      string
	media        Media
	offer        Desc
	outOffer     Desc // the backend's offer for the far side (proxy, listen)
	answer       Desc
	roomID       string
	state        int
	owner, user  string
	peer         string
	callID       string
	recCall      string    // the call it was linked to (kept after the call ends), for records
	answeredAt   time.Time // when it got its answer (records)
	busy         bool      // a set_answer is in progress
	stopped      bool
	stopReported bool // its media reported Stopped: the first report's reason wins
	waitTimeout  time.Duration
	readyTimeout time.Duration
	timer        *time.Timer
	timerGen     int
	created      time.Time
	log          *slog.Logger
}

// ValidID reports whether s can be used as a client-chosen session or call
// id: 1 to 128 characters from [A-Za-z0-9._@:+-], starting with a letter or
// digit.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case i > 0 && (ch == '.' || ch == '_' || ch == '@' || ch == ':' || ch == '+' || ch == '-'):
		default:
			return false
		}
	}
	return true
}

// StartSession creates a session. For p2p it needs no backend; other types go
// to the backend chosen by configuration or by req.Backend.
func (c *Core) StartSession(ctx context.Context, req SessionRequest) (SessionResult, error) {
	if req.Type == "" {
		return SessionResult{}, MissingField("type")
	}
	var (
		bname string
		b     Backend
	)
	if req.Type == TypeP2P && req.Backend == "" {
		if len(req.Offer) == 0 {
			return SessionResult{}, Errorf(CodeMissingOffer, "Missing offer: session type p2p needs an offer")
		}
	} else {
		var err error
		bname, b, err = c.backends.Lookup(req.Type, req.Backend)
		if err != nil {
			return SessionResult{}, err
		}
	}
	if req.SessionID == "" {
		req.SessionID = uuid.NewString()
	} else if !ValidID(req.SessionID) {
		return SessionResult{}, Errorf(CodeInvalidSessionID, "Invalid session id: %q", req.SessionID)
	}
	s := &session{
		id: req.SessionID, typ: req.Type, backend: bname, offer: req.Offer,
		owner: req.Owner, user: req.User, peer: req.Peer, created: time.Now(),
		waitTimeout: req.WaitTimeout, readyTimeout: req.ReadyTimeout,
	}
	if s.waitTimeout <= 0 {
		s.waitTimeout = c.opts.WaitTimeout
	}
	if s.readyTimeout <= 0 {
		s.readyTimeout = c.opts.ReadyTimeout
	}
	s.log = c.log.With("session_id", s.id, "type", s.typ)

	c.mu.Lock()
	if e := c.refuseLocked(); e != nil {
		c.mu.Unlock()
		return SessionResult{}, e
	}
	if ctx.Err() != nil {
		// The requester is gone (a front end cancels its connection's
		// context before stopping what it owns): nothing may be created
		// for it any more. Once registered here, the session is stopped
		// with the rest of what its owner owns.
		c.mu.Unlock()
		return SessionResult{}, Errorf(CodeSessionStop, "Session requester gone")
	}
	if _, dup := c.sessions[s.id]; dup {
		c.mu.Unlock()
		return SessionResult{}, Errorf(CodeDuplicatedSessionID, "Duplicated session id: %s", s.id)
	}
	if req.MaxOwned > 0 && s.owner != "" && len(c.byOwner[s.owner])+c.aux[s.owner] >= req.MaxOwned {
		c.mu.Unlock()
		return SessionResult{}, Errorf(CodeInvalidOperation, "Too many sessions on this connection (max %d)", req.MaxOwned)
	}
	if s.peer != "" {
		if p, ok := c.sessions[s.peer]; !ok || p.stopped {
			c.mu.Unlock()
			return SessionResult{}, Errorf(CodeSessionNotFound, "Peer session not found: %s", s.peer)
		}
		addTo(c.peersOf, s.peer, s.id)
	}
	c.sessions[s.id] = s
	if s.owner != "" {
		addTo(c.byOwner, s.owner, s.id)
	}
	if b == nil {
		c.activateLocked(s, req.Answer)
		ans := c.answeredLocked(s)
		c.mu.Unlock()
		s.log.Info("session started")
		if c.obs != nil {
			c.obs.SessionStarted(s.id, s.typ, "")
		}
		c.monitorSession(s, "")
		c.tellAnswered(ans)
		return SessionResult{SessionID: s.id}, nil
	}
	c.mu.Unlock()

	media, res, err := c.startMedia(ctx, b, MediaRequest{
		SessionID: s.id, Type: s.typ, Offer: req.Offer, Answer: req.Answer,
		Peer: req.Peer, User: req.User, Options: req.Options, Reporter: reporter{c: c, s: s, id: s.id, user: s.user},
	})
	c.mu.Lock()
	if err != nil || s.stopped {
		var dependents []string
		if !s.stopped {
			c.removeLocked(s)
			for d := range c.peersOf[s.id] {
				dependents = append(dependents, d)
			}
			delete(c.peersOf, s.id)
		}
		c.mu.Unlock()
		for _, d := range dependents {
			_ = c.StopSession(d, Errorf(CodePeerHangup, "Peer session failed to start: %s", s.id))
		}
		if err == nil {
			media.Stop(Errorf(CodeSessionStop, "Session stopped while starting"))
			return SessionResult{}, Errorf(CodeSessionStop, "Session stopped while starting")
		}
		s.log.Info("session start failed", "err", err)
		return SessionResult{}, err
	}
	s.media = media
	s.roomID = res.RoomID
	s.outOffer = res.Offer
	answer := req.Answer
	if len(res.Answer) > 0 {
		answer = res.Answer
	}
	c.activateLocked(s, answer)
	ans := c.answeredLocked(s)
	c.mu.Unlock()
	s.log.Info("session started", "backend", bname)
	if c.obs != nil {
		c.obs.SessionStarted(s.id, s.typ, bname)
	}
	c.monitorSession(s, res.RoomID)
	c.tellAnswered(ans)
	return SessionResult{SessionID: s.id, Answer: res.Answer, Offer: res.Offer, RoomID: res.RoomID}, nil
}

// startMedia calls the backend; a panic in it fails this start only (the
// session is cleaned up like after an error).
func (c *Core) startMedia(ctx context.Context, b Backend, req MediaRequest) (m Media, res MediaResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("panic recovered", "in", "backend StartMedia", "session_id", req.SessionID, "panic", v, "stack", string(debug.Stack()))
			m, res, err = nil, MediaResult{}, Errorf(CodeInternalError, "Internal error")
		}
	}()
	return b.StartMedia(ctx, req)
}

// activateLocked moves a starting session to wait or ready and arms its timer.
func (c *Core) activateLocked(s *session, answer Desc) {
	if len(answer) > 0 {
		s.answer = answer
		s.state = stateReady
		s.answeredAt = time.Now()
		c.armLocked(s, s.readyTimeout)
	} else {
		s.state = stateWait
		c.armLocked(s, s.waitTimeout)
	}
}

func (c *Core) armLocked(s *session, d time.Duration) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerGen++
	gen, id := s.timerGen, s.id
	s.timer = time.AfterFunc(d, func() {
		defer c.recovered("session timer")
		c.mu.Lock()
		cur, ok := c.sessions[id]
		fire := ok && cur == s && s.timerGen == gen && !s.stopped
		c.mu.Unlock()
		if fire {
			s.log.Info("session timeout")
			_ = c.StopSession(id, Err(CodeSessionTimeout))
		}
	})
}

func (c *Core) removeLocked(s *session) {
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	delete(c.sessions, s.id)
	if s.owner != "" {
		delFrom(c.byOwner, s.owner, s.id)
	}
	if s.peer != "" {
		delFrom(c.peersOf, s.peer, s.id)
	}
}

// StopSession stops a session with err (nil: 1013 user_stop): its media is
// released, media/session/stop {code, reason} is published, its call hangs
// up and sessions that have it as peer stop (2026).
func (c *Core) StopSession(id string, err *Error) error {
	if err == nil {
		err = Err(CodeUserStop)
	}
	c.mu.Lock()
	s, ok := c.sessions[id]
	if !ok || s.stopped {
		c.mu.Unlock()
		return Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	started := s.state != stateStarting
	c.removeLocked(s)
	var dependents []string
	for d := range c.peersOf[id] {
		dependents = append(dependents, d)
	}
	delete(c.peersOf, id)
	media, callID := s.media, s.callID
	c.mu.Unlock()

	if callID != "" {
		s.log.Info("session stopped", "code", err.Code, "reason", err.Text, "call_id", callID)
	} else {
		s.log.Info("session stopped", "code", err.Code, "reason", err.Text)
	}
	if started && c.obs != nil {
		c.obs.SessionStopped(s.id, s.typ, err.Code)
	}
	var rec *SessionRecord
	if started && c.rec != nil {
		r := sessionRecord(s, media, err)
		rec = &r
	}
	if media != nil {
		media.Stop(err)
	}
	if rec != nil {
		c.rec.SessionEnded(*rec)
	}
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassSession, Type: EventStop, ObjID: id, User: s.user,
		Body: map[string]any{"code": err.Code, "reason": err.Text}})
	if callID != "" {
		_ = c.hangupCallFrom(callID, err, HangupByCaller, s.id)
	}
	for _, d := range dependents {
		_ = c.StopSession(d, Errorf(CodePeerHangup, "Peer session stopped: %s", id))
	}
	return nil
}

// SetAnswer sets the session's answer (media/session/set_answer) and returns
// the answer for the session's client: the backend's, or for p2p the given
// one. It publishes media/session/answer {answer}.
func (c *Core) SetAnswer(ctx context.Context, id string, answer Desc) (Desc, error) {
	if len(answer) == 0 {
		return nil, MissingField("answer")
	}
	c.mu.Lock()
	s, ok := c.sessions[id]
	switch {
	case !ok || s.stopped:
		c.mu.Unlock()
		return nil, Errorf(CodeSessionNotFound, "Session not found: %s", id)
	case s.answer != nil || s.busy:
		c.mu.Unlock()
		return nil, Errorf(CodeAnswerAlreadySet, "Answer already set for session %s", id)
	case s.state == stateStarting:
		c.mu.Unlock()
		return nil, Errorf(CodeInvalidOperation, "Session %s is still starting", id)
	}
	media := s.media
	s.busy = true
	c.mu.Unlock()

	result := answer
	if media != nil {
		got, err := media.SetAnswer(ctx, answer)
		if err != nil {
			c.mu.Lock()
			s.busy = false
			c.mu.Unlock()
			return nil, err
		}
		if len(got) > 0 {
			result = got
		}
	}
	c.mu.Lock()
	s.busy = false
	if s.stopped {
		c.mu.Unlock()
		return nil, Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	s.answer = result
	s.state = stateReady
	s.answeredAt = time.Now()
	c.armLocked(s, s.readyTimeout)
	ans := c.answeredLocked(s)
	c.mu.Unlock()
	s.log.Info("session answered")
	c.tellAnswered(ans)
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassSession, Type: EventAnswer, ObjID: id, User: s.user,
		Body: map[string]any{"answer": result}})
	return result, nil
}

// UpdateSession applies a live update of the given kind. It needs an answer
// (2015) and a backend (p2p sessions have no media to update: 1006).
func (c *Core) UpdateSession(ctx context.Context, id, kind string, opts map[string]any) (map[string]any, error) {
	if kind == "" {
		return nil, MissingField("type")
	}
	c.mu.Lock()
	s, ok := c.sessions[id]
	if !ok || s.stopped {
		c.mu.Unlock()
		return nil, Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	if s.answer == nil {
		c.mu.Unlock()
		return nil, Errorf(CodeAnswerNotSet, "Answer not set for session %s", id)
	}
	media, typ := s.media, s.typ
	c.mu.Unlock()
	if media == nil {
		return nil, Errorf(CodeNotImplemented, "Session type %s has no media to update", typ)
	}
	res, err := media.Update(ctx, kind, opts)
	if err != nil {
		return nil, err
	}
	if kind == UpdateSessionType {
		newType, _ := opts["session_type"].(string)
		c.mu.Lock()
		if newType != "" {
			s.typ = newType
		}
		if r, ok := res["room_id"].(string); ok {
			s.roomID = r
		}
		typ := s.typ
		c.mu.Unlock()
		body := map[string]any{}
		for k, v := range res {
			body[k] = v
		}
		body["type"] = typ
		c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassSession, Type: EventUpdatedType, ObjID: id, User: s.user, Body: body})
	}
	return res, nil
}

// SetCandidate passes a trickled ICE candidate to the session's media. For
// p2p sessions it is published as media/session/candidate for the far side.
func (c *Core) SetCandidate(ctx context.Context, id string, cand Candidate) error {
	c.mu.Lock()
	s, ok := c.sessions[id]
	if !ok || s.stopped {
		c.mu.Unlock()
		return Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	media, user := s.media, s.user
	c.mu.Unlock()
	if media != nil {
		return media.Candidate(ctx, cand)
	}
	body := map[string]any{"candidate": map[string]any{"sdpMid": cand.MID, "sdpMLineIndex": cand.MLineIndex, "candidate": cand.Candidate}}
	if cand.End {
		body = map[string]any{"candidate_end": true}
	}
	c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassSession, Type: EventCandidate, ObjID: id, User: user, Body: body})
	return nil
}

// SessionInfo describes a session (media/session/info).
func (c *Core) SessionInfo(id string) (map[string]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[id]
	if !ok || s.stopped {
		return nil, Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	info := map[string]any{
		"session_id": s.id, "type": s.typ, "state": sessionStateName(s.state),
		"wait_timeout": int(s.waitTimeout / time.Second), "ready_timeout": int(s.readyTimeout / time.Second),
		"created": s.created.UTC().Format(time.RFC3339Nano),
	}
	setIf := func(k, v string) {
		if v != "" {
			info[k] = v
		}
	}
	setIf("backend", s.backend)
	setIf("user", s.user)
	setIf("peer", s.peer)
	setIf("call_id", s.callID)
	setIf("room_id", s.roomID)
	if s.offer != nil {
		info["offer"] = s.offer
	}
	if s.answer != nil {
		info["answer"] = s.answer
	}
	return info, nil
}

// ListSessions returns the ids of all sessions, sorted.
func (c *Core) ListSessions() []string {
	c.mu.Lock()
	ids := make([]string, 0, len(c.sessions))
	for id := range c.sessions {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// SessionMeta is what front ends need to know about a session to route
// requests for it.
type SessionMeta struct {
	Type, Backend, Owner, User, CallID string
	State                              string // SessionStarting, SessionWait, SessionReady
}

// LookupSession returns a session's metadata.
func (c *Core) LookupSession(id string) (SessionMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[id]
	if !ok || s.stopped {
		return SessionMeta{}, false
	}
	return SessionMeta{Type: s.typ, Backend: s.backend, Owner: s.owner, User: s.user, CallID: s.callID,
		State: sessionStateName(s.state)}, true
}

type reporter struct {
	c        *Core
	s        *session
	id, user string
}

// Stopped stops the session on a goroutine (the backend may hold its own
// locks while it reports) with the reason of the first report: a backend
// reporting twice (the engine's media timeout, then the hangup its BYE
// caused) must not have the two goroutines race for the reason. After Close
// the session is gone already.
func (r reporter) Stopped(err *Error) {
	c := r.c
	c.mu.Lock()
	if c.sessions[r.id] != r.s || r.s.stopped || r.s.stopReported {
		c.mu.Unlock()
		return
	}
	r.s.stopReported = true
	c.mu.Unlock()
	if !c.background(func() { _ = c.StopSession(r.id, err) }) {
		c.log.Debug("media stop reported after close", "session_id", r.id)
	}
}

func (r reporter) Event(evType string, body map[string]any) {
	r.c.bus.Publish(Event{Class: ClassMedia, Subclass: SubclassSession, Type: evType, ObjID: r.id, User: r.user, Body: body})
}
