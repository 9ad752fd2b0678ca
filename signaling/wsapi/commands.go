package wsapi

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/nkbridge/nkbridge/signaling"
)

// rule is the ownership a command needs; dispatch checks it before the
// handler runs (access.go has the model).
type rule int

const (
	ruleNone            rule = iota // any logged-in user
	ruleSession                     // data.session_id names a session of the user (mandatory)
	ruleSessionIfAny                // data.session_id, when given, names a session of the user
	ruleCall                        // data.call_id: a call the user placed, or is invited to now
	ruleCallSeen                    // ruleCall, or a call the connection was recently invited to
	ruleInvited                     // data.call_id: a call this connection is invited to now
	ruleRoomUse                     // data.room_id: a room the user owns or joined
	ruleRoomOwn                     // data.room_id: a room the user owns
	ruleOwnLoginSession             // data.session_id: a login session (API connection) of the user
)

// command is one entry of the command table.
type command struct {
	rule rule
	// refs: the object ids named in the request options (peer, peer_id,
	// publisher_id, room_id) are checked too.
	refs bool
	// async, when set and true for a request, acks it and runs the handler
	// on its own goroutine (it may wait on a backend).
	async func(c *conn, r *request) bool
	run   func(c *conn, ctx context.Context, r *request) (any, error)
}

// request is one client request on its way through dispatch.
type request struct {
	frame
	sess  signaling.SessionMeta // ruleSession: the session named by session_id
	opts  map[string]any        // the data as a generic map (for refs and backends)
	after func()                // run after the reply was queued
}

// ids are the object ids the ownership rules look at.
type ids struct {
	SessionID string `json:"session_id"`
	CallID    string `json:"call_id"`
	RoomID    string `json:"room_id"`
}

func always(*conn, *request) bool { return true }

// withMedia: the session has a media backend (which may be slow).
func withMedia(_ *conn, r *request) bool { return r.sess.Backend != "" }

// commandTable is every command of the API: class/subclass/cmd -> entry.
func commandTable() map[string]command {
	return map[string]command{
		"core/user/login":              {run: alreadyLoggedIn},
		"core/core/ping":               {run: ping},
		"core/user/list":               {run: (*conn).listUsers},
		"core/user/get":                {run: (*conn).getUser},
		"core/session/stop":            {rule: ruleOwnLoginSession, run: (*conn).stopLoginSession},
		"core/event/subscribe":         {run: (*conn).subscribe},
		"core/event/unsubscribe":       {run: (*conn).unsubscribe},
		"core/event/get_subscriptions": {run: (*conn).getSubscriptions},
		"core/event/send":              {run: (*conn).sendEvent},
		"core/core/event":              {run: (*conn).sendEvent}, // media/call events are rewritten by seedCallEvent
		"core/monitor/list":            {run: (*conn).monitorList},

		"media/session/start":             {refs: true, async: startIsAsync, run: (*conn).startSession},
		"media/session/stop":              {rule: ruleSession, run: (*conn).stopSession},
		"media/session/set_answer":        {rule: ruleSession, async: withMedia, run: (*conn).setAnswer},
		"media/session/update":            {rule: ruleSession, refs: true, async: withMedia, run: (*conn).updateSession},
		"media/session/set_candidate":     {rule: ruleSession, async: withMedia, run: (*conn).setCandidate},
		"media/session/set_candidate_end": {rule: ruleSession, async: withMedia, run: (*conn).setCandidate},
		"media/session/info":              {rule: ruleSession, run: (*conn).sessionInfo},
		"media/session/list":              {run: (*conn).listSessions},

		"media/call/start":    {rule: ruleSessionIfAny, run: (*conn).startCall},
		"media/call/hangup":   {rule: ruleCall, run: (*conn).hangupCall},
		"media/call/ringing":  {rule: ruleInvited, run: (*conn).calleeRinging},
		"media/call/answered": {rule: ruleInvited, async: callHasMedia, run: (*conn).calleeAnswered},
		"media/call/accepted": {rule: ruleInvited, async: callHasMedia, run: (*conn).calleeAnswered},
		"media/call/rejected": {rule: ruleInvited, run: (*conn).calleeRejected},
		"media/call/info":     {rule: ruleCallSeen, run: (*conn).callInfo},
		"media/call/transfer": {rule: ruleCall, async: always, run: (*conn).transferCall},
		"media/call/list":     {run: (*conn).listCalls},

		"media/room/create":  {async: always, run: (*conn).createRoom},
		"media/room/destroy": {rule: ruleRoomOwn, async: always, run: (*conn).destroyRoom},
		"media/room/list":    {run: (*conn).listRooms},
		"media/room/info":    {rule: ruleRoomUse, run: (*conn).roomInfo},
	}
}

