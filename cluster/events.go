package cluster

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nkbridge/nkbridge/signaling"
)

// The event bridge. Every event published on this node's bus (but those that came from
// other nodes) goes to NATS on <prefix>.v1.ev.<class>.<subclass>.<type>.<obj_id>; for every
// distinct selector of this node's subscriptions the node subscribes to the same subject with
// NATS wildcards for "*", and publishes what arrives on its bus (Event.Origin set). So an event
// travels only to the nodes where somebody selects it.

// evRecord is an event on NATS.
type evRecord struct {
	V     int             `json:"v"`
	From  string          `json:"from"`
	Seq   uint64          `json:"seq"`
	User  string          `json:"user,omitempty"`
	Event signaling.Event `json:"event"`
}

// evToken encodes one subject token: as is when it is made of [A-Za-z0-9_-], else "~" and
// its base64url; "" is "~".
func evToken(s string) string {
	if s != "" && validToken(s) {
		return s
	}
	return "~" + b64.EncodeToString([]byte(s))
}

// selToken is a selector's token: "*" stays a NATS wildcard.
func selToken(s string) string {
	if s == "*" || s == "" {
		return "*"
	}
	return evToken(s)
}

func (n *Node) evSubject(class, subclass, typ, obj string) string {
	return n.cfg.Prefix + ".v1.ev." + class + "." + subclass + "." + typ + "." + obj
}

// bridge is the node's event bridge state.
type bridge struct {
	mu    sync.Mutex
	subs  map[string]*bridgeSub // NATS subject -> subscription and how many bus subscriptions want it
	seq   atomic.Uint64
	seen  map[string]struct{} // from/seq of recent imports (an event matching two selectors arrives twice)
	order []string
	// forwarded: ids of calls this node ran for callers on other nodes, recently: their
	// events are the caller's node's, not imported here.
	forwarded map[string]time.Time
	// seen: sessions and calls of other nodes this node imported events of, and not their
	// end: when their node is lost, their subscribers here get the end (2040).
	seenObj map[string]seenObj // subclass + "/" + obj id
}

type seenObj struct{ node, user, subclass, id string }

type bridgeSub struct {
	sub   *nats.Subscription
	count int
}

func (n *Node) startBridge() {
	n.br.subs = map[string]*bridgeSub{}
	n.br.seen = map[string]struct{}{}
	n.br.forwarded = map[string]time.Time{}
	n.br.seenObj = map[string]seenObj{}
	bus := n.core.Bus()
	bus.WatchSubscriptions(n.onBusSubscription)
	bus.Subscribe(n.exportSink(), signaling.Subscription{Class: "*"})
}

func (n *Node) stopBridge() {
	n.core.Bus().UnsubscribeAll(n.exportSink())
	n.br.mu.Lock()
	for k, s := range n.br.subs {
		_ = s.sub.Unsubscribe()
		delete(n.br.subs, k)
	}
	n.br.mu.Unlock()
}

// exportSink is the node's sink on its own bus.
func (n *Node) exportSink() signaling.Sink { return (*exporter)(n) }

type exporter Node

// Deliver sends a local event to NATS (signaling.Sink).
func (e *exporter) Deliver(ev signaling.Event) {
	n := (*Node)(e)
	if ev.Origin != "" {
		return
	}
	if ev.Subclass == signaling.SubclassCall && n.forwardedCall(ev.ObjID) || ev.Subclass == signaling.SubclassMonitor && ev.Type == signaling.MonitorCallStarted && n.forwardedCall(ev.ObjID) {
		return // the caller's node publishes the call's events and answers for it
	}
	n.trackObject(ev)
	if !n.connected() {
		return
	}
	rec := evRecord{V: version, From: n.id, Seq: n.br.seq.Add(1), User: ev.User, Event: ev}
	b, err := json.Marshal(rec)
	if err != nil || len(b) > maxMessage {
		return
	}
	_ = n.nc.Publish(n.evSubject(evToken(ev.Class), evToken(ev.Subclass), evToken(ev.Type), evToken(ev.ObjID)), b)
}

// forwardedCall: id is (or was lately) a call this node runs for a caller elsewhere.
func (n *Node) forwardedCall(id string) bool {
	n.mu.Lock()
	_, in := n.in[id]
	n.mu.Unlock()
	if in {
		return true
	}
	n.br.mu.Lock()
	defer n.br.mu.Unlock()
	_, ok := n.br.forwarded[id]
	return ok
}

