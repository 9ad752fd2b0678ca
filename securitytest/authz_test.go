package securitytest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// bridgeBackend stands in for the FreeSWITCH backend's option handling
// (fsbridge.target): park and bridge sessions, where a bridge joins the
// session named by the "peer" or "peer_id" option, at start or by a
// session_type update. It records every peer it was asked to join.
type bridgeBackend struct {
	mu    sync.Mutex
	peers []string
}

func (b *bridgeBackend) joined() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.peers...)
}

func (b *bridgeBackend) bridge(opts map[string]any) {
	for _, k := range []string{"peer", "peer_id"} {
		if p, _ := opts[k].(string); p != "" {
			b.mu.Lock()
			b.peers = append(b.peers, p)
			b.mu.Unlock()
			return
		}
	}
}

func (b *bridgeBackend) StartMedia(_ context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	if req.Type == signaling.TypeBridge {
		b.bridge(req.Options)
	}
	return &bridgeMedia{b: b}, signaling.MediaResult{Answer: signaling.Desc{"sdp": "v=0 answer"}}, nil
}

type bridgeMedia struct{ b *bridgeBackend }

func (m *bridgeMedia) SetAnswer(context.Context, signaling.Desc) (signaling.Desc, error) {
	return nil, nil
}
func (m *bridgeMedia) Candidate(context.Context, signaling.Candidate) error { return nil }
func (m *bridgeMedia) Stop(*signaling.Error)                                {}
func (m *bridgeMedia) Update(_ context.Context, kind string, opts map[string]any) (map[string]any, error) {
	if kind == "session_type" && opts["session_type"] == signaling.TypeBridge {
		m.b.bridge(opts)
	}
	return nil, nil
}

// #13.1: a user cannot bridge to (or name in any option) another user's
// session, whatever option carries the id and whatever the backend.
func TestCallHijackByOptions(t *testing.T) {
	fs := &bridgeBackend{}
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, func(b *signaling.Backends) {
		b.Register("fs", fs, signaling.TypePark, signaling.TypeBridge)
	})
	alice, bob := login(t, e, "alice"), login(t, e, "bob")
	victim := alice.OK("media", "session", "start", map[string]any{"type": "park", "backend": "fs", "offer": rtpOffer()})["session_id"].(string)
	own := bob.OK("media", "session", "start", map[string]any{"type": "park", "backend": "fs", "offer": rtpOffer()})["session_id"].(string)

	for _, k := range []string{"peer", "peer_id"} {
		bob.Fail(signaling.CodeSessionNotFound, "media", "session", "start",
			map[string]any{"type": "bridge", "backend": "fs", "offer": rtpOffer(), k: victim})
		bob.Fail(signaling.CodeSessionNotFound, "media", "session", "update",
			map[string]any{"session_id": own, "type": "session_type", "session_type": "bridge", k: victim})
	}
	// Acting on the session itself, by any command.
	for _, cmd := range []string{"info", "stop", "set_answer", "set_candidate", "update"} {
		bob.Fail(signaling.CodeSessionNotFound, "media", "session", cmd,
			map[string]any{"session_id": victim, "type": "media", "answer": map[string]any{"sdp": "x"}, "candidate": "c"})
	}
	// A listener of another user's publisher, a room of another user.
	bob.Fail(signaling.CodeUnknownPublisher, "media", "session", "start", map[string]any{"type": "listen", "publisher_id": victim})
	alice.OK("media", "room", "create", map[string]any{"class": "mcu", "room_id": "alices", "private": true})
	bob.Fail(signaling.CodeRoomNotFound, "media", "session", "start", map[string]any{"type": "mcu", "room_id": "alices", "offer": rtpOffer()})
	if got := fs.joined(); len(got) != 0 {
		t.Fatalf("the backend was asked to bridge to %v", got)
	}
	// The owner may, and the session is untouched.
	bob.OK("media", "session", "update", map[string]any{"session_id": own, "type": "session_type", "session_type": "bridge", "peer_id": own})
	alice.OK("media", "session", "info", map[string]any{"session_id": victim})
	if got := fs.joined(); !slices.Equal(got, []string{own}) {
		t.Fatalf("bridged to %v, want only bob's own %s", got, own)
	}
	// An admin acts on anything.
	root := login(t, e, "root")
	root.OK("media", "session", "info", map[string]any{"session_id": victim})
	root.OK("media", "session", "stop", map[string]any{"session_id": victim})
}
