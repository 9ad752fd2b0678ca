// Package verto is nkbridge's Verto server: FreeSWITCH mod_verto's JSON-RPC 2.0 over WebSocket
// protocol, so that Verto clients (@signalwire/js Verto, jquery.verto, vertojs) can log in, place
// calls into nkbridge and receive calls from it.
//
// The package owns the protocol (framing, ids, the auth gate, sessid sessions, detach and
// re-attach, size and rate limits) and talks to the rest of nkbridge only through the small
// interfaces it defines:
//
//   - [Authenticator] checks logins (the user store shared with the control API);
//   - [CallHandler] receives calls the client places (client verto.invite) and gets a [*Call]
//     handle to send early media, the answer, display updates and the hangup;
//   - [CallEvents] (and optionally [Recoverable]) receive what the client does in a call:
//     DTMF, hold, hangup, and the re-attach after a reconnect;
//   - [Server.Invite] places a call to a logged-in user ([OutboundEvents] gets the answer or
//     the rejection); [Server.Sessions] lists a user's live logins for the router.
//
// Wiring, in short:
//
//	srv, err := verto.New(verto.Config{}, auth, handler, logger) // 127.0.0.1:8081 by default
//	go srv.ListenAndServe(ctx)                                   // or mount srv (an http.Handler)
//	defer srv.Close()
//
// See /work/shared/spec/verto.md for the protocol reference it follows; the package's tests run
// the real @signalwire/js 1.5.0 client in Chromium against it.
package verto
