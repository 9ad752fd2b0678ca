package wsapi

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
)

// The ownership model (docs/SECURITY.md): a user owns the sessions and calls
// its connections start, and the rooms it creates (with media/room/create, or
// by starting a session into a room that did not exist). A user sees and acts
// on its own objects only; an admin user (users[].admin in the
// configuration) sees and acts on everything. Rooms are meeting places: a
// user who knows a room's id may join it (publish, listen, mcu), unless its
// owner created it with "private": true; the users who joined it are its
// members and see it (info, list, events); only its owner (or an admin)
// destroys it.

// ownsSession reports whether c may act on the session: it is the
// connection's own, or its user's, or c is an admin.
func (c *conn) ownsSession(m signaling.SessionMeta) bool {
	return c.admin || m.Owner == c.id || (m.User != "" && m.User == c.user)
}

// session returns the metadata of a session c may act on; 2016 otherwise
// (another user's session does not exist, for this user).
func (c *conn) session(id, field string) (signaling.SessionMeta, error) {
	if id == "" {
		return signaling.SessionMeta{}, signaling.MissingField(field)
	}
	m, ok := c.srv.core.LookupSession(id)
	if !ok || !c.ownsSession(m) {
		if field == "session_id" {
			return m, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", id)
		}
		return m, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s (%s)", id, field)
	}
	return m, nil
}

// ownsCall reports whether c may see or act on the call: placed by its user,
// or c is invited to it (or, with recent, was lately), or c is an admin.
func (c *conn) ownsCall(callID string, recent bool) bool {
	if c.admin {
		return true
	}
	c.mu.Lock()
	_, invited := c.invites[callID]
	for _, id := range c.recent {
		invited = invited || (recent && id == callID)
	}
	c.mu.Unlock()
	if invited {
		return true
	}
	owner, ok := c.srv.core.CallOwner(callID)
	return ok && (owner == c.id || c.srv.connUser(owner) == c.user)
}

// roomOwner is who created a room through the API.
type roomOwner struct {
	user    string
	source  string // the creator's address (quotas)
	private bool   // only the owner joins
	members map[string]bool
	claimed time.Time // when the id was taken
}

// sees: the owner and the members see a room.
func (o roomOwner) sees(user string) bool { return o.user == user || o.members[user] }

// roomClaimGrace is how long a claimed room id may exist only in the registry
// (its creation under way) before it is forgotten.
const roomClaimGrace = time.Minute

// roomRegistry remembers the owner of every room created through the API.
type roomRegistry struct {
	mu    sync.Mutex
	rooms map[string]roomOwner
}

func (r *roomRegistry) get(id string) (roomOwner, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.rooms[id]
	return o, ok
}

// claim records user as the owner of a room about to be created, unless
// someone already owns it; it reports whether user owns it now.
func (r *roomRegistry) claim(id, user, source string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.rooms[id]; ok {
		return o.user == user
	}
	r.setLocked(id, roomOwner{user: user, source: source, claimed: time.Now()})
	return true
}

// join records user as a member of a room it joined; created says the room
// was made for this request (its id chosen by the backend): user owns it.
func (r *roomRegistry) join(id, user, source string, created bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.rooms[id]
	if !ok {
		o = roomOwner{claimed: time.Now()} // a room made elsewhere (SIP, Verto): no owner
		if created {
			o.user, o.source = user, source
		}
	}
	if o.user != user {
		m := make(map[string]bool, len(o.members)+1)
		for k := range o.members {
			m[k] = true
		}
		m[user] = true
		o.members = m
	}
	r.setLocked(id, o)
}

func (r *roomRegistry) set(id string, o roomOwner) {
	r.mu.Lock()
	r.setLocked(id, o)
	r.mu.Unlock()
}

func (r *roomRegistry) setLocked(id string, o roomOwner) {
	if r.rooms == nil {
		r.rooms = make(map[string]roomOwner)
	}
	r.rooms[id] = o
}

