// Package cluster makes several nkbridge nodes act as one over NATS. It plugs into
// signaling's seams like any other backend: a Directory and Resolvers that find users on other
// nodes (presence in a JetStream key-value bucket), Invitees that forward a call's
// invite/ringing/accepted/rejected/hangup to the node holding the callee, and the handling of
// the same messages for calls placed on other nodes. Media never crosses nodes: a session
// lives on the node where it started and its SDP names that node. With cluster.nats_url empty
// the package is not wired at all.
//
// What crosses NATS (prefix = Config.Prefix, "nkb" by default):
//
//   - Bucket <prefix>_nodes: one key per live node (its node_id), value a nodeRecord (JSON,
//     "v":1). The bucket's TTL is presence_ttl and each node rewrites its key every third of
//     it: a node killed with SIGKILL disappears within presence_ttl. A node starting with a
//     node_id whose key exists refuses to start.
//   - Bucket <prefix>_presence: one key per contact of a user (an API login, a Verto login,
//     a SIP registration): <node>.<base64url(user)>.<kind>.<base64url(contact id)>, value the
//     contact (JSON, "v":1). Readers ignore the keys of nodes that are not alive; a node's
//     keys are deleted when it stops, by itself, and by the others when it is lost.
//   - Subject <prefix>.v1.node.<node>.<kind>: requests and messages for one node: kind
//     "invite" (ring the callee's contacts on that node for a call placed elsewhere; a
//     request), "progress" (ringing, accepted (a request: the first acceptance wins),
//     rejected, hangup of a forwarded invitation, to the caller's node) and "hangup" (the
//     caller's node ends the forwarded invitation).
//
// A call costs O(1) NATS messages whatever the cluster's size: one presence lookup for user
// calls, then messages only between the caller's node and the nodes that hold the callee.
//
// Every message is a JSON object with "v" (the protocol version, 1), "kind" and "from" (the
// sender's node_id). A node drops, with a log line, messages of another version, of an
// unknown kind, from itself, or that do not decode.
//
// Failures: a node whose key expires is lost: calls ringing its users end with 2040
// node_lost (when no other invitee is left), calls whose caller was on it end with 2040 too.
// While NATS is unreachable each node serves its own clients; lookups and forwarded
// requests fail at once (2041 cluster_unavailable); on reconnect the node rewrites its node
// key and its contacts.
package cluster
