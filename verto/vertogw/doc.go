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
//     media (signaling.DTMFSender; a session without it, p2p, gets a media/session/info
//     event instead), the digits the media receives from the far side (RFC 4733, or in-band
//     tones of a far side without telephone-event) go to a calling client as verto.info too
//     (signaling.DTMFObserver; dtmfinfo.go), verto.modify hold/unhold holds the media, and
//     caller-id updates carried by the answer are shown with verto.display.
//
// The gateway imports only package signaling and the Verto server: every session's media is
// reached through the core's capabilities (signaling.MediaAs), whichever backend serves it.
//
// Re-attach after a page reload (verto.attach, reattach.go) is done by the session's media in
// place (signaling.Reattacher): the client's WebRTC leg is the caller side of the session its
// own call started (an extension such as echo, or the proxy of a routed call) or the far side of the caller's proxy
// session for a call placed to it. After the answer a close of the page's PeerConnection ends
// the session only after a few seconds; Detached detaches the leg for Config.DetachGrace;
// verto.attach carries the media's new offer for it, and the new page's answer replaces the
// old leg, restoring the hold state. The session, the router's call and the other party never
// notice. Not kept (they end with NORMAL_CLEARING when the page goes, as without re-attach):
// calls not answered yet (DESTINATION_OUT_OF_ORDER, as mod_verto), calls whose media cannot
// re-attach the leg (p2p without a media backend, park and conference rooms of the embedded
// engine, whose legs belong to the room, sessions on a backend without signaling.Reattacher) and calls placed TO a Verto client whose offer was
// adapted for it (a plain-RTP caller: the client's leg is then the far side of the router's
// auxiliary session, not of the caller's).
//
// A re-attached leg carries the page's audio as the old one did (the browser tests check the
// level, in dBFS, before and after a reload). The SW client (@signalwire/js 1.5.0) however
// opens the microphone of every call it answers, re-attached ones included, with Chromium's
// default processing whatever its audio settings say (its answer constraints drop them), so
// after a reload a page that had turned noise suppression and gain control off is heard
// quieter (a steady tone by about 19 dB) unless it swaps the track back
// (RTCRtpSender.replaceTrack with its own getUserMedia), as the tests do.
package vertogw
