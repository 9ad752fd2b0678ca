package signaling

import "sync"

// Event is one event on the bus: media/session/stop/<session_id> and the like.
type Event struct {
	Class    string         `json:"class"`
	Subclass string         `json:"subclass,omitempty"`
	Type     string         `json:"type"`
	ObjID    string         `json:"obj_id,omitempty"`
	Body     map[string]any `json:"body,omitempty"`
	// User is the user who owns the object (session, call), set by the core;
	// front ends use it to deliver the event only to that user (and admins).
	// It is not part of the event on the wire.
	User string `json:"-"`
	// Origin is the cluster node the event came from ("" = this node): the cluster does not
	// send such events back out. Not part of the event on the wire.
	Origin string `json:"-"`
}

// Subscription selects events. Subclass, Type and ObjID may be "*" (or empty,
// which means the same); Class "*" matches any class. Body is merged under
// the body of every delivered event (event keys win).
type Subscription struct {
	Class    string         `json:"class"`
	Subclass string         `json:"subclass"`
	Type     string         `json:"type"`
	ObjID    string         `json:"obj_id"`
	Body     map[string]any `json:"body,omitempty"`
}

// Normalize replaces empty selectors by "*".
func (s Subscription) Normalize() Subscription {
	if s.Subclass == "" {
		s.Subclass = "*"
	}
	if s.Type == "" {
		s.Type = "*"
	}
	if s.ObjID == "" {
		s.ObjID = "*"
	}
	return s
}

// Matches reports whether the subscription selects ev. Any of the selectors
// may be "*" independently (a "*" subclass with a concrete type matches).
func (s Subscription) Matches(ev Event) bool {
	return sel(s.Class, ev.Class) && sel(s.Subclass, ev.Subclass) && sel(s.Type, ev.Type) && sel(s.ObjID, ev.ObjID)
}

func sel(pattern, v string) bool { return pattern == "*" || pattern == "" || pattern == v }

func (s Subscription) sameKey(o Subscription) bool {
	return s.Class == o.Class && s.Subclass == o.Subclass && s.Type == o.Type && s.ObjID == o.ObjID
}