// handleRequest runs one client request: login first, then the command
// table, with the command's ownership rule checked before its handler.
func (c *conn) handleRequest(f frame) {
	if !c.loggedIn {
		if f.class == "core" && f.subclass == "user" && f.cmd == "login" {
			c.login(f)
			return
		}
		c.replyErr(f.tid, signaling.Errorf(signaling.CodeNotAuthenticated, "Not authenticated: log in first"))
		return
	}
	f, err := seedCallEvent(f)
	if err != nil {
		c.replyErr(f.tid, signaling.AsError(err))
		return
	}
	cmd, ok := c.srv.cmds[f.class+"/"+f.subclass+"/"+f.cmd]
	if !ok {
		if f.class != signaling.ClassCore && f.class != signaling.ClassMedia {
			c.replyErr(f.tid, signaling.Errorf(signaling.CodeUnknownClass, "Unknown class: %s", f.class))
			return
		}
		c.replyErr(f.tid, signaling.AsError(unknownCmd(f)))
		return
	}
	if c.forward(f) {
		return
	}
	r := &request{frame: f}
	if err := c.authorize(cmd, r); err != nil {
		c.replyErr(f.tid, signaling.AsError(err))
		return
	}
	if cmd.async != nil && cmd.async(c, r) {
		c.runAsync(f.tid, func(ctx context.Context) (any, error) { return cmd.run(c, ctx, r) })
		return
	}
	data, err := cmd.run(c, c.ctx, r)
	if err != nil {
		c.replyErr(f.tid, signaling.AsError(err))
		return
	}
	c.reply(f.tid, data)
	if r.after != nil {
		r.after()
	}
}

// authorize applies the command's ownership rule and, for commands with
// refs, the ownership of every object id named in the options.
func (c *conn) authorize(cmd command, r *request) error {
	var d ids
	if e := decodeData(r.data, &d); e != nil {
		return e
	}
	var err error
	switch cmd.rule {
	case ruleSession:
		r.sess, err = c.session(d.SessionID, "session_id")
	case ruleSessionIfAny:
		if d.SessionID != "" {
			r.sess, err = c.session(d.SessionID, "session_id")
		}
	case ruleCall, ruleCallSeen:
		switch {
		case d.CallID == "":
			err = signaling.MissingField("call_id")
		case !c.ownsCall(d.CallID, cmd.rule == ruleCallSeen):
			err = signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", d.CallID)
		}
	case ruleInvited:
		_, err = c.invitation(d.CallID)
	case ruleRoomUse:
		err = c.room(d.RoomID, roomUse)
	case ruleRoomOwn:
		err = c.room(d.RoomID, roomDestroy)
	case ruleOwnLoginSession:
		switch {
		case d.SessionID == "":
			err = signaling.MissingField("session_id")
		case !c.admin && !c.ownsCoreTarget("session_event", d.SessionID):
			err = signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", d.SessionID)
		}
	}
	if err != nil || !cmd.refs {
		return err
	}
	r.opts = rawData(r.data)
	return c.checkRefs(r.opts)
}

// seedCallEvent turns the seed's callee progress, a core/event request
// carrying a media/call event (ringing, accepted, rejected, hangup), into the
// media/call command it stands for, so that it goes through the same table
// and ownership rules.
func seedCallEvent(f frame) (frame, error) {
	if f.class != "core" || f.subclass != "core" || f.cmd != "event" {
		return f, nil
	}
	var d signaling.Event
	if e := decodeData(f.data, &d); e != nil {
		return f, e
	}
	if d.Class != signaling.ClassMedia || d.Subclass != signaling.SubclassCall {
		return f, nil
	}
	if d.ObjID == "" {
		return f, signaling.MissingField("obj_id")
	}
	cmd := ""
	switch d.Type {
	case "ringing", "rejected", "hangup":
		cmd = d.Type
	case "accepted", "answer", "answered":
		cmd = "answered"
	default:
		return f, signaling.Errorf(signaling.CodeInvalidParameters, "Unknown call event type: %s", d.Type)
	}
	data := make(map[string]any, len(d.Body)+1)
	for k, v := range d.Body {
		data[k] = v
	}
	data["call_id"] = d.ObjID
	raw, err := json.Marshal(data)
	if err != nil {
		return f, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid parameters: body")
	}
	f.class, f.subclass, f.cmd, f.data = signaling.ClassMedia, signaling.SubclassCall, cmd, raw
	return f, nil
}

func unknownCmd(f frame) error {
	return signaling.Errorf(signaling.CodeUnknownCommand, "Unknown command: %s/%s/%s", f.class, f.subclass, f.cmd)
}

