package cdr

import (
	"math"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
)

// Event names of records (Record.Event, the X-Nkbridge-Event header).
const (
	EventCDR          = "cdr"           // the record of an ended call or session
	EventCallRinging  = "call.ringing"  // life-cycle: the call rings
	EventCallAnswered = "call.answered" // life-cycle: the call was answered
	EventCallEnded    = "call.ended"    // life-cycle: the call ended (its cdr follows)
	// life-cycle of sessions: answered (at start or by set_answer), ended (with its legs)
	EventSessionAnswered = "session.answered"
	EventSessionEnded    = "session.ended"
)

// Events lists every event, for configuration checks.
var Events = []string{EventCDR, EventCallRinging, EventCallAnswered, EventCallEnded, EventSessionAnswered, EventSessionEnded}

// Record kinds.
const (
	KindCall    = "call"
	KindSession = "session"
)

// Party is one side of a call.
type Party struct {
	Name   string `json:"name,omitempty"`
	Number string `json:"number,omitempty"` // caller_id
	User   string `json:"user,omitempty"`   // API user, SIP user or Verto login that started it
	URI    string `json:"uri,omitempty"`    // SIP From (caller)
}

// Leg is the media of one leg of a session.
type Leg struct {
	SessionID   string  `json:"session_id"`
	Side        string  `json:"side"` // caller | far
	Kind        string  `json:"kind"` // webrtc | rtp | ...
	Codec       string  `json:"codec,omitempty"`
	PacketsIn   uint64  `json:"packets_in"`
	PacketsOut  uint64  `json:"packets_out"`
	Lost        uint64  `json:"packets_lost"`
	LossPercent float64 `json:"loss_percent"`
	JitterMS    float64 `json:"jitter_ms"`
	RFactor     float64 `json:"r_factor,omitempty"` // E-model estimate, 0 when nothing was received
	MOS         float64 `json:"mos,omitempty"`
}

// Record is one JSON record: a CDR (Event "cdr") or a life-cycle event. See docs/CDR.md.
type Record struct {
	ID    string    `json:"id"` // idempotency key: the same for every delivery of this record
	Event string    `json:"event"`
	Kind  string    `json:"kind"` // call | session
	Node  string    `json:"node"`
	Time  time.Time `json:"time"` // when the record was made

	CallID      string   `json:"call_id,omitempty"`
	CallType    string   `json:"call_type,omitempty"`
	SessionID   string   `json:"session_id,omitempty"` // kind session
	SessionType string   `json:"session_type,omitempty"`
	Backend     string   `json:"backend,omitempty"`
	SessionIDs  []string `json:"session_ids,omitempty"`
	SIPCallID   string   `json:"sip_call_id,omitempty"`
	VertoCallID string   `json:"verto_call_id,omitempty"`
	Trunk       string   `json:"trunk,omitempty"`

	Caller *Party `json:"caller,omitempty"`
	Callee string `json:"callee,omitempty"`
	User   string `json:"user,omitempty"` // kind session: its user

	Start   *time.Time `json:"start,omitempty"`
	Ringing *time.Time `json:"ringing,omitempty"`
	Answer  *time.Time `json:"answer,omitempty"`
	End     *time.Time `json:"end,omitempty"`
	// Duration is start to end, Billable answer to end, both in seconds (Billable rounded up
	// to whole seconds; 0 when not answered).
	Duration float64 `json:"duration,omitempty"`
	Billable int64   `json:"billable_seconds"`

	HangupBy string `json:"hangup_by,omitempty"` // caller | callee | system
	Code     int    `json:"code,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Outcome  string `json:"outcome,omitempty"` // answered | rejected | no_answer | no_destination | cancelled

	Legs []Leg `json:"legs,omitempty"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// callRecord builds a call's record (its legs are added later).
func callRecord(event string, r signaling.CallRecord) Record {
	rec := Record{
		Event: event, Kind: KindCall, CallID: r.ID, CallType: r.Type, Callee: r.Callee,
		SessionIDs: r.SessionIDs, SIPCallID: r.Data["sip_call_id"], VertoCallID: r.Data["verto_call_id"],
		Trunk:  r.Data["sip_trunk"],
		Caller: &Party{Name: r.Caller.Name, Number: r.Caller.ID, User: r.Caller.User, URI: r.Data["sip_from"]},
		Start:  tp(r.Start), Ringing: tp(r.Ringing), Answer: tp(r.Answer), End: tp(r.End),
		HangupBy: r.HangupBy, Code: r.Code, Reason: r.Reason, Outcome: r.Outcome,
	}
	if *rec.Caller == (Party{}) {
		rec.Caller = nil
	}
	rec.Duration, rec.Billable = durations(r.Start, r.Answer, r.End)
	return rec
}

// sessionRecord builds a session's record of event (kind session; a cdr when no call holds
// it).
func sessionRecord(event string, r signaling.SessionRecord) Record {
	rec := Record{
		Event: event, Kind: KindSession, SessionID: r.ID, SessionType: r.Type, Backend: r.Backend,
		User: r.User, CallID: r.CallID, Start: tp(r.Start), Answer: tp(r.Answer), End: tp(r.End),
		Code: r.Code, Reason: r.Reason, Legs: legs(r),
	}
	rec.Duration, rec.Billable = durations(r.Start, r.Answer, r.End)
	return rec
}

func durations(start, answer, end time.Time) (float64, int64) {
	if start.IsZero() || end.IsZero() {
		return 0, 0
	}
	d := math.Round(end.Sub(start).Seconds()*1000) / 1000
	var bill int64
	if !answer.IsZero() && end.After(answer) {
		bill = int64(math.Ceil(end.Sub(answer).Seconds()))
	}
	return d, bill
}

func legs(r signaling.SessionRecord) []Leg {
	var out []Leg
	for _, q := range r.Legs {
		l := Leg{SessionID: r.ID, Side: q.Side, Kind: q.Kind, Codec: q.Codec,
			PacketsIn: q.PacketsIn, PacketsOut: q.PacketsOut, Lost: q.Lost, JitterMS: round3(q.JitterMS)}
		if exp := q.PacketsIn + q.Lost; exp > 0 {
			l.LossPercent = round3(float64(q.Lost) * 100 / float64(exp))
		}
		if q.PacketsIn > 0 {
			l.RFactor, l.MOS = EModel(q.Codec, l.LossPercent, q.JitterMS)
		}
		out = append(out, l)
	}
	return out
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// EModel estimates the R-factor and MOS of a leg from its codec, packet loss (percent) and
// jitter (ms), after ITU-T G.107's simplified E-model: nkbridge cannot measure the one-way
// delay, so it counts a 20 ms packetisation, twice the jitter (a jitter buffer) and 10 ms of
// processing as delay; the codec's equipment impairment Ie and loss robustness Bpl come from
// ITU-T G.113 (G.711 with PLC: 0 and 25.1; Opus and G.722 taken as G.711; G.729: 11 and 19).
func EModel(codec string, lossPercent, jitterMS float64) (r, mos float64) {
	ie, bpl := 0.0, 25.1
	if strings.HasPrefix(strings.ToLower(codec), "g729") {
		ie, bpl = 11, 19
	}
	d := 20 + 2*jitterMS + 10
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ieEff := ie + (95-ie)*lossPercent/(lossPercent+bpl)
	r = 93.2 - id - ieEff
	r = math.Max(0, math.Min(100, r))
	switch {
	case r <= 0:
		mos = 1
	case r >= 100:
		mos = 4.5
	default:
		mos = 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	}
	return round3(r), math.Round(mos*100) / 100
}
