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
// Re-attach after a page reload (verto.attach) is not offered for calls through the media
// engine: it would need a fresh server offer for a new WebRTC leg of the same media session,
// and the engine can neither re-offer a WebRTC leg nor keep a session whose WebRTC peer closed
// DTLS (it stops the session, "Peer closed the media"). So the gateway's call events do not
// implement verto.Recoverable, and when a client's socket goes its calls end cleanly: before
// the answer with DESTINATION_OUT_OF_ORDER, after it with the far side hung up (2026 or 2130),
// and the reloaded page logs in again with nothing left behind. Making calls survive a reload
// needs, in package media, a WebRTC re-offer on an existing session and a detach grace in
// which a closed WebRTC leg does not stop the session; the verto package's Recoverable side is
// ready for it.
package vertogw