// count returns how many rooms user, and source, own; entries of rooms that
// no longer exist are dropped on the way.
func (r *roomRegistry) count(user, source string, exists func(string) bool) (byUser, bySource int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.rooms {
		if o.user != user && o.source != source {
			continue
		}
		if time.Since(o.claimed) > roomClaimGrace && !exists(id) {
			delete(r.rooms, id)
			continue
		}
		if o.user == user {
			byUser++
		}
		if o.source == source {
			bySource++
		}
	}
	return byUser, bySource
}

func (r *roomRegistry) forget(id string) {
	r.mu.Lock()
	delete(r.rooms, id)
	r.mu.Unlock()
}

// roomExists asks the backends.
func (s *Server) roomExists(id string) bool {
	_, err := s.core.RoomInfo(id)
	return err == nil
}

// roomAccess is what a user wants to do with a room.
type roomAccess int

const (
	roomUse     roomAccess = iota // see (info): owner and members
	roomDestroy                   // owner only
	roomJoin                      // join or create: anyone unless private (then the owner)
)

// room checks that c may act on room id; 2030 otherwise. A registry entry of
// a room that no longer exists is dropped on the way.
func (c *conn) room(id string, want roomAccess) error {
	if id == "" {
		return signaling.MissingField("room_id")
	}
	reg := &c.srv.rooms
	exists := c.srv.roomExists(id)
	o, owned := reg.get(id)
	if owned && !exists && time.Since(o.claimed) > roomClaimGrace {
		reg.forget(id)
		owned = false
	}
	switch {
	case c.admin && exists:
		return nil
	case !exists && want == roomJoin:
		if reg.claim(id, c.user, c.source) || c.admin {
			return nil
		}
	case !exists:
	case want == roomJoin:
		if !owned || !o.private || o.user == c.user {
			return nil
		}
	case want == roomUse && owned && o.sees(c.user):
		return nil
	case want == roomDestroy && owned && o.user == c.user:
		return nil
	}
	return signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", id)
}

// refKeys are the request options that name another object (a session, a
// publisher, a room), for every backend: each is checked against the
// ownership rules before the request reaches the core.
var refKeys = [...]string{"peer", "peer_id", "publisher_id", "room_id"}

// checkRefs checks every object id named in a request's options.
func (c *conn) checkRefs(opts map[string]any) error {
	for _, k := range refKeys {
		v, ok := opts[k]
		if !ok || v == nil {
			continue
		}
		id, ok := v.(string)
		if !ok {
			return signaling.InvalidField(k)
		}
		if id == "" {
			continue
		}
		switch k {
		case "peer", "peer_id":
			// Another user's session does not exist for this user; an
			// unknown one is left to the core and backend to report.
			if m, ok := c.srv.core.LookupSession(id); ok && !c.ownsSession(m) {
				return signaling.Errorf(signaling.CodeSessionNotFound, "Peer session not found: %s", id)
			}
		case "publisher_id":
			if err := c.publisher(id); err != nil {
				return err
			}
		case "room_id":
			if err := c.room(id, roomJoin); err != nil {
				return err
			}
		}
	}
	return nil
}

// unclaimRooms forgets the rooms a failed request claimed and did not create.
func (c *conn) unclaimRooms(opts map[string]any) {
	id, _ := opts["room_id"].(string)
	if id == "" {
		return
	}
	if o, ok := c.srv.rooms.get(id); ok && o.user == c.user && !c.srv.roomExists(id) {
		c.srv.rooms.forget(id)
	}
}

// publisher checks a publisher id: the user's own session, or a publisher in
// a room the user may join (or an unknown id).
func (c *conn) publisher(id string) error {
	m, ok := c.srv.core.LookupSession(id)
	if !ok || c.ownsSession(m) {
		return nil // unknown ones are the backend's to report
	}
	if info, err := c.srv.core.SessionInfo(id); err == nil {
		if r, _ := info["room_id"].(string); r != "" && c.room(r, roomJoin) == nil {
			return nil
		}
	}
	return signaling.Errorf(signaling.CodeUnknownPublisher, "Publisher not found: %s", id)
}

