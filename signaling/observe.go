package signaling

// Observer is told when sessions and calls start and end, for metrics. The
// Core calls it outside its lock; methods must be quick, must not block and
// must not call back into the Core. Options.Observer nil: nobody is told.
type Observer interface {
	// SessionStarted: session id of type typ was created on backend ("" for p2p).
	SessionStarted(id, typ, backend string)
	// SessionStopped: session id of type typ ended with code (after it started).
	// It is called before the session's media is released, so the backend
	// can still be asked for its figures.
	SessionStopped(id, typ string, code int)
	// CallStarted: a call to target type typ ("user", "sip", ... or "") was registered.
	CallStarted(typ string)
	// CallAnswered: an invitee accepted the call.
	CallAnswered(typ string)
	// CallEnded: the call ended; outcome is one of the Outcome* constants.
	CallEnded(typ, outcome string, code int)
}

// Call outcomes reported to Observer.CallEnded.
const (
	OutcomeAnswered      = "answered"       // the call was answered (then hung up)
	OutcomeRejected      = "rejected"       // every invitee declined (2021)
	OutcomeNoAnswer      = "no_answer"      // ring timeout (2023)
	OutcomeNoDestination = "no_destination" // nobody to ring (2022, or the resolvers' error)
	OutcomeCancelled     = "cancelled"      // the caller (or the server) ended it before an answer
)

// callOutcome classifies how a call ended.
func callOutcome(answered bool, code int) string {
	switch {
	case answered:
		return OutcomeAnswered
	case code == CodeCallRejected:
		return OutcomeRejected
	case code == CodeNoAnswer:
		return OutcomeNoAnswer
	case code == CodeNoDestination:
		return OutcomeNoDestination
	}
	return OutcomeCancelled
}

// Stats is a snapshot of what the Core holds, for gauges.
type Stats struct {
	// Sessions counts sessions by type, then state ("starting", "wait", "ready").
	Sessions map[string]map[string]int
	// Calls counts calls by state ("new", "ringing", "answered").
	Calls    map[string]int
	Draining bool
}

// Stats returns a snapshot of the sessions and calls by type and state.
func (c *Core) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{Sessions: map[string]map[string]int{}, Calls: map[string]int{}, Draining: c.draining}
	for _, s := range c.sessions {
		m := st.Sessions[s.typ]
		if m == nil {
			m = map[string]int{}
			st.Sessions[s.typ] = m
		}
		m[sessionStateName(s.state)]++
	}
	for _, cl := range c.calls {
		st.Calls[callStateName(cl.state)]++
	}
	return st
}

// Draining reports whether Drain was called (new sessions and calls are refused).
func (c *Core) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

func sessionStateName(s int) string {
	switch s {
	case stateStarting:
		return SessionStarting
	case stateReady:
		return SessionReady
	}
	return SessionWait
}

func callStateName(s int) string {
	switch s {
	case callNew:
		return CallNew
	case callAnswered:
		return CallAnswered
	case callEnded:
		return CallEnded
	}
	return CallRinging
}
