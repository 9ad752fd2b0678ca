package sipgw

import "github.com/nkbridge/nkbridge/signaling"

// MediaKind implements signaling.MediaKinder: a SIP device or URL can only
// use a plain-RTP offer, so when the core can adapt offers a WebRTC one is
// turned into RTP for it.
func (o *outInvitee) MediaKind() string { return "rtp" }

var _ signaling.MediaKinder = (*outInvitee)(nil)