// forwardedEnded remembers a forwarded call for a minute after its end.
func (n *Node) forwardedEnded(id string) {
	n.br.mu.Lock()
	defer n.br.mu.Unlock()
	now := time.Now()
	for k, t := range n.br.forwarded {
		if now.Sub(t) > time.Minute {
			delete(n.br.forwarded, k)
		}
	}
	n.br.forwarded[id] = now
}

// onBusSubscription follows this node's subscriptions with NATS subscriptions.
func (n *Node) onBusSubscription(sink signaling.Sink, sub signaling.Subscription, added bool) {
	if sink == n.exportSink() {
		return
	}
	class := sub.Class
	if class == "" {
		class = "*"
	}
	subj := n.evSubject(selToken(class), selToken(sub.Subclass), selToken(sub.Type), selToken(sub.ObjID))
	n.br.mu.Lock()
	defer n.br.mu.Unlock()
	s := n.br.subs[subj]
	if added {
		if s == nil {
			ns, err := n.nc.Subscribe(subj, n.onEvent)
			if err != nil {
				n.log.Warn("cluster: event subscription failed", "subject", subj, "err", err)
				return
			}
			s = &bridgeSub{sub: ns}
			n.br.subs[subj] = s
		}
		s.count++
		return
	}
	if s == nil {
		return
	}
	if s.count--; s.count <= 0 {
		_ = s.sub.Unsubscribe()
		delete(n.br.subs, subj)
	}
}

// onEvent publishes an event of another node on this node's bus.
func (n *Node) onEvent(m *nats.Msg) {
	defer n.recovered("event")
	var rec evRecord
	if len(m.Data) > maxMessage || json.Unmarshal(m.Data, &rec) != nil || rec.V != version || !validToken(rec.From) || rec.Event.Class == "" {
		n.log.Warn("cluster: event dropped", "subject", m.Subject, "bytes", len(m.Data))
		return
	}
	if rec.From == n.id {
		return
	}
	ev := rec.Event
	if ev.Subclass == signaling.SubclassCall && n.forwardedCall(ev.ObjID) {
		return
	}
	key := rec.From + "/" + strconv.FormatUint(rec.Seq, 10)
	n.br.mu.Lock()
	if _, dup := n.br.seen[key]; dup {
		n.br.mu.Unlock()
		return
	}
	n.br.seen[key] = struct{}{}
	n.br.order = append(n.br.order, key)
	if len(n.br.order) > 4096 {
		delete(n.br.seen, n.br.order[0])
		n.br.order = n.br.order[1:]
	}
	if ev.Class == signaling.ClassMedia && (ev.Subclass == signaling.SubclassSession || ev.Subclass == signaling.SubclassCall) && ev.ObjID != "" {
		k := ev.Subclass + "/" + ev.ObjID
		if ev.Type == signaling.EventStop || ev.Type == signaling.EventHangup {
			delete(n.br.seenObj, k)
		} else if len(n.br.seenObj) < 100000 {
			n.br.seenObj[k] = seenObj{node: rec.From, user: rec.User, subclass: ev.Subclass, id: ev.ObjID}
		}
	}
	n.br.mu.Unlock()
	ev.User, ev.Origin = rec.User, rec.From
	n.core.Bus().Publish(ev)
}

// endSeen tells this node's subscribers that the sessions and calls of a lost node they
// followed are over: media/session/stop and media/call/hangup with 2040 node_lost.
func (n *Node) endSeen(node string) {
	var gone []seenObj
	n.br.mu.Lock()
	for k, o := range n.br.seenObj {
		if o.node == node {
			gone = append(gone, o)
			delete(n.br.seenObj, k)
		}
	}
	n.br.mu.Unlock()
	e := signaling.Errorf(signaling.CodeNodeLost, "Node lost: %s", node)
	for _, o := range gone {
		typ := signaling.EventStop
		body := map[string]any{"code": e.Code, "reason": e.Text}
		if o.subclass == signaling.SubclassCall {
			typ, body["error"] = signaling.EventHangup, e.Text
		}
		n.core.Bus().Publish(signaling.Event{Class: signaling.ClassMedia, Subclass: o.subclass, Type: typ, ObjID: o.id,
			User: o.user, Origin: node, Body: body})
	}
}
