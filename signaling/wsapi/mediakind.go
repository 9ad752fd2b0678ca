package wsapi

import "github.com/nkbridge/nkbridge/signaling"

// MediaKind implements signaling.MediaKinder: the kind of offer an API
// connection is rung with when the core can adapt offers. API clients are
// browsers by default ("webrtc"); a client declares otherwise at login with
// meta {"media_kind": "rtp"}, or "any" to get every call's offer as is.
func (i *invitee) MediaKind() string {
	c := i.c
	c.mu.Lock()
	k, _ := c.meta["media_kind"].(string)
	c.mu.Unlock()
	switch k {
	case "rtp":
		return "rtp"
	case "any":
		return ""
	}
	return "webrtc"
}

var _ signaling.MediaKinder = (*invitee)(nil)
