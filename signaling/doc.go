// Package signaling is nkbridge's domain core: error codes, offer/answer
// descriptors, the event bus, the session registry and its state machine, and
// the call router. Front ends (the WebSocket API in signaling/wsapi, SIP, Verto)
// drive it through Core; media backends plug in through the Backend interface
// and call targets through the Resolver and Invitee interfaces, all owned here.
package signaling
