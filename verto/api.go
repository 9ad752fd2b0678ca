package verto

import (
	"context"
	"errors"
)

// Credentials is what a Verto login carries.
type Credentials struct {
	Login       string            // params.login as sent, e.g. "1008@example.com"
	User        string            // Login without "@domain" (unless Config.KeepDomain)
	Domain      string            // the part after the last "@", if any
	Password    string            // params.passwd
	LoginParams map[string]string // params.loginParams, values as strings
}

// Authenticator checks Verto logins against the user store shared with the control API.
// It returns the canonical user id the session is bound to. Any error is reported to the
// client as -32001 "Authentication Failure". It is called on the connection's reader goroutine.
type Authenticator interface {
	Authenticate(ctx context.Context, cr Credentials) (user string, err error)
}

// Invite is a call placed by a Verto client (client → server verto.invite).
type Invite struct {
	CallID         string // dialogParams.callID, unique on this server
	User           string // the logged-in user placing the call
	SessionID      string // the client's sessid
	Destination    string // dialogParams.destination_number ("service" when absent, like mod_verto)
	CallerIDName   string
	CallerIDNumber string
	CalleeIDName   string            // dialogParams.remote_caller_id_name
	CalleeIDNumber string            // dialogParams.remote_caller_id_number
	SDP            string            // the client's offer (complete, with candidates)
	UserVariables  map[string]string // dialogParams.userVariables (mod_verto: verto_dvar_*)
	LoginVariables map[string]string // the login's userVariables (mod_verto: channel variables)
	// Recover is false when the client asked not to keep the call across reconnects
	// (dialogParams.recoverCall === false).
	Recover bool
}

// CallHandler receives the calls Verto clients place. HandleInvite runs on the connection's
// reader goroutine before the client gets its "CALL CREATED" reply, so it must not block: it
// should start routing and return. Progress goes back through the *Call handle (Early, Answer,
// Hangup, Display) at any time, from any goroutine; messages sent before HandleInvite returns are
// held until the reply has been sent. Returning an error rejects the invite (-32002 "CALL ERROR"
// carrying the error's Cause when it is one). ctx ends when the call ends.
type CallHandler interface {
	HandleInvite(ctx context.Context, inv Invite, call *Call) (CallEvents, error)
}

// CallEvents receives what the Verto client does inside a call. Methods are called on the
// connection's reader goroutine (or a timer goroutine for grace expiry), without locks held;
// they may call back into the *Call.
type CallEvents interface {
	// DTMF carries digits from verto.info (only 0-9 * # A-D, upper case).
	DTMF(digits string)
	// Hold reports verto.modify hold / unhold / toggleHold (true = held).
	Hold(held bool)
	// Hangup reports that the call ended on the Verto side: the client's verto.bye (with its
	// cause), its socket going away before answer (DESTINATION_OUT_OF_ORDER), a failed
	// re-attach or the detach grace running out (RECOVERY_ON_TIMER_EXPIRE), or server shutdown.
	// It is not called for a hangup the other side started through Call.Hangup/Outbound.Cancel.
	Hangup(cause Cause)
}

// Recoverable is implemented by CallEvents values whose calls survive a client reconnect. When
// the events of an answered call do not implement it, the call is hung up when the socket goes.
type Recoverable interface {
	// Detached: the client's socket went away; the call is kept for Config.DetachGrace.
	Detached()
	// ReattachOffer returns a fresh server offer (with candidates) for the client's new
	// PeerConnection; it is sent in verto.attach after the client logs in again with the same
	// sessid.
	ReattachOffer(ctx context.Context) (sdp string, err error)
	// Reattached carries the client's answer from its verto.attach. An error hangs the call up
	// with BEARERCAPABILITY_NOTAVAIL.
	Reattached(ctx context.Context, answerSDP string) error
}

// OutboundRequest describes a call the server places to a logged-in Verto user.
type OutboundRequest struct {
	User      string // required: every live session of this user rings
	SessionID string // optional: ring only this sessid
	// SDP is the server's offer (complete, with candidates); every ringing socket gets it, the
	// first to answer wins.
	SDP            string
	CallerIDName   string // who is calling the Verto user
	CallerIDNumber string
	CalleeIDName   string // the called party (normally the user's own extension)
	CalleeIDNumber string
}

// OutboundEvents receives the outcome of Server.Invite.
type OutboundEvents interface {
	CallEvents
	// Answered: one socket answered with its SDP. The others have already been sent verto.bye
	// LOSE_RACE. Returning an error fails that answer (-32002 "MEDIA ERROR" to the client); the
	// call is then over and no further events come.
	Answered(call *Call, answerSDP string) error
	// Rejected: every ringing socket declined (verto.bye, cause as the client gave it) or went
	// away (DESTINATION_OUT_OF_ORDER) before anyone answered.
	Rejected(cause Cause)
}

// Errors returned by Server.Invite and the Call methods.
var (
	errClosed = errors.New("verto: server closed")
)

// ErrNotLoggedIn is returned by Server.Invite when the user has no live Verto session.
// (A function returning a fresh sentinel would break errors.Is; this is a constant-like value
// that is never modified.)
var ErrNotLoggedIn = errors.New("verto: user not logged in")

// ErrCallEnded is returned by Call methods once the call is over.
var ErrCallEnded = errors.New("verto: call ended")

// ErrBadState is returned by Call methods used in the wrong direction or state.
var ErrBadState = errors.New("verto: call not in a state for this")

// Error makes a Cause usable as an error (e.g. returned from HandleInvite).
func (c Cause) Error() string { return "verto: " + c.String() }
