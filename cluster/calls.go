package cluster

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nkbridge/nkbridge/signaling"
)

// ---- the caller's node: resolvers and the invitees that forward to other nodes

// resolveUser rings the nodes where dest's user has contacts: one invitee per node, which
// rings every contact there (API connections, Verto logins, SIP registrations).
func (n *Node) resolveUser(ctx context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	if dest.Type != "" && dest.Type != signaling.CallTypeUser {
		return nil, nil
	}
	return n.resolve(ctx, dest, "*."+b64.EncodeToString([]byte(dest.Callee))+".>")
}

// resolveSession rings the API connection of a login session on another node.
func (n *Node) resolveSession(ctx context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	if dest.Type != signaling.CallTypeSession {
		return nil, nil
	}
	return n.resolve(ctx, dest, "*.*."+signaling.ContactAPI+"."+b64.EncodeToString([]byte(dest.Callee)))
}

// resolveVerto rings a Verto user's logins on other nodes (call type verto).
func (n *Node) resolveVerto(ctx context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	if dest.Type != signaling.CallTypeVerto {
		return nil, nil
	}
	return n.resolve(ctx, dest, "*."+b64.EncodeToString([]byte(dest.Callee))+"."+signaling.ContactVerto+".*")
}

func (n *Node) resolve(ctx context.Context, dest signaling.Destination, filter string) ([]signaling.Invitee, error) {
	if strings.HasPrefix(dest.Caller.Owner, ownerPrefix) || dest.Callee == "" {
		return nil, nil // a call forwarded here: the caller's node asked the others itself
	}
	ks, err := n.remoteKeys(ctx, filter)
	if err != nil {
		// The local contacts still ring; with nobody else the call gets this error.
		n.log.Warn("cluster: callee not looked up on other nodes", "callee", dest.Callee, "err", err)
		return nil, err
	}
	seen := map[string]bool{}
	var out []signaling.Invitee
	for _, k := range ks {
		if !seen[k.node] {
			seen[k.node] = true
			out = append(out, &outLeg{n: n, node: k.node})
		}
	}
	return out, nil
}

// outLeg is a call's invitation of the callee's contacts on one other node.
type outLeg struct {
	n      *Node
	node   string
	callID string
	h      signaling.InviteHandle

	mu   sync.Mutex
	done bool // the far node ended it, or this node did
}

func legKey(callID, node string) string { return callID + "/" + node }

// Invite sends the invitation to the node (on a goroutine: Invite returns at once).
func (o *outLeg) Invite(ctx context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	n := o.n
	if !n.connected() {
		return unavailable()
	}
	o.callID, o.h = inv.CallID, h
	n.mu.Lock()
	n.out[legKey(inv.CallID, o.node)] = o
	n.mu.Unlock()
	msg := message{CallID: inv.CallID, Type: inv.Type, Callee: inv.Callee, Offer: inv.Offer, Data: inv.Data,
		Caller: callerInfo{Name: inv.Caller.Name, ID: inv.Caller.ID, User: inv.Caller.User}, RingTime: forwardRing.Milliseconds()}
	n.spawn("invite", func() {
		if err := n.request(n.ctx, o.node, kindInvite, msg); err != nil {
			o.farEnd(signaling.AsError(err))
		}
	})
	return nil
}

// forwardRing is the ring time of a forwarded invitation: the callee's node caps it with its
// calls.max_ring_time, and the caller's node ends it at the call's own ring time anyway.
const forwardRing = 24 * time.Hour

// Hangup ends the invitation on the far node (signaling.Invitee).
func (o *outLeg) Hangup(err *signaling.Error) {
	if !o.finish() {
		return
	}
	o.n.send(o.node, kindHangup, message{CallID: o.callID, Code: err.Code, Reason: err.Text})
}

// finish takes the leg out of the node's table; false if it was already.
func (o *outLeg) finish() bool {
	o.mu.Lock()
	done := o.done
	o.done = true
	o.mu.Unlock()
	if done {
		return false
	}
	o.n.mu.Lock()
	if o.n.out[legKey(o.callID, o.node)] == o {
		delete(o.n.out, legKey(o.callID, o.node))
	}
	o.n.mu.Unlock()
	return true
}

// farEnd: the far node ended the invitation (hangup or rejection), or was lost.
func (o *outLeg) farEnd(err *signaling.Error) {
	if o.finish() {
		o.h.Hangup(err) // before acceptance: a rejection
	}
}

