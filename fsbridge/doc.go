// Package fsbridge is nkbridge's FreeSWITCH backend: it serves the session types park,
// echo, mcu and bridge on a FreeSWITCH that nkbridge controls over the Event Socket
// (package esl).
//
// A session's media reaches FreeSWITCH as plain RTP over SIP from the embedded media
// engine (SIPDialer): the client's offer becomes a media proxy session whose far side
// is a plain-RTP call to FreeSWITCH's nkbridge SIP profile, carrying the session id in
// the header X-NKB-Session. The shipped dialplan (testdata/freeswitch) answers and parks
// that call; the Backend finds the channel through its events (the channel variable
// sip_h_X-NKB-Session, and sip_h_X-NKB-Leg, a token of that one call) and moves it with
// "uuid_transfer <uuid> <app> inline" where app is park, echo or
// conference:<room>@<profile>, or "uuid_bridge" for bridge. A session update moves it
// again, mcu_layout sets the conference's video layout. When FreeSWITCH's channel ends
// the session stops with 2302 fs_channel_stop; when the session stops, the channel is
// killed and the call hung up. The Backend is also the signaling.RoomProvider of its mcu
// rooms; conference membership events become room events (media/room/started_member,
// stopped_member, talking) and session info events.
//
// After every Event Socket (re)connection and after lost events, Reconcile compares
// FreeSWITCH's channels with the sessions: a session whose channel vanished stops, an
// nkbridge channel that no session owns is killed (or adopted by the session still
// waiting for it), and a channel that left its application is moved back. FreeSWITCH's
// "show channels" lags the channels, so absence is confirmed with uuid_exists and a
// channel's application with its current_application variable, and the table is read
// again for a while for what it showed too late.
//
// Start wires it all for the daemon: an esl.Client, a SIPDialer and the Backend.
package fsbridge
