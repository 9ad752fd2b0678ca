package signaling

import (
	"context"
	"time"
)

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

// CallTypeBot is the call type of calls to bots: callee is a bot's name (streams.bots).
const CallTypeBot = "bot"

// BotPrefix is how a callee names a bot when the call type is not given ("bot-support").
const BotPrefix = "bot-"

// BotResolver makes calls of type bot (callee: the bot's name, or bot-<name>) and calls of
// no type to bot-<name> ring a bot: the invitee starts a bot session on the call's offer and
// accepts with its answer, the session linked to the call. The offer must be one the bot
// session can answer: a browser's own WebRTC offer (a call without session_id) or a proxy
// session's plain-RTP far offer (proxy_type rtp).
func BotResolver(c *Core) Resolver {
	return ResolverFunc(func(_ context.Context, d Destination) ([]Invitee, error) {
		name := d.Callee
		if len(name) > len(BotPrefix) && equalFoldPrefix(name, BotPrefix) {
			name = name[len(BotPrefix):]
		} else if d.Type != CallTypeBot {
			return nil, nil
		}
		if !ValidID(name) {
			return nil, Errorf(CodeNoDestination, "No destination: bad bot name %q", name)
		}
		return []Invitee{&botInvitee{c: c, name: name}}, nil
	})
}

func equalFoldPrefix(s, prefix string) bool {
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// botInvitee is a bot a call rings: it answers at once with a bot session.
type botInvitee struct {
	c    *Core
	name string
}

func (b *botInvitee) Invite(_ context.Context, inv Invitation, h InviteHandle) error {
	if len(inv.Offer) == 0 || inv.Offer.SDP() == "" {
		return Errorf(CodeMissingOffer, "Missing offer: a bot answers an offer")
	}
	if !b.c.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := b.c.StartSession(ctx, SessionRequest{Type: TypeBot, Offer: inv.Offer, User: inv.Caller.User,
			Options: map[string]any{"bot": b.name}})
		if err != nil {
			h.Rejected(AsError(err))
			return
		}
		if err := h.Accepted(res.Answer, res.SessionID); err != nil {
			_ = b.c.StopSession(res.SessionID, AsError(err))
		}
	}) {
		return Errorf(CodeSessionStop, "Server stopping")
	}
	return nil
}

// Hangup: the bot session is linked to the call and stops with it.
func (b *botInvitee) Hangup(*Error) {}
