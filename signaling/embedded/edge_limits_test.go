package embedded_test

import (
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// TestEdgeRecordStoppedEvent (issue 13.11): through the API, a recording that reaches
// media.record_max_duration stops with a media/session/info event naming the setting, and the
// session stays up.
func TestEdgeRecordStoppedEvent(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.RecordMaxDuration = 300 * time.Millisecond })
	c := dialAPI(t, e, "alice")
	peer := newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := r["session_id"].(string)
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "record": true}); err != nil {
		t.Fatal(err)
	}
	var reason string
	c.Event(nkclient.Selector{Type: "info", ObjID: id}, func(body map[string]any) bool {
		info, _ := body["info"].(map[string]any)
		reason, _ = info["reason"].(string)
		return info != nil && info["record_stopped"] != nil
	})
	if !strings.Contains(reason, "media.record_max_duration") {
		t.Fatalf("reason %q", reason)
	}
	if _, err := c.media("session/info", map[string]any{"session_id": id}); err != nil {
		t.Fatalf("the session went with its recording: %v", err)
	}
}

// TestEdgeRTPPortsPerUser (issue 13.6): the API user's sessions count against
// media.rtp_ports_per_user; the refusal names the setting; another user is unaffected.
func TestEdgeRTPPortsPerUser(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.RTPPortsPerUser, c.RTPPortsReserve = 2, -1 })
	alice, bob := dialAPI(t, e, "alice"), dialAPI(t, e, "bob")
	start := func(c *apiClient) error {
		_, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": newRTPPeer(t).SDP(""), "sdp_type": "rtp"}})
		return err
	}
	for range 2 {
		if err := start(alice); err != nil {
			t.Fatal(err)
		}
	}
	err := start(alice)
	if codeOf(err) != signaling.CodeInvalidOperation || !strings.Contains(err.Error(), "media.rtp_ports_per_user") {
		t.Fatalf("third session of one user: %v", err)
	}
	if err := start(bob); err != nil {
		t.Fatalf("another user: %v", err)
	}
}
