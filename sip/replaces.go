package sip

// Replaces (RFC 3891): an INVITE carrying a Replaces header asks that the new call take the
// place of an existing dialog. The SIP layer matches the header against its dialogs
// (FindDialog) and hands the new call to the handler with Call.Replaces set; the handler
// decides (sipgw puts the new caller in the replaced party's place and hangs that one up).

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// FindDialog returns the live call whose dialog has this Call-ID and these two tags, in either
// role (a Replaces header names the tags from its sender's point of view), or nil.
func (s *Server) FindDialog(callID, tag1, tag2 string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.calls[dialogKey(callID, tag1, tag2)]; c != nil {
		return c
	}
	return s.calls[dialogKey(callID, tag2, tag1)]
}

// Replaces returns the call an inbound INVITE with a Replaces header is to replace (matched
// when the INVITE arrived), or nil.
func (c *Call) Replaces() *Call { return c.replaces }

// replacesTarget checks an inbound INVITE's Replaces header: none (nil, 0), the dialog it
// names, or the status to refuse the INVITE with (400 malformed or several, 481 no such
// dialog or one that has ended, 486 early-only for an answered dialog).
func (s *Server) replacesTarget(req *sip.Request) (*Call, int, string) {
	hs := req.GetHeaders("Replaces")
	if len(hs) == 0 {
		return nil, 0, ""
	}
	if len(hs) > 1 {
		return nil, 400, "Bad Request (several Replaces)"
	}
	r, err := ParseReplaces(strings.TrimSpace(hs[0].Value()))
	if err != nil {
		return nil, 400, "Bad Request (" + oneLineReason(err.Error()) + ")"
	}
	c := s.FindDialog(r.CallID, r.ToTag, r.FromTag)
	if c == nil {
		return nil, 481, "Call/Transaction Does Not Exist (Replaces)"
	}
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch {
	case st == stateEnded:
		return nil, 481, "Call/Transaction Does Not Exist (Replaces)"
	case r.EarlyOnly && st != stateEarly:
		return nil, 486, "Busy Here (Replaces early-only)"
	case st == stateEarly:
		return nil, 481, "Call/Transaction Does Not Exist (Replaces an unanswered call)"
	}
	return c, 0, ""
}
