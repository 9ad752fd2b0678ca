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
// keep a session whose WebRTC peer closed DTLS (it stops it, "Peer closed the media"). The
// gateway therefore never ties a call's far side to the page's WebRTC leg (relay.go):
//
//   - a routed call uses two proxy sessions joined by a plain-RTP relay bound to the engine's
//     RTP address (a local address, loopback by default, so relayed packets stay on the host): the
//     page's leg session (WebRTC ⇄ RTP, the page's codec passed through) and the call's
//     session (RTP ⇄ the far side, linked to the router's call). When the page goes the leg
//     ends and the call waits; on re-attach a new leg session offers to the new page
//     (verto.attach) and is joined to the same relay port;
//   - an echo call is re-attached with new media: a proxy session offering to the new page
//     whose other side is a plain-RTP reflector (reattach.go);
//   - a call placed TO a Verto client (the client is an invitee) keeps its single session: the
//     client's WebRTC leg is the far side of the caller's proxy session, and the engine keeps
//     and re-offers that leg in place (reattach_out.go: after the answer a close of the page's
//     PeerConnection is deferred by a few seconds; Detached detaches the leg for
//     Config.DetachGrace; verto.attach carries the engine's new offer for it, and the new
//     page's answer replaces the old leg, restoring the hold state).
//
// The cost is one more engine session (and two local RTP sockets) per routed call. When the
// engine's RTP address is not an address of this host (a NAT public_ip) nothing is relayed:
// routed calls then use one proxy session and end when their page goes. Not kept either:
// calls not answered yet (DESTINATION_OUT_OF_ORDER, as mod_verto), calls without a media
// backend (p2p), other extensions (park, conferences: their backend owns the leg), and calls
// placed TO a Verto client whose offer was adapted for it (a plain-RTP caller: the client's
// leg is then the far side of the router's auxiliary session, which the gateway cannot
// reach) or whose caller's session is not an embedded WebRTC⇄WebRTC proxy; those end with
// NORMAL_CLEARING (2130) when the page goes.
package vertogw
