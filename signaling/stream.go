package signaling

import "context"

// TypeBot is the session type of a call answered by a stream application (a voice bot): the
// caller's audio goes to the application over a WebSocket and the application's audio comes
// back (docs/API.md "Audio streams"). A SIP or Verto call to bot-<name> starts one for the
// configured bot <name>.
const TypeBot = "bot"

// AudioStreamer streams a session's live audio to an application over a WebSocket (speech
// recognition, voice bots, analytics), and with bidirectional plays what the application
// sends back into the session.
type AudioStreamer interface {
	// CheckStream validates req (options, allow-lists) without connecting; the errors name
	// the setting that refuses it.
	CheckStream(req StreamRequest) error
	// StartStream connects to the application and starts the stream; it returns once the
	// application's WebSocket is open and the start message sent. The stream ends with the
	// session, by StopStream, or when the application leaves (media/session/info
	// {info: {stream: "stopped", ...}}; the session too with hangup_on_close).
	StartStream(ctx context.Context, req StreamRequest) (StreamInfo, error)
	// StopStream ends the session's stream id ("": all of them).
	StopStream(id string) error
}

// StreamRequest asks for a stream.
type StreamRequest struct {
	// Options is the API's stream object: url, mix (mono, stereo, mixed), sample_rate (8000,
	// 16000), bidirectional, metadata, framing (nkbridge, twilio), reconnect, hangup_on_close.
	Options map[string]any
	// User is the API user asking (checked against streams.allowed_users).
	User string
	// CallID, From and To describe the call for the start message, when known.
	CallID, From, To string
}

// StreamInfo describes a started stream.
type StreamInfo struct {
	ID string // stream_id (Twilio framing: streamSid)
}
