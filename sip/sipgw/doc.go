// Package sipgw is the glue between nkbridge's SIP stack (package sip) and
// its domain core (package signaling): it routes inbound INVITEs to sessions
// and calls (configured extensions such as echo, park and conf-<room>, the
// sip:/verto: prefixes, users), and it is the call target for SIP URLs and
// for the devices registered with the SIP registrar.
//
// Inbound: a Gateway is the sip.CallHandler. An INVITE whose Request-URI
// user is an extension starts a session of that type answering the caller's
// plain-RTP offer; otherwise it starts a proxy session (caller RTP, far side
// WebRTC for users and Verto, RTP for SIP URLs) and a call through the core's
// router, answering 180 while invitees ring, 200 with the session's answer
// when one accepts and a fitting SIP failure (404, 480, 486, 488, ...) when
// none does. CANCEL and BYE stop the session and the call.
//
// Outbound: the gateway registers resolvers for call types "sip" (a SIP URL,
// checked with sip.Server.Authorize: only users allowed to call SIP URLs, only
// to allowed domains or trunks; an AOR of our own domain rings its registered
// contacts) and "user" (one invitee per registered contact of the user, ringing
// in parallel with the user's API connections). Each invitee dials with the
// invitation's offer: 180/183 become ringing (a 183's SDP is the early answer
// the router passes to the caller: signaling/early.go), 200 acceptance, 3xx–6xx
// a rejection whose text keeps the SIP status ("486 Busy Here"), a remote BYE a
// hangup with 2110 sip_bye.
//
// In dialog: re-INVITEs (hold/resume) and DTMF are passed to the session's
// media through the capabilities of package signaling (signaling.MediaAs:
// RTPReofferer, DTMFSender, DTMFObserver), whichever backend serves the
// session, so that hold stops the media timeout and SIP INFO digits are played
// as RFC 4733 toward the other side (and the other way round).
package sipgw
