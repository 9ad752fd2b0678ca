package nkclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
)

// Login authenticates (core/user/login) and returns the login's session
// id. Nothing else is accepted before it; a wrong password is an
// *APIError with code 1030.
func (c *Client) Login(ctx context.Context, user, password string) (string, error) {
	var r struct {
		SessionID string `json:"session_id"`
	}
	if err := c.Request(ctx, "core", "user", "login", map[string]any{"user": user, "password": password}, &r); err != nil {
		return "", err
	}
	return r.SessionID, nil
}

// withCode adds the optional code and reason (under reasonKey) to d.
func withCode(d map[string]any, code int, reasonKey, reason string) map[string]any {
	if code != 0 {
		d["code"] = code
	}
	if reason != "" {
		d[reasonKey] = reason
	}
	return d
}

// SDP is a session description as the API carries it.
type SDP struct {
	SDP     string `json:"sdp"`
	SDPType string `json:"sdp_type,omitempty"` // "webrtc" (default) or "rtp"
	// Caller fields, for offers.
	CallerName string `json:"caller_name,omitempty"`
	CallerID   string `json:"caller_id,omitempty"`
}

// SessionStart is a media/session/start request; Extra holds further
// fields of the request (room_id, peer, backend, wait_timeout, ...).
type SessionStart struct {
	Type   string         // p2p, echo, proxy, park, mcu, publish, listen, ...
	Offer  *SDP           // the caller's offer (most types)
	Answer *SDP           // an answer, for types started with one
	Extra  map[string]any // other fields, sent as they are
}

// Session is a started session.
type Session struct {
	SessionID string `json:"session_id"`
	Answer    *SDP   `json:"answer,omitempty"` // echo, park, mcu, publish: the server's answer
	Offer     *SDP   `json:"offer,omitempty"`  // proxy, listen: an offer for the other side
	RoomID    string `json:"room_id,omitempty"`
}

// StartSession starts a session; the client is subscribed to its events.
func (c *Client) StartSession(ctx context.Context, s SessionStart) (Session, error) {
	d := maps.Clone(s.Extra)
	if d == nil {
		d = map[string]any{}
	}
	d["type"] = s.Type
	if s.Offer != nil {
		d["offer"] = s.Offer
	}
	if s.Answer != nil {
		d["answer"] = s.Answer
	}
	var r Session
	err := c.Request(ctx, "media", "session", "start", d, &r)
	return r, err
}

// StopSession stops a session; code and reason (optional) are carried in
// its stop event.
func (c *Client) StopSession(ctx context.Context, sessionID string, code int, reason string) error {
	d := withCode(map[string]any{"session_id": sessionID}, code, "reason", reason)
	return c.Request(ctx, "media", "session", "stop", d, nil)
}

// SetAnswer sets the answer of a session (media/session/set_answer) and
// returns the reply's answer, if any (proxy sessions answer the caller).
func (c *Client) SetAnswer(ctx context.Context, sessionID string, answer SDP) (*SDP, error) {
	var r struct {
		Answer *SDP `json:"answer"`
	}
	err := c.Request(ctx, "media", "session", "set_answer", map[string]any{"session_id": sessionID, "answer": answer}, &r)
	return r.Answer, err
}

// CallStart is a media/call/start request.
type CallStart struct {
	Type      string // "user", "session", "sip", "verto", or "" for every resolver
	Callee    string // the user, session id, SIP URI or Verto user
	SessionID string // the caller's session, linked to the call
	Offer     *SDP
	RingTime  int            // seconds; 0: the server's default
	Extra     map[string]any // other fields, sent as they are
}

// StartCall starts a call and returns its id; the client is subscribed to
// its events (ringing, accepted, rejected, hangup).
func (c *Client) StartCall(ctx context.Context, s CallStart) (string, error) {
	d := maps.Clone(s.Extra)
	if d == nil {
		d = map[string]any{}
	}
	d["type"], d["callee"] = s.Type, s.Callee
	if s.SessionID != "" {
		d["session_id"] = s.SessionID
	}
	if s.Offer != nil {
		d["offer"] = s.Offer
	}
	if s.RingTime > 0 {
		d["ring_time"] = s.RingTime
	}
	var r struct {
		CallID string `json:"call_id"`
	}
	if err := c.Request(ctx, "media", "call", "start", d, &r); err != nil {
		return "", err
	}
	if r.CallID == "" {
		return "", errors.New("nkbridge: call start answered without a call_id")
	}
	return r.CallID, nil
}

// Hangup ends a call (one started or accepted by this client, or one it
// is invited to); code and reason are optional.
func (c *Client) Hangup(ctx context.Context, callID string, code int, reason string) error {
	d := withCode(map[string]any{"call_id": callID}, code, "error", reason)
	return c.Request(ctx, "media", "call", "hangup", d, nil)
}

