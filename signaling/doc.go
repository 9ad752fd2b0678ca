// Package signaling is nkbridge's domain core: error codes, offer/answer
// descriptors, the event bus, the session registry and its state machine, and
// the call router. Front ends (the WebSocket API in signaling/wsapi, SIP,
// Verto) drive it through Core; media backends plug in through the Backend
// interface and call targets through the Resolver and Invitee interfaces, all
// owned here so that nothing in this package imports a front end or backend.
//
// Plugging in:
//
//   - A media backend implements Backend (StartMedia returns a Media) and is
//     registered with Backends.Register(name, b, sessionTypes...). It reports
//     media death with MediaRequest.Reporter.Stopped and publishes room
//     events with Bus.Publish.
//   - A call target implements Resolver (destination → invitees) and Invitee
//     (Invite/Hangup; progress through the InviteHandle) and is registered
//     with Core.AddResolver(callType, r); several resolvers may serve one
//     type ("user": API connections, SIP registrations, Verto logins). With
//     an empty Destination.Type every resolver is asked, so a resolver should
//     return nothing for callees it does not recognise.
//   - An inbound front end (SIP INVITE, verto.invite) calls Core.StartSession
//     with an Owner key, then Core.StartCall with SessionID, Caller.Owner and
//     a CallObserver; it ends them with Core.HangupCall / Core.StopSession /
//     Core.StopOwned.
package signaling