// Commands returns every command of the API as "class/subclass/cmd", sorted
// (docs/api.schema.json describes each; internal/apischema checks it).
func Commands() []string {
	t := commandTable()
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// forwardable are the commands naming a session or call by id that run on the node holding
// it when it is not here (a cluster): command -> object kind.
var forwardable = map[string]string{
	"media/session/stop": signaling.ObjectSession, "media/session/info": signaling.ObjectSession,
	"media/session/update": signaling.ObjectSession, "media/session/set_answer": signaling.ObjectSession,
	"media/session/set_candidate": signaling.ObjectSession, "media/session/set_candidate_end": signaling.ObjectSession,
	"media/call/hangup": signaling.ObjectCall, "media/call/info": signaling.ObjectCall,
	"media/room/info": signaling.ObjectRoom,
}

// forward sends a command for a session or call that another node holds to that node (on its
// own goroutine, acked) and reports whether it did.
func (c *conn) forward(f frame) bool {
	key := f.class + "/" + f.subclass + "/" + f.cmd
	kind := forwardable[key]
	rem := c.srv.core.Remote()
	if kind == "" || rem == nil {
		return false
	}
	var d ids
	if decodeData(f.data, &d) != nil {
		return false
	}
	id := d.SessionID
	switch kind {
	case signaling.ObjectCall:
		id = d.CallID
	case signaling.ObjectRoom:
		id = d.RoomID
	}
	if id == "" || c.local(kind, id) {
		return false
	}
	c.runAsync(f.tid, func(ctx context.Context) (any, error) {
		raw, err := rem.Forward(ctx, kind, id, key, f.data, c.user, c.admin)
		if err != nil || len(raw) == 0 || string(raw) == "null" {
			return nil, err
		}
		return raw, nil
	})
	return true
}

// local: this node holds the object (or, for a call, the connection is invited to it).
func (c *conn) local(kind, id string) bool {
	switch kind {
	case signaling.ObjectSession:
		_, ok := c.srv.core.LookupSession(id)
		return ok
	case signaling.ObjectRoom:
		return c.srv.roomExists(id)
	}
	c.mu.Lock()
	_, invited := c.invites[id]
	c.mu.Unlock()
	_, ok := c.srv.core.LookupCall(id)
	return ok || invited
}

// runForwarded runs a command another node forwarded for user, as a connection of that user
// on this node would (signaling.CommandRunner): the same ownership rules and handlers.
func (s *Server) runForwarded(ctx context.Context, cmd string, data json.RawMessage, user string, admin bool) (any, error) {
	entry, ok := s.cmds[cmd]
	parts := strings.SplitN(cmd, "/", 3)
	if !ok || (forwardable[cmd] == "" && !listable[cmd]) || len(parts) != 3 {
		return nil, signaling.Errorf(signaling.CodeUnknownCommand, "Unknown command: %s", cmd)
	}
	c := &conn{srv: s, id: "cluster", user: user, admin: admin, loggedIn: true, ctx: ctx,
		log: s.log.With("forwarded_for", user)}
	r := &request{frame: frame{class: parts[0], subclass: parts[1], cmd: parts[2], data: data}}
	if err := c.authorize(entry, r); err != nil {
		return nil, err
	}
	out, err := entry.run(c, ctx, r)
	if err == nil && r.after != nil {
		r.after()
	}
	return out, err
}

// listable are the list commands that span the cluster.
var listable = map[string]bool{"media/session/list": true, "media/call/list": true, "media/room/list": true}

// remoteList adds to a list of ids what the other nodes of a cluster list for the user.
func (c *conn) remoteList(ctx context.Context, cmd string, ids []string) []string {
	rem := c.srv.core.Remote()
	if rem == nil || c.id == "cluster" {
		return ids
	}
	parts, err := rem.List(ctx, cmd, c.user, c.admin)
	if err != nil {
		c.log.Warn("list: other nodes not reached", "cmd", cmd, "err", err)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	for _, raw := range parts {
		var more []string
		if json.Unmarshal(raw, &more) != nil {
			continue
		}
		for _, id := range more {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// remoteRooms adds to a room list what the other nodes of a cluster list for the user.
func (c *conn) remoteRooms(ctx context.Context, rooms []signaling.RoomSummary) []signaling.RoomSummary {
	rem := c.srv.core.Remote()
	if rem == nil || c.id == "cluster" {
		return rooms
	}
	parts, err := rem.List(ctx, "media/room/list", c.user, c.admin)
	if err != nil {
		c.log.Warn("room list: other nodes not reached", "err", err)
	}
	seen := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		seen[r.RoomID] = true
	}
	for _, raw := range parts {
		var more []signaling.RoomSummary
		if json.Unmarshal(raw, &more) != nil {
			continue
		}
		for _, r := range more {
			if !seen[r.RoomID] {
				seen[r.RoomID] = true
				rooms = append(rooms, r)
			}
		}
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].RoomID < rooms[j].RoomID })
	return rooms
}
