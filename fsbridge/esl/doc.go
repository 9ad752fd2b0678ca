// Package esl is a client for FreeSWITCH's Event Socket (mod_event_socket) in inbound mode:
// it reads and writes ESL frames, parses plain and json events, authenticates, runs api and
// bgapi commands, subscribes to events, sends sendmsg requests, and (with Client) keeps a
// connection alive across FreeSWITCH restarts, reconciling live channels after each reconnect.
//
// Wire rules follow shared/spec/esl.md. The important invariants:
//
//   - command/reply and api/response frames answer commands in the order they were sent, so
//     every Conn keeps a FIFO of pending requests; one write mutex covers "enqueue + write".
//   - Events never block the reader: they go to a bounded queue drained by one dispatcher
//     goroutine. When the queue is full the event is dropped and counted (FreeSWITCH itself
//     would otherwise kill the listener for falling behind); once the queue has drained the
//     OnEventsLost hook is told how many were lost so the application can resynchronise
//     (Client does that by running its Reconcile hook again).
//   - A command whose context expires returns a wrapped context error immediately; its FIFO
//     slot stays so the late reply is consumed. If that reply has still not arrived after
//     Options.StallTimeout, FreeSWITCH is considered wedged and the connection is closed on
//     purpose (ErrStalled); Client then reconnects.
//   - Everything that reaches a command line or a header is validated: CR, LF and other
//     control characters are always rejected, UUIDs must be canonical, and names that end up
//     inside FreeSWITCH syntax (rooms, profiles, applications, layouts) use strict charsets.
package esl
