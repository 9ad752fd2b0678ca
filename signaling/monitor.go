package signaling

import (
	"sort"
	"sync"
)

// Monitoring for operators: core/monitor/<type> events tell admins what starts (every
// session and call, whoever owns it) and how front ends' directories change (SIP
// registrations), so an operator view follows the server without polling. Only admins
// receive them (the API front end enforces it, like core/cdr). Front ends add listers of
// what they hold (AddLister); admins read them with core/monitor/list.
const SubclassMonitor = "monitor"

// Types of core/monitor events.
const (
	// MonitorSessionStarted: obj_id the session; body {session_id, type, backend, user?, room_id?, peer?}.
	MonitorSessionStarted = "session_started"
	// MonitorCallStarted: obj_id the call; body {call_id, type, callee, user?, session_id?}.
	MonitorCallStarted = "call_started"
	// MonitorRegistration: obj_id the address-of-record; body {aor, contact, change:
	// added|refreshed|removed|expired, ...} (published by the SIP front end).
	MonitorRegistration = "registration"
)

// Lister returns a snapshot of objects a front end holds (one map per object).
type Lister func() []map[string]any

type listers struct {
	mu sync.Mutex
	m  map[string]Lister
}

// AddLister registers a named snapshot for core/monitor/list (e.g. "registrations").
func (c *Core) AddLister(what string, fn Lister) {
	c.listers.mu.Lock()
	defer c.listers.mu.Unlock()
	if c.listers.m == nil {
		c.listers.m = map[string]Lister{}
	}
	c.listers.m[what] = fn
}

// List returns the snapshot of a registered lister; an unknown name is 1048 naming the
// known ones.
func (c *Core) List(what string) ([]map[string]any, error) {
	c.listers.mu.Lock()
	fn := c.listers.m[what]
	var known []string
	for k := range c.listers.m {
		known = append(known, k)
	}
	c.listers.mu.Unlock()
	if fn == nil {
		sort.Strings(known)
		if len(known) == 0 {
			return nil, Errorf(CodeInvalidParameters, "Invalid field: what (nothing to list: %q needs its front end enabled, e.g. sip.enabled)", what)
		}
		return nil, Errorf(CodeInvalidParameters, "Invalid field: what (want one of %v)", known)
	}
	out := fn()
	if out == nil {
		out = []map[string]any{}
	}
	return out, nil
}

// PublishMonitor publishes a core/monitor event (front ends' directory changes).
func (c *Core) PublishMonitor(typ, objID string, body map[string]any) {
	c.bus.Publish(Event{Class: ClassCore, Subclass: SubclassMonitor, Type: typ, ObjID: objID, Body: body})
}

func (c *Core) monitorSession(s *session, roomID string) {
	body := map[string]any{"session_id": s.id, "type": s.typ, "backend": s.backend}
	if s.user != "" {
		body["user"] = s.user
	}
	if roomID != "" {
		body["room_id"] = roomID
	}
	if s.peer != "" {
		body["peer"] = s.peer
	}
	c.PublishMonitor(MonitorSessionStarted, s.id, body)
}

func (c *Core) monitorCall(cl *call) {
	body := map[string]any{"call_id": cl.id, "type": cl.req.Type, "callee": cl.req.Callee}
	if cl.req.Caller.User != "" {
		body["user"] = cl.req.Caller.User
	}
	if cl.req.SessionID != "" {
		body["session_id"] = cl.req.SessionID
	}
	c.PublishMonitor(MonitorCallStarted, cl.id, body)
}