// visible reports whether c may receive ev (it must not block nor call a
// backend: events are published under their emitters' locks): events of objects it is
// subscribed to by the server (its sessions, its calls, its invitations)
// always, others only when they are its user's (admins see everything).
// Events of other classes than core and media are the clients' own messages
// and go to every subscriber.
func (c *conn) visible(ev signaling.Event) bool {
	if c.admin {
		return true
	}
	c.mu.Lock()
	_, auto := c.autoSubs[ev.Subclass+":"+ev.ObjID]
	_, invited := c.invites[ev.ObjID]
	c.mu.Unlock()
	if auto || invited {
		return true
	}
	switch ev.Class {
	case signaling.ClassMedia:
		if ev.Subclass == signaling.SubclassRoom {
			// Room events are emitted under the room's locks: only the
			// registry is asked, never the backend.
			o, ok := c.srv.rooms.get(ev.ObjID)
			return ok && o.sees(c.user)
		}
		return ev.User != "" && ev.User == c.user
	case signaling.ClassCore:
		return c.ownsCoreTarget(ev.Subclass, ev.ObjID)
	}
	return true
}

// ownsCoreTarget: core/user_event/<user> and core/session_event/<login
// session> belong to that user; core/cdr (call records, every call's parties) and
// core/monitor (every session and call started, SIP registrations) are for admins only.
func (c *conn) ownsCoreTarget(subclass, objID string) bool {
	switch subclass {
	case signaling.SubclassCDR, signaling.SubclassMonitor:
		return false
	case "user_event":
		return objID == c.user
	case "session_event":
		c.srv.mu.Lock()
		o, ok := c.srv.bySession[objID]
		c.srv.mu.Unlock()
		return ok && o.user == c.user
	}
	return true
}

// checkEventTarget refuses a client event aimed at another user's user,
// login session, session, call or room.
func (c *conn) checkEventTarget(ev signaling.Event) error {
	if !c.admin && ev.Class == signaling.ClassCore && (ev.Subclass == signaling.SubclassCDR || ev.Subclass == signaling.SubclassMonitor) {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Events core/%s come from the server only", ev.Subclass)
	}
	if c.admin || ev.ObjID == "" {
		return nil
	}
	deny := func() error {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Events may only be sent to your own objects: %s", ev.ObjID)
	}
	if ev.Class == signaling.ClassCore && !c.ownsCoreTarget(ev.Subclass, ev.ObjID) {
		return deny()
	}
	if m, ok := c.srv.core.LookupSession(ev.ObjID); ok && !c.ownsSession(m) {
		return deny()
	}
	if _, ok := c.srv.core.CallOwner(ev.ObjID); ok && !c.ownsCall(ev.ObjID, false) {
		return deny()
	}
	if o, ok := c.srv.rooms.get(ev.ObjID); ok && o.user != c.user {
		return deny()
	}
	c.srv.mu.Lock()
	_, isUser := c.srv.byUser[ev.ObjID]
	c.srv.mu.Unlock()
	if isUser && ev.ObjID != c.user && strings.TrimSpace(ev.ObjID) != "" {
		return deny()
	}
	return nil
}

// budgetSubscription checks that one more subscription (or the replacement
// of one with the same selectors) keeps the connection within
// api.max_subscriptions and its bodies within api.subscription_bytes.
func (c *conn) budgetSubscription(d signaling.Subscription) error {
	cfg := &c.srv.cfg
	subs := c.srv.core.Bus().Subscriptions(c)
	if len(subs) >= cfg.MaxSubscriptions {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Too many subscriptions (max %d, api.max_subscriptions)", cfg.MaxSubscriptions)
	}
	total := bodySize(d.Body)
	n := d.Normalize()
	for _, s := range subs {
		if s.Class != n.Class || s.Subclass != n.Subclass || s.Type != n.Type || s.ObjID != n.ObjID {
			total += bodySize(s.Body)
		}
	}
	if total > cfg.SubscriptionBytes {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Subscription bodies too big (over %d bytes, api.subscription_bytes)", cfg.SubscriptionBytes)
	}
	return nil
}

func bodySize(b map[string]any) int {
	if len(b) == 0 {
		return 0
	}
	raw, _ := json.Marshal(b)
	return len(raw)
}
