package signaling

import (
	"context"
	"log/slog"
	"strings"
)

// Call transfer: one party of an answered call (the transferor) asks that the other party
// (the transferee) be connected to a new destination instead of to it. The transferee's front
// end does the work, because only it can move its own leg: it starts a new call through the
// router (so a target may be anything a call may reach) and, once that call is answered,
// moves the transferee into it and ends the old call, which releases the transferor.

// Party names one party of a call: its caller or its (answering) callee.
type Party int

// Parties of a call.
const (
	PartyCaller Party = iota
	PartyCallee
)

// String is "caller" or "callee".
func (p Party) String() string {
	if p == PartyCallee {
		return "callee"
	}
	return "caller"
}

// Transfer is what a Transferer is asked to do.
type Transfer struct {
	// CallID is the call the transferee leaves once the new call is answered.
	CallID string
	// Dest is the new destination. Dest.Caller.User is the transferor's user: the new call
	// is placed with its permissions (a SIP URL it may not call is refused).
	Dest Destination
	// Answered, when not nil, is called once the new call is answered and the transferee
	// moved, before the old call ends (a SIP REFER sends its final NOTIFY there, before the
	// BYE that releases the transferor).
	Answered func()
	// Into, when not nil, replaces Dest: the transferee takes the place this names instead of
	// a new call (an attended transfer; a front end's own handle, given back to it).
	Into any
}

// Transferer is implemented by a call party that can be moved to another call: a call's
// CallObserver for its caller, an Invitee for its callee. Transfer blocks until the new call is
// answered (the transferee is in it, the old call ended: it returns the new call's id) or
// fails (the old call goes on untouched); ctx bounds it.
type Transferer interface {
	Transfer(ctx context.Context, t Transfer) (newCallID string, err error)
}

// TransferCall asks the party other than by of answered call callID to go to dest instead
// (see Transferer). Errors: 2020 no such call, 1045 the call is not answered, 1006 the other
// party cannot be transferred, and whatever the new call fails with (1030 a target the
// transferor may not call, 2022 no destination, 2021 rejected, 2023 no answer).
func (c *Core) TransferCall(ctx context.Context, callID string, by Party, dest Destination, answered func()) (string, error) {
	if err := CheckTransferTarget(dest); err != nil {
		return "", err
	}
	tr, lg, err := c.transferee(callID, by)
	if err != nil {
		return "", err
	}
	lg.Info("call transfer", "by", by.String(), "to_type", dest.Type, "to", dest.Callee)
	return runTransfer(ctx, tr, lg, Transfer{CallID: callID, Dest: dest, Answered: answered})
}

// runTransfer has the transferee do t, logging the outcome.
func runTransfer(ctx context.Context, tr Transferer, lg *slog.Logger, t Transfer) (string, error) {
	id, err := tr.Transfer(ctx, t)
	if err != nil {
		e := AsError(err)
		lg.Info("call transfer failed", "code", e.Code, "reason", e.Text)
		return "", e
	}
	lg.Info("call transferred", "new_call_id", id)
	return id, nil
}

// TransferInto is TransferCall for an attended transfer: the party other than by takes the
// place into names (a handle of the transferee's own front end: the far party of the
// transferor's other call) instead of a new call.
func (c *Core) TransferInto(ctx context.Context, callID string, by Party, into any, answered func()) (string, error) {
	tr, lg, err := c.transferee(callID, by)
	if err != nil {
		return "", err
	}
	lg.Info("call transfer (attended)", "by", by.String())
	return runTransfer(ctx, tr, lg, Transfer{CallID: callID, Answered: answered, Into: into})
}

// Transferable checks, without doing anything, that TransferCall(callID, by, ...) would reach
// a transferee: the errors are TransferCall's (2020, 1045, 1006).
func (c *Core) Transferable(callID string, by Party) error {
	_, _, err := c.transferee(callID, by)
	return err
}

// transferee is the party of call callID other than by, as a Transferer.
func (c *Core) transferee(callID string, by Party) (Transferer, *slog.Logger, error) {
	c.mu.Lock()
	call, ok := c.calls[callID]
	if !ok || call.state == callEnded {
		c.mu.Unlock()
		return nil, nil, Errorf(CodeCallNotFound, "Call not found: %s", callID)
	}
	if call.state != callAnswered || call.winner == nil {
		c.mu.Unlock()
		return nil, nil, Errorf(CodeInvalidOperation, "Call %s is not answered: only answered calls can be transferred", callID)
	}
	var other any
	if by == PartyCaller {
		other = call.winner.inv
	} else {
		other = call.req.Observer
	}
	lg := call.log
	c.mu.Unlock()
	tr, ok := other.(Transferer)
	if !ok || other == nil {
		return nil, nil, Errorf(CodeNotImplemented, "Not implemented: the %s of call %s cannot be transferred", (1 - by).String(), callID)
	}
	return tr, lg, nil
}

// maxTransferTarget bounds a transfer target's length.
const maxTransferTarget = 256

// CheckTransferTarget refuses a transfer destination that is empty, too long or carries
// blanks, control characters or URI header parts (?...) that could smuggle headers into a new
// SIP request: 1048 invalid_parameters.
func CheckTransferTarget(d Destination) error {
	t := d.Callee
	if t == "" || len(t) > maxTransferTarget {
		return Errorf(CodeInvalidParameters, "Invalid parameters: target (empty or over %d bytes)", maxTransferTarget)
	}
	for _, r := range t {
		if r < 0x21 || r == 0x7f || r == '<' || r == '>' || r == '"' || r == '?' || r == '\\' || r == 0xfffd {
			return Errorf(CodeInvalidParameters, "Invalid parameters: target %q has blanks, control characters, quotes or URI headers", t)
		}
	}
	switch d.Type {
	case "", CallTypeUser, CallTypeSIP, CallTypeVerto:
	default:
		return Errorf(CodeInvalidParameters, "Invalid parameters: transfer target type %q (want user, sip or verto)", d.Type)
	}
	return nil
}

// TransferTarget turns a client's transfer target into a destination: "sip:…"/"sips:…" a SIP
// URL (type sip), "verto:login" a Verto login, anything else a name every resolver is asked
// about (a user, or what a resolver recognises). typ, when given, forces the type.
func TransferTarget(target, typ string) Destination {
	low := strings.ToLower(target)
	switch {
	case typ != "":
		if typ == CallTypeVerto {
			if rest, ok := strings.CutPrefix(low, "verto:"); ok {
				target = target[len(target)-len(rest):]
			}
		}
		return Destination{Type: typ, Callee: target}
	case strings.HasPrefix(low, "sip:"), strings.HasPrefix(low, "sips:"):
		return Destination{Type: CallTypeSIP, Callee: target}
	case strings.HasPrefix(low, "verto:"):
		return Destination{Type: CallTypeVerto, Callee: target[len("verto:"):]}
	}
	return Destination{Callee: target}
}
