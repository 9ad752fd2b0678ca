package wsapi

import (
	"context"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
)

// transferData is media/call/transfer's data.
type transferData struct {
	CallID string `json:"call_id"`
	Target string `json:"target"`
	Type   string `json:"type"`
}

// transferTimeout bounds a transfer request: the new call's ring time and the moving of the
// transferee (a SIP re-INVITE) fit well inside it.
const transferTimeout = 3 * time.Minute

// transferCall is media/call/transfer: the connection is one party of an answered call (its
// caller, or the callee that accepted it) and asks that the other party be connected to
// target instead. The reply comes when the new call is answered ({call_id: the new call}, the
// old call ends with 1013 "Transferred") or fails (its error; the old call goes on). The new
// call is placed with the user's permissions.
func (c *conn) transferCall(ctx context.Context, r *request) (any, error) {
	var d transferData
	if e := decodeData(r.data, &d); e != nil {
		return nil, e
	}
	if d.Target == "" {
		return nil, signaling.MissingField("target")
	}
	dest := signaling.TransferTarget(d.Target, d.Type)
	if err := signaling.CheckTransferTarget(dest); err != nil {
		return nil, err
	}
	by := signaling.PartyCaller
	c.mu.Lock()
	inv := c.invites[d.CallID]
	callee := inv != nil && inv.accepted
	c.mu.Unlock()
	if callee {
		by = signaling.PartyCallee
	} else if owner, ok := c.srv.core.CallOwner(d.CallID); !ok || (owner != c.id && c.srv.connUser(owner) != c.user) {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Only a party of call %s can transfer it", d.CallID)
	}
	dest.Caller = signaling.CallerInfo{User: c.user}
	ctx, cancel := context.WithTimeout(ctx, transferTimeout)
	defer cancel()
	id, err := c.srv.core.TransferCall(ctx, d.CallID, by, dest, nil)
	if err != nil {
		return nil, err
	}
	return map[string]any{"call_id": id}, nil
}
