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
// Re-attach after a page reload (verto.attach) needs a fresh server offer for the new page's
// PeerConnection. The embedded media engine can neither re-offer a WebRTC leg of a session nor
// keep a session whose WebRTC peer closed DTLS (it stops it, "Peer closed the media"), so:
//
//   - echo calls are re-attached with new media: a proxy session whose far side is the new page
//     (the engine's offer goes out in verto.attach) and whose other side is a plain-RTP
//     reflector on 127.0.0.1 in this package, so the page hears itself again (reattach.go);
//   - routed calls (to users, SIP, Verto) are not kept: their far side is bound to the old
//     session, so when the page goes the call ends cleanly (DESTINATION_OUT_OF_ORDER before
//     the answer; after it the far side gets the hangup, 2026 or 2130) and the reloaded page
//     logs in again with nothing left behind. Keeping them needs, in package media, a WebRTC
//     re-offer on an existing session and a grace in which a closed WebRTC leg does not stop
//     the session; the verto package's Recoverable side is ready for it.
package vertogw
