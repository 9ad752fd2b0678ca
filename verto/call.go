package verto

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Direction says who placed a call.
type Direction int

const (
	// Inbound: the Verto client placed the call (client → server verto.invite).
	Inbound Direction = iota
	// Outbound: the server placed the call (server → client verto.invite).
	Outbound
)

type callState int

const (
	stateTrying      callState = iota // inbound, invite accepted, nothing sent yet
	stateEarly                        // inbound, verto.media sent
	stateRinging                      // outbound leg, verto.invite sent
	stateActive                       // answered
	stateDetached                     // answered, socket gone, waiting for re-attach
	stateReattaching                  // verto.attach sent, waiting for the client's verto.attach
	stateEnded
)

// Call is the server's handle on one Verto call leg. Its methods are safe for concurrent use.
type Call struct {
	srv    *Server
	id     string
	dir    Direction
	ctx    context.Context
	cancel context.CancelFunc

	// guarded by srv.mu
	sess           *session
	state          callState
	events         CallEvents
	fork           *OutboundCall
	sdpSent        bool   // our SDP went out (verto.media / verto.answer / verto.invite)
	localSDP       string // our last SDP
	held           bool
	recover        bool
	replied        bool      // the client has its verto.invite reply (inbound)
	queued         []pending // messages held until replied
	callerIDName   string
	callerIDNumber string
	calleeIDName   string
	calleeIDNumber string
	reattachTimer  *time.Timer
}

type pending struct {
	method string
	params map[string]any
}

// ID is the Verto callID.
func (c *Call) ID() string { return c.id }

// Direction says who placed the call.
func (c *Call) Direction() Direction { return c.dir }

// Context ends when the call ends.
func (c *Call) Context() context.Context { return c.ctx }

// User is the Verto user owning this leg.
func (c *Call) User() string {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.sess.user
}

// SessionID is the sessid owning this leg.
func (c *Call) SessionID() string {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.sess.id
}

// Held reports the hold state last set by the client's verto.modify.
func (c *Call) Held() bool {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.held
}

// Answered reports whether the call has been answered (and not ended).
func (c *Call) Answered() bool {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.state == stateActive || c.state == stateDetached || c.state == stateReattaching
}

func (c *Call) recoverable() bool {
	if !c.recover || c.events == nil {
		return false
	}
	_, ok := c.events.(Recoverable)
	return ok
}

// sendLocked sends a call message to the socket owning the call, or queues it until the
// client has its invite reply. Messages for a detached call are dropped (re-attach resends).
func (c *Call) sendLocked(method string, params map[string]any) {
	if !c.replied {
		c.queued = append(c.queued, pending{method, params})
		return
	}
	if c.sess != nil && c.sess.conn != nil {
		c.sess.conn.sendRequest(method, params)
	}
}

func (c *Call) flushLocked() {
	c.replied = true
	q := c.queued
	c.queued = nil
	for _, p := range q {
		c.sendLocked(p.method, p.params)
	}
}

// Early sends verto.media with the server's answer SDP (early media) for a call the client
// placed. The SDP goes out only once per call.
func (c *Call) Early(sdp string) error {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateEnded {
		return ErrCallEnded
	}
	if c.dir != Inbound || c.state != stateTrying {
		return ErrBadState
	}
	if sdp == "" {
		return errors.New("verto: Early needs an SDP")
	}
	c.state = stateEarly
	c.sdpSent = true
	c.localSDP = sdp
	c.sendLocked("verto.media", map[string]any{"callID": c.id, "sdp": sdp, "variables": map[string]any{}})
	return nil
}

// Answer sends verto.answer for a call the client placed. sdp is required unless Early already
// sent one (then it is ignored, as the SDP goes out only once).
func (c *Call) Answer(sdp string) error {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateEnded {
		return ErrCallEnded
	}
	if c.dir != Inbound || (c.state != stateTrying && c.state != stateEarly) {
		return ErrBadState
	}
	params := map[string]any{"callID": c.id, "variables": map[string]any{}}
	if !c.sdpSent {
		if sdp == "" {
			return errors.New("verto: Answer needs an SDP when no early media was sent")
		}
		params["sdp"] = sdp
		c.sdpSent = true
		c.localSDP = sdp
	}
	c.state = stateActive
	c.sendLocked("verto.answer", params)
	return nil
}

