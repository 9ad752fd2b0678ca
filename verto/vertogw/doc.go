// Package vertogw is the glue that makes Verto clients first-class parties of nkbridge's call
// router: it connects the Verto server (package verto, which stays free of the signaling core)
// to signaling.Core.
//
//   - [Auth] is the verto.Authenticator over the control API's user store (the same users and
//     the same "no users configured: any login, loopback only" rule, logged loudly).
//   - [Gateway] is the verto.CallHandler: a client's verto.invite is routed by its
//     destination_number ([Config.Route]): configured extensions (echo, park, conf-<room>)
//     become sessions of that type; "sip:"/"sip-", "verto:"/"verto-" and plain user names
//     become a proxy session (WebRTC towards the client, WebRTC or plain RTP towards the far
//     side) plus a call through the router, whose progress comes back as verto.media,
//     verto.answer and verto.bye.
//   - [Gateway.Attach] registers the "verto" call type and contributes every Verto login of a
//     user to the "user" call type, so API connections, SIP devices and Verto logins ring in
//     parallel; the client's verto.answer accepts the call, its verto.bye rejects or hangs up.
//   - In a call, verto.info DTMF is sent to the other side as RFC 4733 through the session's
//     media ([Media]), verto.modify hold/unhold holds the media, and caller-id updates carried
//     by the answer are shown with verto.display.
//
// Re-attach after a page reload (verto.attach) needs a fresh server offer for a new WebRTC
// leg of the same media session. The embedded media engine cannot re-offer a WebRTC leg, so
// calls through it are not kept across reconnects: when the client's socket goes, its calls
// end (DESTINATION_OUT_OF_ORDER before answer, the socket's loss after it) and the far side
// is hung up. A [Media] implementation that also implements [Reofferer] makes calls survive a
// reconnect within the Verto server's DetachGrace.
package vertogw