// TransferCall connects the other party of an answered call (one this client placed or
// accepted) to target instead of this client: a user name, a "sip:…" URL or "verto:login";
// typ ("user", "sip", "verto"), when not "", forces the target's type. It returns the new call's
// id once that call is answered (the old call then ends with 1013 "Transferred"); on failure
// (an *Error: 1030 a target this user may not call, 2022, 2021, 2023) the old call goes on.
func (c *Client) TransferCall(ctx context.Context, callID, target, typ string) (string, error) {
	d := map[string]any{"call_id": callID, "target": target}
	if typ != "" {
		d["type"] = typ
	}
	var r struct {
		CallID string `json:"call_id"`
	}
	if err := c.Request(ctx, "media", "call", "transfer", d, &r); err != nil {
		return "", err
	}
	return r.CallID, nil
}

// Hangup is the body of a call's hangup event.
type Hangup struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Invite is an incoming call (media/call/invite), already answered "ok":
// report progress with Ringing, then Accept or Reject. Done is closed when
// the call hangs up (the caller gave up, another callee answered, or the
// connection ended); HangupReason then says why.
type Invite struct {
	CallID     string
	Type       string // the call's target type (user, session)
	Offer      *SDP
	CallerName string
	CallerID   string
	Data       json.RawMessage // the invite's whole data

	c      *Client
	once   sync.Once
	done   chan struct{}
	hangup Hangup
}

func newInvite(c *Client, data json.RawMessage) (*Invite, error) {
	var d struct {
		CallID     string `json:"call_id"`
		Type       string `json:"type"`
		Offer      *SDP   `json:"offer"`
		CallerName string `json:"caller_name"`
		CallerID   string `json:"caller_id"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	if d.CallID == "" {
		return nil, errors.New("invite without call_id")
	}
	inv := &Invite{CallID: d.CallID, Type: d.Type, Offer: d.Offer, CallerName: d.CallerName, CallerID: d.CallerID,
		Data: data, c: c, done: make(chan struct{})}
	if inv.Offer != nil {
		if inv.CallerName == "" {
			inv.CallerName = inv.Offer.CallerName
		}
		if inv.CallerID == "" {
			inv.CallerID = inv.Offer.CallerID
		}
	}
	return inv, nil
}

// Done is closed when the call has hung up.
func (inv *Invite) Done() <-chan struct{} { return inv.done }

// HangupReason is the hangup's code and reason, once Done is closed.
func (inv *Invite) HangupReason() Hangup {
	<-inv.done
	return inv.hangup
}

func (inv *Invite) end(h Hangup) {
	inv.once.Do(func() {
		inv.hangup = h
		close(inv.done)
	})
}

// Ringing tells the caller this callee is alerting (media/call/ringing);
// answer (optional) is an early answer.
func (inv *Invite) Ringing(ctx context.Context, answer *SDP) error {
	d := map[string]any{"call_id": inv.CallID}
	if answer != nil {
		d["answer"] = answer
	}
	return inv.c.Request(ctx, "media", "call", "ringing", d, nil)
}

// Accept answers the call (media/call/answered). The first acceptance
// wins: a late one is an *APIError 2024. sessionID (optional) links a
// session of this client to the call.
func (inv *Invite) Accept(ctx context.Context, answer SDP, sessionID string) error {
	d := map[string]any{"call_id": inv.CallID, "answer": answer}
	if sessionID != "" {
		d["session_id"] = sessionID
	}
	if err := inv.c.Request(ctx, "media", "call", "answered", d, nil); err != nil {
		return fmt.Errorf("accept call %s: %w", inv.CallID, err)
	}
	return nil
}

// Reject declines the call (media/call/rejected; code 0: the server's
// 2021 call_rejected). Done is closed when it succeeds.
func (inv *Invite) Reject(ctx context.Context, code int, reason string) error {
	d := withCode(map[string]any{"call_id": inv.CallID}, code, "error", reason)
	if err := inv.c.Request(ctx, "media", "call", "rejected", d, nil); err != nil {
		return err
	}
	// The call is over for this callee: no hangup event will follow.
	inv.c.mu.Lock()
	delete(inv.c.invites, inv.CallID)
	inv.c.mu.Unlock()
	if code == 0 {
		code = 2021
	}
	inv.end(Hangup{Code: code, Reason: reason})
	return nil
}

// Hangup ends the call (accepted) or declines it (still ringing).
func (inv *Invite) Hangup(ctx context.Context, code int, reason string) error {
	return inv.c.Hangup(ctx, inv.CallID, code, reason)
}
