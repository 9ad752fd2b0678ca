package nkclient

import "context"

// StreamOptions are a live audio stream's options (docs/API.md "Audio streams").
type StreamOptions struct {
	URL           string         `json:"url"`                       // ws:// (loopback) or wss://; host in streams.allowed_hosts
	Mix           string         `json:"mix,omitempty"`             // mono (default), stereo, mixed
	SampleRate    int            `json:"sample_rate,omitempty"`     // 8000 (default) or 16000
	Bidirectional bool           `json:"bidirectional,omitempty"`   // the application's audio is played (bot sessions)
	Metadata      map[string]any `json:"metadata,omitempty"`        // in the start message
	Framing       string         `json:"framing,omitempty"`         // nkbridge (default) or twilio
	Reconnect     bool           `json:"reconnect,omitempty"`       // connect again after losing the application
	HangupOnClose bool           `json:"hangup_on_close,omitempty"` // the application leaving ends the session
}

// StartStream streams a session's audio to a WebSocket application and returns the stream's
// id (media/session/update with stream).
func (c *Client) StartStream(ctx context.Context, sessionID string, o StreamOptions) (string, error) {
	var r struct {
		StreamID string `json:"stream_id"`
	}
	err := c.Request(ctx, "media", "session", "update", map[string]any{"session_id": sessionID, "update_type": "media", "stream": o}, &r)
	return r.StreamID, err
}

// StopStream ends a session's streams.
func (c *Client) StopStream(ctx context.Context, sessionID string) error {
	return c.Request(ctx, "media", "session", "update", map[string]any{"session_id": sessionID, "update_type": "media", "stream": false}, nil)
}
