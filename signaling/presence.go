package signaling

import (
	"context"
	"sort"
	"sync"
)

// Contact kinds: how a user is reachable on a node.
const (
	ContactAPI   = "api"   // a logged-in control API connection (ID: its login session id)
	ContactVerto = "verto" // a Verto login (ID: its session id)
	ContactSIP   = "sip"   // a SIP registration (ID: the contact URI)
)

// Contact is one way a user is reachable on this node. Front ends report theirs to
// Core.Presence; the cluster publishes them so that other nodes find the user.
type Contact struct {
	User string         `json:"user"`
	Kind string         `json:"kind"`
	ID   string         `json:"id"`
	Info map[string]any `json:"info,omitempty"` // what core/user/get shows (remote, meta)
	Node string         `json:"node,omitempty"` // set on contacts of other nodes (Directory)
}

// PresenceWatcher is told about every contact that comes and goes. Methods are called in
// order, without locks held, and must not block.
type PresenceWatcher interface {
	ContactUp(c Contact)
	ContactDown(c Contact)
}

// Presence is the registry of the contacts of this node. Without a watcher (a single node)
// it is only a map.
type Presence struct {
	mu       sync.Mutex
	contacts map[string]Contact // kind + "\x00" + id
	watchers []PresenceWatcher
	// order serializes the calls to the watchers (one contact's up before its down).
	order sync.Mutex
}

func contactKey(kind, id string) string { return kind + "\x00" + id }

// Add records a contact (replacing one of the same kind and id of another user; one of the
// same user stays as it is).
func (p *Presence) Add(c Contact) {
	p.order.Lock()
	defer p.order.Unlock()
	p.mu.Lock()
	if p.contacts == nil {
		p.contacts = make(map[string]Contact)
	}
	if old, ok := p.contacts[contactKey(c.Kind, c.ID)]; ok && old.User == c.User {
		p.mu.Unlock()
		return // a refresh (a SIP re-REGISTER, a Verto takeover): nothing new for the watchers
	}
	p.contacts[contactKey(c.Kind, c.ID)] = c
	ws := append([]PresenceWatcher(nil), p.watchers...)
	p.mu.Unlock()
	for _, w := range ws {
		w.ContactUp(c)
	}
}

// Remove forgets a contact.
func (p *Presence) Remove(kind, id string) {
	p.order.Lock()
	defer p.order.Unlock()
	p.mu.Lock()
	c, ok := p.contacts[contactKey(kind, id)]
	delete(p.contacts, contactKey(kind, id))
	ws := append([]PresenceWatcher(nil), p.watchers...)
	p.mu.Unlock()
	if !ok {
		return
	}
	for _, w := range ws {
		w.ContactDown(c)
	}
}

// Contacts returns the contacts of user ("" = every contact), sorted by kind and id.
func (p *Presence) Contacts(user string) []Contact {
	p.mu.Lock()
	out := make([]Contact, 0, len(p.contacts))
	for _, c := range p.contacts {
		if user == "" || c.User == user {
			out = append(out, c)
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Watch adds a watcher and returns the contacts present now (the watcher gets every later
// change).
func (p *Presence) Watch(w PresenceWatcher) []Contact {
	p.order.Lock()
	defer p.order.Unlock()
	p.mu.Lock()
	p.watchers = append(p.watchers, w)
	p.mu.Unlock()
	return p.Contacts("")
}

// Directory finds users on the other nodes of a cluster. A single node has none
// (Core.Directory returns nil).
type Directory interface {
	// Users returns the users with a contact on another node.
	Users(ctx context.Context) ([]string, error)
	// Contacts returns user's contacts on the other nodes (Node set).
	Contacts(ctx context.Context, user string) ([]Contact, error)
}

// Presence returns the registry of this node's contacts.
func (c *Core) Presence() *Presence { return &c.presence }

// SetDirectory plugs in the directory of the other nodes (the cluster).
func (c *Core) SetDirectory(d Directory) {
	c.mu.Lock()
	c.dir = d
	c.mu.Unlock()
}

// Directory returns the directory of the other nodes, or nil on a single node.
func (c *Core) Directory() Directory {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dir
}
