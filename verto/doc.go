// Package verto is nkbridge's Verto server: FreeSWITCH mod_verto's JSON-RPC 2.0 over WebSocket
// protocol, so that Verto clients (@signalwire/js Verto, jquery.verto, vertojs) can log in, place
// calls into nkbridge and receive calls from it.
//
// The package owns the protocol (framing, ids, the auth gate, sessid sessions, detach and
// re-attach, rate limits) and talks to the rest of nkbridge only through the small interfaces it
// defines: [Authenticator] for logins, [CallHandler] for calls the client places, [CallEvents] for
// what the client does inside a call, and [Server.Invite] for calls the server places to a
// logged-in user. See /work/shared/spec/verto.md for the protocol reference it follows.
package verto
