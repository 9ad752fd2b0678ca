package signaling

// Names of the control API that the core and the front ends share (spec §5): event classes,
// subclasses and types, call types, update kinds and the states of sessions and calls.

// Event classes.
const (
	ClassCore  = "core"
	ClassMedia = "media"
)

// Event subclasses of class media.
const (
	SubclassSession = "session"
	SubclassCall    = "call"
	SubclassRoom    = "room"
)

// Event types of media/session and media/call (answer is both).
const (
	EventAnswer      = "answer"
	EventStop        = "stop"
	EventInfo        = "info"
	EventCandidate   = "candidate"
	EventUpdatedType = "updated_type"
	EventRinging     = "ringing"
	EventAccepted    = "accepted"
	EventRejected    = "rejected"
	EventHangup      = "hangup"
)

// Call types: the kinds of destination a call reaches (Destination.Type, AddResolver).
const (
	CallTypeUser    = "user"    // a user's API connections, SIP devices and Verto logins
	CallTypeSession = "session" // an existing session
	CallTypeSIP     = "sip"     // a SIP URL
	CallTypeVerto   = "verto"   // a Verto user's logins
)

// Update kinds of Core.UpdateSession (Media.Update).
const (
	UpdateMedia        = "media" // {use_audio, use_video, bitrate, record, hold}
	UpdateListenSwitch = "listen_switch"
	UpdateSessionType  = "session_type"
	UpdateMCULayout    = "mcu_layout"
)

// Session states (SessionMeta.State, media/session/info).
const (
	SessionStarting = "starting"
	SessionWait     = "wait"
	SessionReady    = "ready"
)

// Call states (CallMeta.State, media/call/info).
const (
	CallNew      = "new"
	CallRinging  = "ringing"
	CallAnswered = "answered"
	CallEnded    = "ended"
)

// StopError is the error a media/session/stop or media/call/hangup event body carries ({code,
// reason}; code as published, or as decoded from JSON).
func StopError(body map[string]any) *Error {
	var code int
	switch n := body["code"].(type) {
	case int:
		code = n
	case float64:
		code = int(n)
	}
	reason, _ := body["reason"].(string)
	return Errorf(code, "%s", reason)
}
