package wsapi

import (
	"context"
	"encoding/json"

	"github.com/nkbridge/nkbridge/signaling"
)

// invitee is an API connection rung by a call (types user and session).
type invitee struct {
	c        *conn
	callID   string
	h        signaling.InviteHandle
	accepted bool // guarded by c.mu
}

type inviteData struct {
	CallID     string         `json:"call_id"`
	Type       string         `json:"type"`
	User       string         `json:"user,omitempty"`
	Session    string         `json:"session,omitempty"`
	Callee     string         `json:"callee,omitempty"`
	Offer      signaling.Desc `json:"offer,omitempty"`
	CallerName string         `json:"caller_name,omitempty"`
	CallerID   string         `json:"caller_id,omitempty"`
	CallerUser string         `json:"caller_user,omitempty"`
}

// Invite sends the media/call/invite server request; an error answer is a
// rejection.
func (i *invitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	c := i.c
	i.callID, i.h = inv.CallID, h
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return signaling.Errorf(signaling.CodeRegisteredDown, "Connection down")
	}
	if c.invites == nil {
		c.invites = make(map[string]*invitee)
	}
	c.invites[inv.CallID] = i
	c.recent[c.recentN%len(c.recent)] = inv.CallID
	c.recentN++
	c.mu.Unlock()
	d := inviteData{CallID: inv.CallID, Type: inv.Type, Offer: inv.Offer,
		CallerName: inv.Caller.Name, CallerID: inv.Caller.ID, CallerUser: inv.Caller.User}
	switch inv.Type {
	case signaling.CallTypeUser:
		d.User = inv.Callee
	case signaling.CallTypeSession:
		d.Session = inv.Callee
	default:
		d.Callee = inv.Callee
	}
	c.request(signaling.ClassMedia, signaling.SubclassCall, "invite", d, func(ok bool, data json.RawMessage) {
		if ok {
			return
		}
		var e struct {
			Code   int    `json:"code"`
			Error  string `json:"error"`
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = e.Reason
		}
		c.mu.Lock()
		delete(c.invites, inv.CallID)
		c.mu.Unlock()
		h.Rejected(signaling.ReasonError(e.Code, e.Error, signaling.Err(signaling.CodeCallRejected)))
	})
	return nil
}

// Hangup tells the connection the call is over for it: a hangup event (the
// accepted callee gets it through its call subscription instead).
func (i *invitee) Hangup(err *signaling.Error) {
	c := i.c
	c.mu.Lock()
	if c.invites[i.callID] == i {
		delete(c.invites, i.callID)
	}
	accepted := i.accepted
	c.mu.Unlock()
	if !accepted {
		c.request("core", "", "event", signaling.Event{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: signaling.EventHangup, ObjID: i.callID,
			Body: map[string]any{"code": err.Code, "reason": err.Text, "error": err.Text}}, nil)
	}
}
