// Package cluster makes several nkbridge nodes act as one over NATS. It plugs into
// signaling's seams like any other backend: a Directory and Resolvers that find users on other
// nodes (presence in a JetStream key-value bucket), Invitees that forward a call's
// invite/ringing/accepted/rejected/hangup to the node holding the callee, a Remote that runs
// session and call commands on the node holding the object, and an event bridge. Media never
// crosses nodes: a session lives on the node where it started and its SDP names that node.
// With cluster.nats_url empty the package is not wired at all.
//
// What crosses NATS (prefix = Config.Prefix, cluster.subject_prefix, "nkb" by default):
//
//   - Bucket <prefix>_nodes (memory storage, TTL presence_ttl): one key per live node (its
//     node_id), value a nodeRecord {v, node, instance, started, draining}. Each node rewrites
//     its key every third of presence_ttl, so a node killed with SIGKILL disappears within
//     presence_ttl; the others notice at their next heartbeat (node lost). A node starting
//     with a node_id whose key exists refuses to start.
//   - Bucket <prefix>_presence (memory storage): one key per contact of a user on a node
//     (signaling.Contact: an API login, a Verto login, a SIP registration),
//     <node>.<base64url(user)>.<kind>.<base64url(contact id)>, value {v, user, kind, id, info}.
//     Readers ignore the keys of nodes that are not alive; a node deletes its keys when it
//     stops and when it starts (a former life), the others when it is lost.
//   - <prefix>.v1.node.<node>.invite (request), .progress (ringing, rejected, hangup; accepted
//     is a request: the first acceptance wins) and .hangup: a call placed on one node ringing a
//     user's contacts on another. The callee's node runs the call with its own resolvers
//     (API connections, Verto logins, SIP registrations: calls to a phone leave through the
//     node that holds its registration) as a call of its core owned by "cluster:<caller's
//     node>"; one invitation per node, whatever the number of contacts there.
//   - <prefix>.v1.obj.<session|call>.<id token>: every node subscribes for each session and
//     call it holds (interest only, no message). A command by id for an object not held
//     here (info, stop, update, set_answer, set_candidate[_end], call hangup and info) is a
//     request there, run by the holder's API handlers under its ownership rules for the
//     requesting user; "no responders" is 1062 / 2020.
//     Rooms (media/room/info) likewise, the holder following its rooms at each heartbeat.
//   - <prefix>.v1.list (request to every node): media/session/list, media/call/list and
//     media/room/list.
//   - <prefix>.v1.ev.<class>.<subclass>.<type>.<obj_id>: every event of a node's bus; each node
//     subscribes to the selectors of its own subscriptions, "*" as a NATS wildcard, and
//     publishes what arrives on its bus once. Tokens other than [A-Za-z0-9_-]+ travel as "~"
//     and their base64url ("" is "~").
//
// Requests to one node and events cost O(1) messages per call whatever the cluster's size:
// a presence read for user calls, then invite, ringing, accepted, hangup between the
// caller's node and each node holding the callee (TestMessagesPerCall counts them). Only
// lists and user lookups concern every node.
//
// Every message is a JSON object with "v" (the protocol version, 1), "kind" and "from" (the
// sender's node_id); records in buckets carry "v" too. A node drops, with a log line,
// messages of another version, of another kind than their subject's, from itself, or that do
// not decode (FuzzDecodeMessage); requests are answered with an error.
//
// Failures: a lost node's invitations end with 2040 node_lost (a call with no invitee left
// ends with 2040), calls its users placed end on the callee's node with 2040, and the
// subscribers of its sessions and calls elsewhere get their stop / hangup with 2040. While
// NATS is unreachable each node serves its own clients; lookups and forwarded requests fail
// at once (2041 cluster_unavailable); on reconnect the node makes the buckets again if the
// server lost them and rewrites its node key and contacts (no node is declared lost during
// one presence_ttl after a reconnection). A draining node (SIGTERM) refuses new forwarded
// invitations (its core refuses new calls) while its calls go on.
package cluster
