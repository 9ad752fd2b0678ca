// Package peers runs the real peers of nkbridge's tests — SIPp and baresip — as child
// processes bound to a test's lifetime, plus the shared rules every real-peer test follows.
//
// Everything here stays on loopback: SIPp gets -i/-mi 127.0.0.1, baresip gets
// net_interface 127.0.0.1, a DNS server of 127.0.0.1:53 (nothing listens there, so a name
// lookup fails at once instead of leaving the machine) and no STUN/TURN.
package peers
