package wsapi

import (
	"context"

	"github.com/nkbridge/nkbridge/signaling"
)

// The stream option of media/session/update and media/call/start (docs/API.md "Audio
// streams"), through the session media's signaling.AudioStreamer capability.

// updateStream applies media/session/update's stream option: an object starts a stream (the
// reply has its stream_id), false stops the session's streams.
func (c *conn) updateStream(ctx context.Context, sessionID string, v any) (map[string]any, error) {
	st, err := signaling.MediaAs[signaling.AudioStreamer](c.srv.core, sessionID)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case bool:
		if x {
			return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream (want an object to start a stream, or false to stop)")
		}
		return nil, st.StopStream("")
	case map[string]any:
		meta, _ := c.srv.core.LookupSession(sessionID)
		info, err := st.StartStream(ctx, signaling.StreamRequest{Options: x, User: c.user, CallID: meta.CallID})
		if err != nil {
			return nil, err
		}
		return map[string]any{"stream_id": info.ID}, nil
	}
	return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream (want an object to start a stream, or false to stop)")
}

// callStream checks media/call/start's stream option and returns what starts it once the
// call exists (before it rings): a failure to connect hangs the call up with the reason.
func (c *conn) callStream(d callStartData, callee string) (func(callID string) error, error) {
	if d.Stream == nil {
		return nil, nil
	}
	if d.SessionID == "" {
		return nil, signaling.Errorf(signaling.CodeMissingField, "Missing field: session_id (a call's stream is its session's audio)")
	}
	st, err := signaling.MediaAs[signaling.AudioStreamer](c.srv.core, d.SessionID)
	if err != nil {
		return nil, err
	}
	req := signaling.StreamRequest{Options: d.Stream, User: c.user, From: d.CallerID, To: callee}
	if req.From == "" {
		req.From = c.user
	}
	if err := st.CheckStream(req); err != nil {
		return nil, err
	}
	return func(callID string) error {
		req.CallID = callID
		_, err := st.StartStream(c.srv.ctx, req)
		return err
	}, nil
}
