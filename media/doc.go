// Package media is nkbridge's embedded media engine: WebRTC endpoints (pion/webrtc, all peers on
// one ICE UDP mux port, optional ICE-TCP, ICE-lite, NAT 1:1), plain RTP endpoints (package
// plainrtp), and the bridge between any two of them — passthrough when both sides share a codec,
// Opus⇄G.711 transcoding when they don't, RFC 4733 telephone-events translated between payload
// types, in-band DTMF found in the audio of peers without telephone-event (inband.go), media
// timeouts, recording.
//
// An Engine is created once per process. Sessions are started from an SDP offer:
//
//   - StartEcho answers an offer and sends the caller's media back to it.
//   - StartProxy takes a caller's offer and returns an offer for a far side (WebRTC or plain RTP);
//     Session.SetAnswer takes the far side's answer and returns the answer for the caller.
//
// A running session is renegotiated in place: Session.ReofferRTP applies a plain-RTP peer's
// re-offer (hold, resume, a new address), and a WebRTC side whose peer lost its
// PeerConnection (a page reload) is kept (Detach) and given a new leg (ReofferWebRTC, then
// SetReofferAnswer: reattach.go) while the rest of the session carries on.
//
// The package knows nothing of the control API; an adapter maps sessions onto it.
package media