// onProgress: a node this node forwarded an invitation to reports its progress.
func (n *Node) onProgress(m *nats.Msg, msg message) {
	n.mu.Lock()
	o := n.out[legKey(msg.CallID, msg.From)]
	n.mu.Unlock()
	if o == nil {
		if m.Reply != "" {
			_ = m.Respond(errReply(signaling.Errorf(signaling.CodeCallNotFound, "Call not found: %s", msg.CallID)))
		}
		return
	}
	switch msg.Event {
	case progRinging:
		o.h.Ringing(msg.Answer)
	case progAccepted:
		// The caller's session may take a while to take the answer (a backend).
		n.spawn("accepted", func() {
			err := o.h.Accepted(msg.Answer, "")
			if m.Reply == "" {
				return
			}
			if err != nil {
				_ = m.Respond(errReply(err))
				return
			}
			_ = m.Respond(okReply)
		})
	case progRejected, progHangup:
		o.farEnd(msg.err(signaling.CodeCallRejected))
	}
}

// ---- the callee's node: calls placed elsewhere, ringing the contacts here

// inCall is a call placed on node from, ringing this node's contacts of the callee: a call
// of this node's core whose Owner is ownerPrefix+from.
type inCall struct {
	n    *Node
	id   string
	from string

	mu        sync.Mutex
	started   bool
	cancelled *signaling.Error // the caller's node ended it before it started here
	byCaller  bool             // ended by the caller's node: nothing to report back
}

// onInvite starts the call here. The entry is made before the reply so that a hangup
// following the invite finds it.
func (n *Node) onInvite(m *nats.Msg, msg message) {
	c := &inCall{n: n, id: msg.CallID, from: msg.From}
	n.mu.Lock()
	if _, dup := n.in[msg.CallID]; dup {
		n.mu.Unlock()
		_ = m.Respond(errReply(signaling.Errorf(signaling.CodeInvalidParameters, "Duplicated call id: %s", msg.CallID)))
		return
	}
	n.in[msg.CallID] = c
	n.mu.Unlock()
	ring := time.Duration(msg.RingTime) * time.Millisecond
	call, err := n.core.NewCall(signaling.CallRequest{
		CallID: msg.CallID, Type: msg.Type, Callee: msg.Callee, Offer: msg.Offer, Data: msg.Data, RingTime: ring,
		Caller:   signaling.CallerInfo{Name: msg.Caller.Name, ID: msg.Caller.ID, User: msg.Caller.User, Owner: ownerPrefix + msg.From},
		Observer: c,
	})
	if err != nil {
		n.mu.Lock()
		delete(n.in, msg.CallID)
		n.mu.Unlock()
		_ = m.Respond(errReply(err))
		return
	}
	_ = m.Respond(okReply)
	n.spawn("invite", func() {
		c.mu.Lock()
		c.started = true
		cancelled := c.cancelled
		c.mu.Unlock()
		if cancelled != nil {
			_ = n.core.HangupCall(c.id, cancelled)
			return
		}
		call.Start(n.ctx)
	})
}

// onHangup: the caller's node ends a call it forwarded here.
func (n *Node) onHangup(msg message) {
	n.mu.Lock()
	c := n.in[msg.CallID]
	n.mu.Unlock()
	if c != nil && c.from == msg.From {
		c.callerGone(msg.err(signaling.CodeUserStop))
	}
}

// callerGone ends the call here, telling nothing back.
func (c *inCall) callerGone(err *signaling.Error) {
	c.mu.Lock()
	c.byCaller = true
	if !c.started {
		c.cancelled = err
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = c.n.core.HangupCall(c.id, err)
}

// CallRinging tells the caller's node (signaling.CallObserver).
func (c *inCall) CallRinging(_ string, answer signaling.Desc) {
	c.n.send(c.from, kindProgress, message{CallID: c.id, Event: progRinging, Answer: answer})
}

// CallAnswered asks the caller's node to take the answer: when another node's contact
// answered first, the call ends here with its error (signaling.CallObserver).
func (c *inCall) CallAnswered(_ string, answer signaling.Desc) {
	c.n.spawn("answered", func() {
		err := c.n.request(c.n.ctx, c.from, kindProgress, message{CallID: c.id, Event: progAccepted, Answer: answer})
		if err != nil {
			c.mu.Lock()
			c.byCaller = true
			c.mu.Unlock()
			_ = c.n.core.HangupCall(c.id, signaling.AsError(err))
		}
	})
}

// CallHangup reports the end to the caller's node unless it came from there
// (signaling.CallObserver).
func (c *inCall) CallHangup(_ string, err *signaling.Error) {
	c.n.forwardedEnded(c.id)
	c.n.mu.Lock()
	if c.n.in[c.id] == c {
		delete(c.n.in, c.id)
	}
	c.n.mu.Unlock()
	c.mu.Lock()
	byCaller := c.byCaller
	c.mu.Unlock()
	if !byCaller {
		c.n.send(c.from, kindProgress, message{CallID: c.id, Event: progHangup, Code: err.Code, Reason: err.Text})
	}
}
