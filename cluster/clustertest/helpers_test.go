package clustertest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling/auth"
)

// password is every test user's password.
const password = "pw"

// usersYAML is the users: section of every node: alice, bob, carol, dave and an admin, with
// cheap hashes (the iteration count only slows logins down).
var usersYAML = sync.OnceValue(func() string {
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range []string{"alice", "bob", "carol", "dave", "admin"} {
		h, err := auth.HashPassword(password, 1000)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "  - {user: %s, password_hash: %q, admin: %v}\n", u, h, u == "admin")
	}
	return b.String()
})

// ttl is the presence_ttl of the test clusters: a killed node is lost within it.
const ttl = 2 * time.Second

// nodeEnv are the cluster settings of every test node (besides nats_url and node_id).
var nodeEnv = []string{"NKB_CLUSTER_PRESENCE_TTL=" + ttl.String(), "NKB_CLUSTER_REQUEST_TIMEOUT=1s", "NKB_CALLS_RING_TIME=30s"}

// needCluster skips the test under -short: it builds the binary and runs several nodes.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs several nodes")
	}
}

// startNodes starts n nodes n1..nN on the NATS at url with extra config (YAML) and env.
func startNodes(t *testing.T, url string, n int, config string, sip bool, env ...string) []*peers.Node {
	t.Helper()
	ns := peers.NewNodes(t, nkb.Path(t))
	var out []*peers.Node
	for i := range n {
		out = append(out, ns.Start(peers.NodeOptions{
			NodeID: fmt.Sprintf("n%d", i+1), NATSURL: url, SIP: sip,
			Config: usersYAML() + config, Env: append(slices.Clone(nodeEnv), env...),
			Logger: peers.TestLogger(t).With("node", fmt.Sprintf("n%d", i+1)),
		}))
	}
	return out
}

// login dials node's API as user.
func login(t *testing.T, node *peers.Node, user string, opts nkclient.Options) *apitest.Conn {
	t.Helper()
	c := apitest.Dial(t, node.APIURL(), opts)
	c.Login(user, password)
	return c
}

// userNodes returns the nodes on which admin (logged in on node here) sees user's API
// connections.
func userNodes(t *testing.T, admin *apitest.Conn, here, user string) []string {
	t.Helper()
	var got struct {
		Sessions []struct {
			Node string `json:"node"`
		} `json:"sessions"`
	}
	var raw json.RawMessage
	if err := admin.Req("core", "user", "get", map[string]any{"user": user}, &raw); err != nil {
		return nil
	}
	_ = json.Unmarshal(raw, &got)
	var nodes []string
	for _, s := range got.Sessions {
		if s.Node == "" {
			s.Node = here // a connection of admin's own node
		}
		if !slices.Contains(nodes, s.Node) {
			nodes = append(nodes, s.Node)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// waitUserOn waits until admin, logged in on node here, sees user on exactly the given nodes.
func waitUserOn(t *testing.T, admin *apitest.Conn, here, user string, nodes ...string) {
	t.Helper()
	slices.Sort(nodes)
	var last []string
	peers.WaitFor(t, 15*time.Second, fmt.Sprintf("%s seen on %v", user, nodes), func() bool {
		last = userNodes(t, admin, here, user)
		return slices.Equal(last, nodes)
	})
}

// waitContact waits until the cluster's presence bucket (nkb_presence, read straight from
// NATS) holds a contact of kind ("api", "verto", "sip") of user on node.
func waitContact(t *testing.T, natsURL, node, user, kind string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	prefix := node + "." + base64.RawURLEncoding.EncodeToString([]byte(user)) + "." + kind + "."
	peers.WaitFor(t, 15*time.Second, fmt.Sprintf("a %s contact of %s on %s in nkb_presence", kind, user, node), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, "nkb_presence")
		if err != nil {
			return false
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			if strings.HasPrefix(k, prefix) {
				return true
			}
		}
		return false
	})
}
