// Package embedded adapts nkbridge's embedded media engine (package media) to the
// control API: its Backend implements signaling.Backend for the session types echo
// and proxy, and, after Backend.EnableRooms, publish, listen, park and mcu on the
// engine's rooms (package media/room; the returned Rooms is the signaling.RoomProvider
// of sfu and mcu rooms — see rooms.go).
//
// # Sessions
//
//   - echo: the client's offer (sdp_type "webrtc" or "rtp") is answered at once; the
//     client hears itself.
//   - proxy: the client's offer (WebRTC, or plain RTP for calls that arrive by SIP)
//     yields nkbridge's offer for the far side. The far side's kind is the start
//     request's "proxy_type" (or a top-level "sdp_type"), "webrtc" (default) or "rtp".
//     The far offer carries the caller's caller_name/caller_id/callee_name/callee_id.
//     set_answer (or an answered call) takes the far side's answer, whose sdp_type must
//     match the far offer's (absent: that kind is assumed), and returns the answer for
//     the caller.
//
// The offer's use_audio, use_video, bitrate and record are the initial media options
// (for a proxy they apply once the far side answered). update kind "media" takes
// {use_audio, use_video, bitrate, record, hold}; with record
// true the reply is {record_paths: [...]} (WAV files, one per side, in the configured
// record folder) and media/session/info {info: {record_paths}} is published. A recording
// that reaches media.record_max_bytes or media.record_max_duration stops (the session goes
// on) with media/session/info {info: {record_stopped: [paths], reason}}, the reason naming
// the setting.
// set_candidate / set_candidate_end trickle candidates of the API client's WebRTC leg
// (the caller side; a far WebRTC side must send a complete SDP). DTMF received from
// either side (RFC 4733) is published as media/session/info {info: {dtmf, side}}.
//
// When the engine stops a session on its own, the session stops with:
//
//	media timeout (no RTP for N s, never while held)  1005 "Media timeout: no RTP from caller for 30s"
//	ICE or DTLS failure                                9999 "ICE failed: ... (far)" / "DTLS failed: ..."
//	the WebRTC peer closed DTLS                        2026 "Peer closed the media: ... (caller)"
//	engine shutdown                                    1061 "Media engine stopped"
//
// # Capabilities
//
// A session's *Media implements the capability interfaces of package signaling, which the
// SIP and Verto front ends reach through signaling.MediaAs (never through this package):
// signaling.DTMFSender (RFC 4733 toward a side), DTMFObserver (digits received),
// RTPReofferer (a SIP re-INVITE's offer: hold, resume, a new address) and Reattacher (a
// WebRTC peer that lost its PeerConnection, a Verto page reload: DeferPeerClose, Detach, then
// ReattachOffer/ReattachAnswer give the side a new leg in place on the engine's re-offer,
// while the other side, the echo or the call carry on; either side of an echo or proxy session
// can be re-attached when it is WebRTC). Sides are signaling.SideCaller (the party whose offer
// started the session) and signaling.SideFar (the proxy's far side).
package embedded
