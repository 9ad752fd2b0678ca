package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nkbridge/nkbridge/signaling"
)

// Commands by id from any node. Each node subscribes, for every session and call it holds,
// to <prefix>.v1.obj.<kind>.<id token> (NATS interest, no message); a node that gets a
// command for an object it does not hold sends it as a request there: only the holder
// receives it, and "no responders" means no node holds it.

// cmdMessage is a forwarded API command (kind "command").
type cmdMessage struct {
	V     int             `json:"v"`
	Kind  string          `json:"kind"`
	From  string          `json:"from"`
	Cmd   string          `json:"cmd"`
	Data  json.RawMessage `json:"data,omitempty"`
	User  string          `json:"user"`
	Admin bool            `json:"admin,omitempty"`
}

const (
	kindCommand = "command" // a command for one object, to its holder
	kindList    = "list"    // a list command, to every node
)

// cmdReply answers a command.
type cmdReply struct {
	reply
	Data json.RawMessage `json:"data,omitempty"`
}

// objects tracks the subscriptions of the objects this node holds.
type objects struct {
	mu   sync.Mutex
	subs map[string]*nats.Subscription // subject -> subscription
}

func (n *Node) objSubject(kind, id string) string {
	return n.cfg.Prefix + ".v1.obj." + kind + "." + evToken(id)
}

// trackObject follows this node's sessions and calls from its own events.
func (n *Node) trackObject(ev signaling.Event) {
	var kind string
	var add bool
	switch {
	case ev.Class == signaling.ClassCore && ev.Subclass == signaling.SubclassMonitor && ev.Type == signaling.MonitorSessionStarted:
		kind, add = signaling.ObjectSession, true
	case ev.Class == signaling.ClassCore && ev.Subclass == signaling.SubclassMonitor && ev.Type == signaling.MonitorCallStarted:
		kind, add = signaling.ObjectCall, true
	case ev.Class == signaling.ClassMedia && ev.Subclass == signaling.SubclassSession && ev.Type == signaling.EventStop:
		kind = signaling.ObjectSession
	case ev.Class == signaling.ClassMedia && ev.Subclass == signaling.SubclassCall && ev.Type == signaling.EventHangup:
		kind = signaling.ObjectCall
	default:
		return
	}
	if ev.ObjID == "" {
		return
	}
	subj := n.objSubject(kind, ev.ObjID)
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	if n.objs.subs == nil {
		n.objs.subs = map[string]*nats.Subscription{}
	}
	old := n.objs.subs[subj]
	if !add {
		if old != nil {
			_ = old.Unsubscribe()
			delete(n.objs.subs, subj)
		}
		return
	}
	if old != nil {
		return
	}
	s, err := n.nc.Subscribe(subj, n.onCommand)
	if err != nil {
		n.log.Warn("cluster: object not reachable from other nodes", "subject", subj, "err", err)
		return
	}
	n.objs.subs[subj] = s
}

// trackRooms follows this node's rooms (at each heartbeat: rooms have no start event).
func (n *Node) trackRooms() {
	want := map[string]bool{}
	for _, r := range n.core.ListRooms() {
		want[n.objSubject(signaling.ObjectRoom, r.RoomID)] = true
	}
	prefix := n.cfg.Prefix + ".v1.obj." + signaling.ObjectRoom + "."
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	if n.objs.subs == nil {
		n.objs.subs = map[string]*nats.Subscription{}
	}
	for subj, s := range n.objs.subs {
		if strings.HasPrefix(subj, prefix) && !want[subj] {
			_ = s.Unsubscribe()
			delete(n.objs.subs, subj)
		}
	}
	for subj := range want {
		if n.objs.subs[subj] != nil {
			continue
		}
		s, err := n.nc.Subscribe(subj, n.onCommand)
		if err != nil {
			continue
		}
		n.objs.subs[subj] = s
	}
}

func (n *Node) stopObjects() {
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	for k, s := range n.objs.subs {
		_ = s.Unsubscribe()
		delete(n.objs.subs, k)
	}
}