// Sink receives events. Deliver is called from any goroutine, without bus
// locks held, and must not block; it must not modify ev.Body.
type Sink interface {
	Deliver(ev Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Deliver calls f(ev).
func (f SinkFunc) Deliver(ev Event) { f(ev) }

type busEntry struct {
	sink Sink
	sub  Subscription
}

// busShards is the number of independently locked parts of the bus;
// subscriptions live in the shard of their obj_id ("*" has its own).
const busShards = 32

type busShard struct {
	mu     sync.RWMutex
	byObj  map[string][]busEntry
	bySink map[Sink][]Subscription
}

// Bus is the event bus: subscriptions indexed by obj_id in locked shards;
// publish delivers to every matching sink once.
type Bus struct {
	shards [busShards]busShard

	wmu      sync.Mutex
	watchers []SubscriptionWatcher
}

// SubscriptionWatcher is told about every subscription added and removed (not about body
// changes), with its sink, after the bus's locks are released. The cluster uses it to receive
// from other nodes only the events someone here selects. It must not block.
type SubscriptionWatcher func(sink Sink, sub Subscription, added bool)

// WatchSubscriptions adds w and tells it at once about the subscriptions present now (as
// added).
func (b *Bus) WatchSubscriptions(w SubscriptionWatcher) {
	b.wmu.Lock()
	b.watchers = append(b.watchers, w)
	b.wmu.Unlock()
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		var now []busEntry
		for _, list := range sh.byObj {
			now = append(now, list...)
		}
		sh.mu.RUnlock()
		for _, e := range now {
			w(e.sink, e.sub, true)
		}
	}
}

func (b *Bus) notify(sink Sink, sub Subscription, added bool) {
	b.wmu.Lock()
	ws := b.watchers
	b.wmu.Unlock()
	for _, w := range ws {
		w(sink, sub, added)
	}
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	b := &Bus{}
	for i := range b.shards {
		b.shards[i].byObj = make(map[string][]busEntry)
		b.shards[i].bySink = make(map[Sink][]Subscription)
	}
	return b
}

func (b *Bus) shard(objID string) *busShard {
	if objID == "*" {
		return &b.shards[0]
	}
	// FNV-1a over the id, into shards 1..n-1.
	h := uint32(2166136261)
	for i := 0; i < len(objID); i++ {
		h ^= uint32(objID[i])
		h *= 16777619
	}
	return &b.shards[1+h%(busShards-1)]
}

// Subscribe adds a subscription for sink. Subscribing twice with the same
// selectors replaces the body.
func (b *Bus) Subscribe(sink Sink, sub Subscription) {
	if b.subscribe(sink, sub) {
		b.notify(sink, sub.Normalize(), true)
	}
}

// subscribe adds or replaces the subscription and reports whether it is new.
func (b *Bus) subscribe(sink Sink, sub Subscription) bool {
	sub = sub.Normalize()
	sh := b.shard(sub.ObjID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	list := sh.byObj[sub.ObjID]
	for i := range list {
		if list[i].sink == sink && list[i].sub.sameKey(sub) {
			list[i].sub = sub
			subs := sh.bySink[sink]
			for j := range subs {
				if subs[j].sameKey(sub) {
					subs[j] = sub
				}
			}
			return false
		}
	}
	sh.byObj[sub.ObjID] = append(list, busEntry{sink: sink, sub: sub})
	sh.bySink[sink] = append(sh.bySink[sink], sub)
	return true
}

// Unsubscribe removes the sink's subscription with the same selectors
// (bodies are ignored) and reports whether there was one.
func (b *Bus) Unsubscribe(sink Sink, sub Subscription) bool {
	sub = sub.Normalize()
	sh := b.shard(sub.ObjID)
	sh.mu.Lock()
	found := sh.removeLocked(sink, sub)
	sh.mu.Unlock()
	if found {
		b.notify(sink, sub, false)
	}
	return found
}

func (sh *busShard) removeLocked(sink Sink, sub Subscription) bool {
	found := false
	list := sh.byObj[sub.ObjID]
	for i := range list {
		if list[i].sink == sink && list[i].sub.sameKey(sub) {
			list[i] = list[len(list)-1]
			list[len(list)-1] = busEntry{}
			list = list[:len(list)-1]
			found = true
			break
		}
	}
	if len(list) == 0 {
		delete(sh.byObj, sub.ObjID)
	} else {
		sh.byObj[sub.ObjID] = list
	}
	subs := sh.bySink[sink]
	for i := range subs {
		if subs[i].sameKey(sub) {
			subs = append(subs[:i], subs[i+1:]...)
			break
		}
	}
	if len(subs) == 0 {
		delete(sh.bySink, sink)
	} else {
		sh.bySink[sink] = subs
	}
	return found
}

// UnsubscribeAll removes every subscription of sink.
func (b *Bus) UnsubscribeAll(sink Sink) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		gone := append([]Subscription(nil), sh.bySink[sink]...)
		for _, sub := range gone {
			sh.removeLocked(sink, sub)
		}
		delete(sh.bySink, sink)
		sh.mu.Unlock()
		for _, sub := range gone {
			b.notify(sink, sub, false)
		}
	}
}

// Subscriptions returns a copy of the sink's subscriptions.
func (b *Bus) Subscriptions(sink Sink) []Subscription {
	var out []Subscription
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		out = append(out, sh.bySink[sink]...)
		sh.mu.RUnlock()
	}
	return out
}

// Publish delivers ev to every sink with a matching subscription, once per
// sink, with that subscription's body merged under the event's body.
func (b *Bus) Publish(ev Event) {
	var targets []busEntry
	collect := func(sh *busShard, key string) {
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		for _, e := range sh.byObj[key] {
			if !e.sub.Matches(ev) {
				continue
			}
			dup := false
			for _, t := range targets {
				if t.sink == e.sink {
					dup = true
					break
				}
			}
			if !dup {
				targets = append(targets, e)
			}
		}
	}
	collect(b.shard(ev.ObjID), ev.ObjID)
	if ev.ObjID != "*" {
		collect(b.shard("*"), "*")
	}
	for _, t := range targets {
		out := ev
		if len(t.sub.Body) > 0 {
			body := make(map[string]any, len(t.sub.Body)+len(ev.Body))
			for k, v := range t.sub.Body {
				body[k] = v
			}
			for k, v := range ev.Body {
				body[k] = v
			}
			out.Body = body
		}
		t.sink.Deliver(out)
	}
}
