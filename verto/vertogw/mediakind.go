package vertogw

import "github.com/nkbridge/nkbridge/signaling"

// MediaKind implements signaling.MediaKinder: a Verto login is a browser,
// so when the core can adapt offers a plain-RTP one is turned into WebRTC
// for it (Invite refuses any other).
func (iv *invitee) MediaKind() string { return "webrtc" }

var _ signaling.MediaKinder = (*invitee)(nil)