// Forward runs a command on the node holding the object (signaling.Remote).
func (n *Node) Forward(ctx context.Context, kind, id, cmd string, data json.RawMessage, user string, admin bool) (json.RawMessage, error) {
	notFound := signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", id)
	switch kind {
	case signaling.ObjectCall:
		notFound = signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", id)
	case signaling.ObjectRoom:
		notFound = signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", id)
	}
	if !n.connected() {
		return nil, notFound // nothing else can be known of it; the local ones were looked at
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	m, err := n.nc.RequestWithContext(ctx, n.objSubject(kind, id),
		encode(cmdMessage{V: version, Kind: kindCommand, From: n.id, Cmd: cmd, Data: data, User: user, Admin: admin}))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, notFound
	}
	if err != nil {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: the node holding %s %s did not answer: %v", kind, id, err)
	}
	var r cmdReply
	if len(m.Data) > maxMessage || json.Unmarshal(m.Data, &r) != nil || r.V != version {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: bad answer from another node")
	}
	if !r.OK {
		if r.Code == 0 {
			r.Code = signaling.CodeUnknown
		}
		return nil, &signaling.Error{Code: r.Code, Text: r.Error}
	}
	return r.Data, nil
}

// decodeCommand decodes and checks a forwarded command.
func decodeCommand(data []byte, kind string) (cmdMessage, error) {
	var m cmdMessage
	if len(data) > maxMessage {
		return m, errors.New("message too big")
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, err
	}
	switch {
	case m.V != version:
		return m, errors.New("bad version")
	case m.Kind != kind:
		return m, errors.New("not a " + kind)
	case !validToken(m.From):
		return m, errors.New("bad sender")
	case m.Cmd == "":
		return m, errors.New("no command")
	}
	return m, nil
}

// onCommand runs a command another node forwarded for an object of this node.
func (n *Node) onCommand(m *nats.Msg) {
	defer n.recovered("command")
	kind := kindCommand
	if m.Subject == n.listSubject() {
		kind = kindList
	}
	c, err := decodeCommand(m.Data, kind)
	if err != nil {
		n.log.Warn("cluster: command dropped", "subject", m.Subject, "err", err)
		_ = m.Respond(errReply(signaling.Errorf(signaling.CodeInvalidParameters, "Cluster: bad command: %v", err)))
		return
	}
	if c.From == n.id {
		return // a list request of this node: its own part is listed locally
	}
	run := n.core.CommandRunner()
	if run == nil {
		_ = m.Respond(errReply(signaling.Errorf(signaling.CodeNotImplemented, "Cluster: this node runs no API")))
		return
	}
	// A command may wait on a backend: not on the subscription's goroutine.
	n.spawn("command", func() {
		ctx, cancel := context.WithTimeout(n.ctx, 4*n.cfg.RequestTimeout)
		defer cancel()
		out, err := run(ctx, c.Cmd, c.Data, c.User, c.Admin)
		if err != nil {
			_ = m.Respond(errReply(err))
			return
		}
		var raw json.RawMessage
		if out != nil {
			raw, _ = json.Marshal(out)
		}
		_ = m.Respond(encode(cmdReply{reply: reply{V: version, OK: true}, Data: raw}))
	})
}

func (n *Node) listSubject() string { return n.cfg.Prefix + ".v1.list" }

// List asks every other node for its part of a list (signaling.Remote): the one request sent
// to every node, besides user lookups.
func (n *Node) List(ctx context.Context, cmd, user string, admin bool) ([]json.RawMessage, error) {
	if !n.connected() {
		return nil, unavailable()
	}
	want := 0
	kctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	keys, err := n.nodes.Keys(kctx)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: nodes not listed: %v", err)
	}
	for _, k := range keys {
		if k != n.id {
			want++
		}
	}
	if want == 0 {
		return nil, nil
	}
	inbox := n.nc.NewRespInbox()
	ch := make(chan *nats.Msg, want+4)
	sub, err := n.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: %v", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	err = n.nc.PublishRequest(n.listSubject(), inbox, encode(cmdMessage{V: version, Kind: kindList, From: n.id, Cmd: cmd, User: user, Admin: admin}))
	if err != nil {
		return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: %v", err)
	}
	t := time.NewTimer(n.cfg.RequestTimeout)
	defer t.Stop()
	var out []json.RawMessage
	for got := 0; got < want; {
		select {
		case m := <-ch:
			got++
			var r cmdReply
			if json.Unmarshal(m.Data, &r) == nil && r.V == version && r.OK {
				out = append(out, r.Data)
			}
		case <-t.C:
			if len(out) == 0 {
				return nil, signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: no node answered %s", cmd)
			}
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}