// Hangup ends the call from the server side: the owning socket gets verto.bye with the cause.
// The call's events get no Hangup for it.
func (c *Call) Hangup(cause Cause) error {
	var d deferred
	s := c.srv
	s.mu.Lock()
	if c.state == stateEnded {
		s.mu.Unlock()
		return ErrCallEnded
	}
	s.endCallLocked(c, cause, true, false, &d)
	s.mu.Unlock()
	d.run()
	return nil
}

// Display sends verto.display (caller-id change of the remote party).
func (c *Call) Display(name, number string) error {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateEnded {
		return ErrCallEnded
	}
	if c.dir == Inbound {
		c.calleeIDName, c.calleeIDNumber = name, number
	} else {
		c.callerIDName, c.callerIDNumber = name, number
	}
	c.sendLocked("verto.display", c.displayParamsLocked())
	return nil
}

// SendDTMF sends verto.info {callID, dtmf} to the client. Real Verto clients ignore it (DTMF
// towards a browser travels in RTP, RFC 4733); it exists for Verto peers that read it.
func (c *Call) SendDTMF(digits string) error {
	clean, ok := cleanDTMF(digits)
	if !ok {
		return errors.New("verto: invalid DTMF digits")
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateEnded {
		return ErrCallEnded
	}
	c.sendLocked("verto.info", map[string]any{"callID": c.id, "dtmf": clean})
	return nil
}

func (c *Call) displayParamsLocked() map[string]any {
	p := map[string]any{
		"callID":           c.id,
		"caller_id_name":   c.callerIDName,
		"caller_id_number": c.callerIDNumber,
		"callee_id_name":   c.calleeIDName,
		"callee_id_number": c.calleeIDNumber,
	}
	if c.dir == Inbound {
		p["display_name"], p["display_number"] = c.calleeIDName, c.calleeIDNumber
		p["display_direction"] = "inbound"
	} else {
		p["display_name"], p["display_number"] = c.callerIDName, c.callerIDNumber
		p["display_direction"] = "outbound"
	}
	return p
}

// attachParamsLocked builds the server → client verto.attach for a re-attach with a new offer.
func (c *Call) attachParamsLocked(sdp string) map[string]any {
	p := c.displayParamsLocked()
	delete(p, "display_name")
	delete(p, "display_number")
	p["sdp"] = sdp
	p["variables"] = map[string]any{}
	return p
}

// endCallLocked ends a call leg. sendBye sends verto.bye to its socket; notify reports the end
// to the call's events (Hangup) or, for a ringing outbound leg, to the fork.
func (s *Server) endCallLocked(c *Call, cause Cause, sendBye, notify bool, d *deferred) {
	if c.state == stateEnded {
		return
	}
	wasRinging := c.state == stateRinging
	if sendBye {
		c.sendLocked("verto.bye", map[string]any{"callID": c.id, "causeCode": cause.Code, "cause": cause.Name})
	}
	c.state = stateEnded
	if c.reattachTimer != nil {
		c.reattachTimer.Stop()
	}
	if s.calls[c.id] == c {
		delete(s.calls, c.id)
	}
	if c.sess != nil {
		delete(c.sess.calls, c.id)
	}
	c.cancel()
	if f := c.fork; f != nil && wasRinging {
		f.legEndedLocked(c, cause, notify, d)
		return
	}
	if notify && c.events != nil {
		ev := c.events
		d.add(func() { ev.Hangup(cause) })
	}
}

// OutboundCall is a server-placed call ringing one or more sockets of a user.
type OutboundCall struct {
	srv    *Server
	id     string
	events OutboundEvents

	// guarded by srv.mu
	legs   map[string]*Call
	winner *Call
	done   bool
	stop   func() bool
}

// ID is the id of the outbound call (also the callID of its first leg).
func (o *OutboundCall) ID() string { return o.id }

// Call returns the leg that answered, or nil.
func (o *OutboundCall) Call() *Call {
	o.srv.mu.Lock()
	defer o.srv.mu.Unlock()
	return o.winner
}

// Cancel stops the call: ringing legs get verto.bye with cause (e.g. ORIGINATOR_CANCEL, or
// LOSE_RACE when another invitee answered); an answered call is hung up. No events follow.
func (o *OutboundCall) Cancel(cause Cause) {
	var d deferred
	s := o.srv
	s.mu.Lock()
	if o.winner != nil {
		s.endCallLocked(o.winner, cause, true, false, &d)
	} else if !o.done {
		o.done = true
		for _, l := range o.legs {
			s.endCallLocked(l, cause, true, false, &d)
		}
	}
	o.done = true
	if o.stop != nil {
		o.stop()
	}
	s.mu.Unlock()
	d.run()
}

func (o *OutboundCall) legEndedLocked(l *Call, cause Cause, notify bool, d *deferred) {
	delete(o.legs, l.id)
	if o.winner != nil || o.done || len(o.legs) > 0 {
		return
	}
	o.done = true
	if o.stop != nil {
		o.stop()
	}
	if notify {
		ev := o.events
		d.add(func() { ev.Rejected(cause) })
	}
}

// Invite places a call to a logged-in Verto user: every connected session of req.User (or only
// req.SessionID) gets a verto.invite with the caller id and req.SDP; the first verto.answer wins
// and the others get verto.bye LOSE_RACE. When ctx ends before an answer, the call is cancelled
// with ORIGINATOR_CANCEL (no events). ErrNotLoggedIn when no session can ring.
func (s *Server) Invite(ctx context.Context, req OutboundRequest, events OutboundEvents) (*OutboundCall, error) {
	if events == nil {
		return nil, errors.New("verto: Invite needs events")
	}
	if strings.TrimSpace(req.SDP) == "" {
		return nil, errors.New("verto: Invite needs an SDP offer")
	}
	o := &OutboundCall{srv: s, events: events, legs: make(map[string]*Call)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	var targets []*session
	for _, sess := range s.sessions {
		if sess.user != req.User || sess.conn == nil {
			continue
		}
		if req.SessionID != "" && sess.id != req.SessionID {
			continue
		}
		targets = append(targets, sess)
	}
	if len(targets) == 0 {
		s.mu.Unlock()
		return nil, ErrNotLoggedIn
	}
	for _, sess := range targets {
		id := uuid.NewString()
		if o.id == "" {
			o.id = id
		}
		cctx, cancel := context.WithCancel(s.ctx)
		l := &Call{
			srv: s, id: id, dir: Outbound, ctx: cctx, cancel: cancel,
			sess: sess, state: stateRinging, fork: o, recover: true, replied: true,
			sdpSent: true, localSDP: req.SDP,
			callerIDName: req.CallerIDName, callerIDNumber: req.CallerIDNumber,
			calleeIDName: req.CalleeIDName, calleeIDNumber: req.CalleeIDNumber,
		}
		o.legs[id] = l
		s.calls[id] = l
		sess.calls[id] = l
		l.sendLocked("verto.invite", map[string]any{
			"callID":            id,
			"sdp":               req.SDP,
			"caller_id_name":    req.CallerIDName,
			"caller_id_number":  req.CallerIDNumber,
			"callee_id_name":    req.CalleeIDName,
			"callee_id_number":  req.CalleeIDNumber,
			"display_direction": "outbound",
			"variables":         map[string]any{},
		})
	}
	o.stop = context.AfterFunc(ctx, func() { o.cancelIfRinging(CauseOriginatorCancel) })
	s.mu.Unlock()
	return o, nil
}

func (o *OutboundCall) cancelIfRinging(cause Cause) {
	var d deferred
	s := o.srv
	s.mu.Lock()
	if o.winner == nil && !o.done {
		o.done = true
		for _, l := range o.legs {
			s.endCallLocked(l, cause, true, false, &d)
		}
	}
	s.mu.Unlock()
	d.run()
}

// cleanDTMF keeps the DTMF characters Verto allows (0-9 * # A-D, upper-cased); '+' group
// separators and "@<ms>" durations are accepted and dropped. ok is false when nothing is left or
// the string is too long or holds anything else.
func cleanDTMF(s string) (string, bool) {
	if len(s) == 0 || len(s) > 256 {
		return "", false
	}
	var b strings.Builder
	inDur := false
	for _, r := range s {
		switch {
		case r == '@':
			inDur = true
		case r == '+':
			inDur = false
		case inDur && r >= '0' && r <= '9':
		case r >= '0' && r <= '9', r == '*', r == '#':
			b.WriteRune(r)
		case r >= 'A' && r <= 'D', r >= 'a' && r <= 'd':
			b.WriteRune(r &^ 0x20)
		default:
			return "", false
		}
	}
	if b.Len() == 0 {
		return "", false
	}
	return b.String(), true
}
