package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nkbridge/nkbridge/signaling"
)

// contactRecord is the value of a contact's key in the presence bucket.
type contactRecord struct {
	V int `json:"v"`
	signaling.Contact
}

var b64 = base64.RawURLEncoding

// contactKey is <node>.<b64 user>.<kind>.<b64 id>.
func contactKey(node string, c signaling.Contact) string {
	return node + "." + b64.EncodeToString([]byte(c.User)) + "." + c.Kind + "." + b64.EncodeToString([]byte(c.ID))
}

// parsedKey is a presence key taken apart.
type parsedKey struct{ node, user, kind, id string }

func parseKey(k string) (parsedKey, bool) {
	p := strings.Split(k, ".")
	if len(p) != 4 {
		return parsedKey{}, false
	}
	u, err1 := b64.DecodeString(p[1])
	id, err2 := b64.DecodeString(p[3])
	if err1 != nil || err2 != nil {
		return parsedKey{}, false
	}
	return parsedKey{node: p[0], user: string(u), kind: p[2], id: string(id)}, true
}

// pop is one presence operation, done in order by presenceWorker.
type pop struct {
	up     bool
	c      signaling.Contact
	resync bool // rewrite every contact of this node
}

// presenceQueue is an unbounded FIFO (watchers must not block).
type presenceQueue struct {
	mu     sync.Mutex
	ops    []pop
	signal chan struct{}
	done   bool
}

func (q *presenceQueue) init() { q.signal = make(chan struct{}, 1) }

func (q *presenceQueue) push(o pop) {
	q.mu.Lock()
	if !q.done {
		q.ops = append(q.ops, o)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *presenceQueue) take() ([]pop, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ops := q.ops
	q.ops = nil
	return ops, q.done
}

func (q *presenceQueue) close() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// ContactUp publishes a contact of this node (signaling.PresenceWatcher).
func (n *Node) ContactUp(c signaling.Contact) {
	if c.User != "" && c.ID != "" && validToken(c.Kind) {
		n.pq.push(pop{up: true, c: c})
	}
}

// ContactDown withdraws a contact of this node (signaling.PresenceWatcher).
func (n *Node) ContactDown(c signaling.Contact) {
	if c.User != "" && c.ID != "" && validToken(c.Kind) {
		n.pq.push(pop{c: c})
	}
}

func (n *Node) presenceWorker() {
	defer n.wg.Done()
	for {
		ops, done := n.pq.take()
		for _, o := range ops {
			n.applyPresence(o)
		}
		if done {
			return
		}
		select {
		case <-n.pq.signal:
		case <-n.ctx.Done():
			return
		}
	}
}

func (n *Node) applyPresence(o pop) {
	defer n.recovered("presence")
	if !n.connected() {
		return // a resync follows the reconnection (the node key is rewritten)
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	defer cancel()
	var err error
	switch {
	case o.resync:
		n.deleteContacts(ctx, n.id)
		for _, c := range n.core.Presence().Contacts("") {
			if c.User != "" && c.ID != "" && validToken(c.Kind) {
				_, err = n.pres.Put(ctx, contactKey(n.id, c), encode(contactRecord{V: version, Contact: c}))
			}
		}
	case o.up:
		_, err = n.pres.Put(ctx, contactKey(n.id, o.c), encode(contactRecord{V: version, Contact: o.c}))
	default:
		err = n.pres.Delete(ctx, contactKey(n.id, o.c))
	}
	if err != nil {
		n.log.Warn("cluster: presence not published", "err", err)
	}
}

// keys lists the presence keys matching filter (a NATS subject filter).
func (n *Node) keys(ctx context.Context, filter string) ([]parsedKey, error) {
	l, err := n.pres.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	var out []parsedKey
	for k := range l.Keys() {
		if p, ok := parseKey(k); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// deleteContacts deletes node's contacts (best effort).
func (n *Node) deleteContacts(ctx context.Context, node string) {
	ks, err := n.keys(ctx, node+".>")
	if err != nil {
		n.log.Warn("cluster: contacts of a node not listed", "of", node, "err", err)
		return
	}
	for _, k := range ks {
		_ = n.pres.Delete(ctx, k.node+"."+b64.EncodeToString([]byte(k.user))+"."+k.kind+"."+b64.EncodeToString([]byte(k.id)))
	}
}

// remoteKeys lists the keys of filter that belong to other live nodes.
func (n *Node) remoteKeys(ctx context.Context, filter string) ([]parsedKey, error) {
	if !n.connected() {
		return nil, unavailable()
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	ks, err := n.keys(ctx, filter)
	if err != nil {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: presence not read: %v", err)
	}
	out := ks[:0]
	for _, k := range ks {
		if k.node != n.id && n.nodeAlive(ctx, k.node) {
			out = append(out, k)
		}
	}
	return out, nil
}

// nodeAlive: node is alive as of the last heartbeat, or (a node that joined since) its key
// is there now.
func (n *Node) nodeAlive(ctx context.Context, node string) bool {
	if n.isAlive(node) {
		return true
	}
	if _, err := n.nodes.Get(ctx, node); err != nil {
		return false
	}
	n.mu.Lock()
	n.alive[node] = true
	n.mu.Unlock()
	return true
}

// Users returns the users with a contact on another node (signaling.Directory).
func (n *Node) Users(ctx context.Context) ([]string, error) {
	ks, err := n.remoteKeys(ctx, ">")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range ks {
		if !seen[k.user] {
			seen[k.user] = true
			out = append(out, k.user)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Contacts returns user's contacts on other nodes (signaling.Directory).
func (n *Node) Contacts(ctx context.Context, user string) ([]signaling.Contact, error) {
	ks, err := n.remoteKeys(ctx, "*."+b64.EncodeToString([]byte(user))+".>")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	var out []signaling.Contact
	for _, k := range ks {
		e, err := n.pres.Get(ctx, k.node+"."+b64.EncodeToString([]byte(k.user))+"."+k.kind+"."+b64.EncodeToString([]byte(k.id)))
		if err != nil {
			continue
		}
		var r contactRecord
		if json.Unmarshal(e.Value(), &r) != nil || r.V != version {
			continue
		}
		r.Contact.Node = k.node
		out = append(out, r.Contact)
	}
	return out, nil
}
