package signaling

import (
	"context"
	"encoding/json"
)

// Object kinds a Remote forwards commands for.
const (
	ObjectSession = "session"
	ObjectCall    = "call"
	ObjectRoom    = "room"
)

// Remote reaches the sessions and calls held by the other nodes of a cluster. A single node
// has none (Core.Remote returns nil).
type Remote interface {
	// Forward runs the API command cmd ("media/session/info", ...) with its request data on
	// the node holding object id of kind (ObjectSession, ObjectCall), for user (admin: with
	// the admin role), under that node's ownership rules, and returns the reply's data.
	// Errors: 1062 / 2020 when no node holds the object, 2041 when it cannot be reached, or
	// the command's own.
	Forward(ctx context.Context, kind, id, cmd string, data json.RawMessage, user string, admin bool) (json.RawMessage, error)
	// List runs a list command ("media/session/list", "media/call/list", "media/room/list")
	// for user on every other node and returns their replies' data; nodes that do not
	// answer in time are left out (with an error when none answered).
	List(ctx context.Context, cmd string, user string, admin bool) ([]json.RawMessage, error)
}

// CommandRunner runs, on this node, an API command forwarded from another node for user
// (admin: with the admin role). The API front end provides it (Core.SetCommandRunner).
type CommandRunner func(ctx context.Context, cmd string, data json.RawMessage, user string, admin bool) (any, error)

// SetRemote plugs in the other nodes' objects (the cluster).
func (c *Core) SetRemote(r Remote) {
	c.mu.Lock()
	c.remote = r
	c.mu.Unlock()
}

// Remote returns the other nodes' objects, or nil on a single node.
func (c *Core) Remote() Remote {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote
}

// SetCommandRunner sets how commands forwarded from other nodes run here.
func (c *Core) SetCommandRunner(f CommandRunner) {
	c.mu.Lock()
	c.runner = f
	c.mu.Unlock()
}

// CommandRunner returns how forwarded commands run here (nil: they cannot).
func (c *Core) CommandRunner() CommandRunner {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runner
}
