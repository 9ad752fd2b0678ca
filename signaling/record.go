package signaling

import (
	"strings"
	"time"
)

// Recorder is told the life of every call and session with its details, for call records
// (CDRs) and webhooks. The Core calls it outside its lock, from the goroutine that changed
// the call or session; methods must be quick, must not block and must not call back into the
// Core. Options.Recorder nil: nobody is told and nothing is collected.
type Recorder interface {
	// CallEvent: a call rang (CallRinging, once), was answered (CallAnswered) or ended
	// (CallEnded). The record holds what is known so far.
	CallEvent(state string, r CallRecord)
	// SessionAnswered: a session got its answer (at start or by set_answer).
	SessionAnswered(r SessionRecord)
	// SessionEnded: a session that had started ended. Its media figures were read just
	// before the backend released it.
	SessionEnded(r SessionRecord)
}

// SubclassCDR is the subclass of the core/cdr/record events that carry call records (for
// admins only).
const SubclassCDR = "cdr"

// Who ended a call (CallRecord.HangupBy).
const (
	HangupByCaller = "caller" // the originator (its API connection, SIP or Verto peer, session)
	HangupByCallee = "callee" // the invitee that answered or declined, or its session
	HangupBySystem = "system" // ring timeout, no destination, a failure or the server
)

// CallRecord describes one call.
type CallRecord struct {
	ID, Type, Callee string
	Caller           CallerInfo // Owner is left empty
	// SessionIDs are the sessions linked to the call: the caller's first (if it has one),
	// then the callee's.
	SessionIDs []string
	// Data are the call's string data from its originator whose keys start with "sip_" or
	// "verto_" (sip_call_id, sip_from, sip_trunk, verto_call_id).
	Data                        map[string]string
	Start, Ringing, Answer, End time.Time // zero when it did not happen
	Code                        int       // ended: the hangup code
	Reason                      string    // ended: its reason
	Outcome                     string    // ended: one of the Outcome* constants
	HangupBy                    string    // ended: one of the HangupBy* constants
}

// SessionRecord describes one session that ended.
type SessionRecord struct {
	ID, Type, Backend, User string
	CallID                  string // the call it was linked to, even if the call ended first
	Start, Answer, End      time.Time
	Code                    int
	Reason                  string
	Legs                    []LegQuality // from a MediaQuality backend; nil otherwise
}

// LegQuality is what a backend measured on one leg of a session's media.
type LegQuality struct {
	Side                  string // "caller" or "far" (Side.String)
	Kind                  string // the leg's kind: "webrtc", "rtp", ...
	Codec                 string // the audio codec in use, e.g. "opus/48000", "PCMU/8000"
	PacketsIn, PacketsOut uint64 // RTP packets received from / sent to the leg's peer
	Lost                  uint64 // packets missing from the received streams
	JitterMS              float64
}

// MediaQuality is a capability of a session's media: its per-leg figures, read when the
// session ends (Recorder.SessionEnded) while the media is still there.
type MediaQuality interface {
	Quality() []LegQuality
}

// recordData keeps the originator's data a call record carries.
func recordData(d map[string]any) map[string]string {
	var out map[string]string
	for k, v := range d {
		s, ok := v.(string)
		if !ok || !(strings.HasPrefix(k, "sip_") || strings.HasPrefix(k, "verto_")) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = s
	}
	return out
}

// recordLocked is the call's record so far. c.mu must be held.
func (cl *call) recordLocked() CallRecord {
	caller := cl.req.Caller
	caller.Owner = ""
	return CallRecord{
		ID: cl.id, Type: cl.req.Type, Callee: cl.req.Callee, Caller: caller,
		SessionIDs: append([]string(nil), cl.sessions...), Data: recordData(cl.req.Data),
		Start: cl.created, Ringing: cl.rangAt, Answer: cl.answeredAt, HangupBy: cl.hangupBy,
	}
}

// answeredLocked is the record of a session that has just been answered, for the recorder
// (nil: no recorder or not answered). c.mu must be held.
func (c *Core) answeredLocked(s *session) *SessionRecord {
	if c.rec == nil || s.state != stateReady {
		return nil
	}
	return &SessionRecord{ID: s.id, Type: s.typ, Backend: s.backend, User: s.user, CallID: s.recCall,
		Start: s.created, Answer: s.answeredAt}
}

// tellAnswered gives the recorder r (from answeredLocked), outside the lock.
func (c *Core) tellAnswered(r *SessionRecord) {
	if r != nil {
		c.rec.SessionAnswered(*r)
	}
}

// sessionRecord is a stopped session's record; media figures are read from m. The session
// is out of the core: its fields no longer change.
func sessionRecord(s *session, m Media, err *Error) SessionRecord {
	r := SessionRecord{ID: s.id, Type: s.typ, Backend: s.backend, User: s.user, CallID: s.recCall,
		Start: s.created, Answer: s.answeredAt, End: time.Now(), Code: err.Code, Reason: err.Text}
	if q, ok := m.(MediaQuality); ok {
		r.Legs = q.Quality()
	}
	return r
}
