package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nkbridge/nkbridge/signaling"
)

// Options wires a node.
type Options struct {
	Config Config
	Core   *signaling.Core
	Logger *slog.Logger
}

// nodeRecord is the value of a node's key in the nodes bucket.
type nodeRecord struct {
	V        int    `json:"v"`
	Node     string `json:"node"`
	Instance string `json:"instance"` // one per process: tells a restarted node from its old self
	Started  string `json:"started"`
	Draining bool   `json:"draining,omitempty"`
}

// Node is this process as a member of the cluster.
type Node struct {
	cfg      Config
	id       string
	instance string
	started  time.Time
	log      *slog.Logger
	core     *signaling.Core
	nc       *nats.Conn
	js       jetstream.JetStream
	nodes    jetstream.KeyValue // set once by buckets, at start-up
	pres     jetstream.KeyValue
	sub      *nats.Subscription // this node's subjects
	lsub     *nats.Subscription // list requests

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // heartbeat now (after a reconnect)

	pq   presenceQueue
	br   bridge
	objs objects

	mu        sync.Mutex
	rev       uint64             // revision of our node key
	alive     map[string]bool    // other nodes seen alive
	graceTill time.Time          // no node is declared lost before (after a reconnect)
	out       map[string]*outLeg // callID + "/" + node: invitations this node forwarded
	in        map[string]*inCall // callID: calls placed on other nodes ringing here
	draining  bool
	closed    bool
}

// ownerPrefix marks the calls this node runs for a caller on another node (Caller.Owner).
const ownerPrefix = "cluster:"

// Start connects to NATS, claims the node id (refusing one alive in the cluster), publishes
// this node's contacts and plugs the node into core's seams. Close undoes it.
func Start(ctx context.Context, o Options) (*Node, error) {
	cfg := o.Config
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeID)
	n := &Node{cfg: cfg, id: cfg.NodeID, instance: uuid.NewString(), started: time.Now(), log: log, core: o.Core,
		alive: map[string]bool{}, out: map[string]*outLeg{}, in: map[string]*inCall{}, kick: make(chan struct{}, 1)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.pq.init()

	nc, err := nats.Connect(strings.Join(cfg.URLs(), ","), n.natsOptions()...)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster.nats_url %s: %w", cfg.NATSURL, err)
	}
	n.nc = nc
	if err := n.open(ctx); err != nil {
		nc.Close()
		n.cancel()
		return nil, err
	}
	sub, err := nc.Subscribe(n.subject(n.id, "*"), n.onMessage)
	if err != nil {
		n.leave()
		nc.Close()
		n.cancel()
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.sub = sub
	lsub, err := nc.Subscribe(n.listSubject(), n.onCommand)
	if err != nil {
		_ = sub.Unsubscribe()
		n.leave()
		nc.Close()
		n.cancel()
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.lsub = lsub
	_ = nc.Flush()

	for _, c := range o.Core.Presence().Watch(n) {
		n.ContactUp(c)
	}
	o.Core.SetDirectory(n)
	o.Core.SetRemote(n)
	n.startBridge()
	o.Core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(n.resolveUser))
	o.Core.AddResolver(signaling.CallTypeSession, signaling.ResolverFunc(n.resolveSession))
	o.Core.AddResolver(signaling.CallTypeVerto, signaling.ResolverFunc(n.resolveVerto))
	n.wg.Add(2)
	go n.heartbeats()
	go n.presenceWorker()
	log.Info("cluster node started", "nats", nc.ConnectedUrlRedacted(), "presence_ttl", cfg.PresenceTTL)
	return n, nil
}

func (n *Node) natsOptions() []nats.Option {
	c := n.cfg
	opts := []nats.Option{
		nats.Name("nkbridge " + n.id), nats.Timeout(c.ConnectTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.log.Warn("cluster: NATS disconnected; serving local clients only", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.log.Info("cluster: NATS reconnected", "url", nc.ConnectedUrlRedacted())
			n.mu.Lock()
			n.graceTill = time.Now().Add(n.cfg.PresenceTTL)
			n.mu.Unlock()
			select {
			case n.kick <- struct{}{}:
			default:
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			n.log.Warn("cluster: NATS error", "err", err)
		}),
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts
}

// open makes the buckets and claims the node id.
func (n *Node) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ConnectTimeout)
	defer cancel()
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	n.js = js
	if err := n.buckets(ctx); err != nil {
		return err
	}
	rev, err := n.nodes.Create(ctx, n.id, n.record())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("cluster.node_id %q is in use by a node alive in the cluster: give this node another node_id (NKB_CLUSTER_NODE_ID), or stop the other one (a killed node's id frees itself within cluster.presence_ttl, %s)", n.id, n.cfg.PresenceTTL)
	}
	if err != nil {
		return fmt.Errorf("cluster: claiming node_id %q: %w", n.id, err)
	}
	n.rev = rev
	// Contacts of a former life of this node (killed): gone.
	n.deleteContacts(ctx, n.id)
	keys, err := n.nodes.Keys(ctx)
	if err == nil {
		for _, k := range keys {
			if k != n.id {
				n.alive[k] = true
			}
		}
	}
	return nil
}

// buckets creates (or finds) the cluster's buckets: at start-up, and after a NATS server
// without them (restarted: they are kept in memory) came back.
func (n *Node) buckets(ctx context.Context) error {
	nodes, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.cfg.Prefix + "_nodes",
		Description: "nkbridge cluster: live nodes", TTL: n.cfg.PresenceTTL, Storage: jetstream.MemoryStorage, Replicas: n.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s_nodes (JetStream enabled on the NATS server?): %w", n.cfg.Prefix, err)
	}
	pres, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.cfg.Prefix + "_presence",
		Description: "nkbridge cluster: users' contacts", Storage: jetstream.MemoryStorage, Replicas: n.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s_presence: %w", n.cfg.Prefix, err)
	}
	if n.nodes == nil {
		// Start-up. Later calls only make the streams again: the handles stay good.
		n.nodes, n.pres = nodes, pres
	}
	return nil
}

func (n *Node) record() []byte {
	n.mu.Lock()
	d := n.draining
	n.mu.Unlock()
	return encode(nodeRecord{V: version, Node: n.id, Instance: n.instance, Started: n.started.UTC().Format(time.RFC3339), Draining: d})
}

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// Drain marks the node draining: its core refuses new sessions and calls (so do forwarded
// invitations), running ones go on.
func (n *Node) Drain() {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	n.log.Info("cluster: node draining")
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Close leaves the cluster: this node's contacts and key are deleted (the others see its
// users go at once) and the NATS connection closed. Call it after the core stopped every
// session and call, so that their ends reach the other nodes.
func (n *Node) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	n.stopBridge()
	n.stopObjects()
	_ = n.sub.Unsubscribe()
	_ = n.lsub.Unsubscribe()
	n.cancel()
	n.pq.close()
	n.wg.Wait()
	n.leave()
	_ = n.nc.Drain()
	n.nc.Close()
	n.log.Info("cluster node stopped")
}

// leave deletes this node's contacts and key (best effort).
func (n *Node) leave() {
	if !n.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	n.deleteContacts(ctx, n.id)
	_ = n.nodes.Delete(ctx, n.id)
}

// subject is a node's subject for kind.
func (n *Node) subject(node, kind string) string {
	return n.cfg.Prefix + ".v1.node." + node + "." + kind
}

// connected reports whether NATS is reachable now; otherwise cross-node work fails at once.
func (n *Node) connected() bool { return n.nc.IsConnected() }

func unavailable() *signaling.Error {
	return signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster unavailable: NATS not connected")
}

// heartbeats rewrites the node key every third of presence_ttl and finds lost nodes.
func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		n.beat()
	}
}

func (n *Node) beat() {
	defer n.recovered("heartbeat")
	if !n.connected() {
		return
	}
	n.trackRooms()
	// Each step has its own deadline: against a server that lost the buckets a step may
	// take the whole of it (nats-server 2.9 does not answer a publish to no stream).
	step := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	}
	n.mu.Lock()
	rev := n.rev
	n.mu.Unlock()
	ctx, cancel := step()
	newRev, err := n.nodes.Update(ctx, n.id, n.record(), rev)
	cancel()
	if err != nil {
		ctx, cancel := step()
		e, gerr := n.nodes.Get(ctx, n.id)
		cancel()
		if gerr != nil && !errors.Is(gerr, jetstream.ErrKeyNotFound) {
			// Perhaps a NATS server that lost the buckets (restarted, they are in memory):
			// make them again (a no-op when they are there).
			bctx, bcancel := context.WithTimeout(n.ctx, n.cfg.ConnectTimeout)
			berr := n.buckets(bctx)
			bcancel()
			if berr != nil {
				n.log.Warn("cluster: heartbeat failed", "err", gerr, "buckets", berr)
				return
			}
			ctx, cancel := step()
			e, gerr = n.nodes.Get(ctx, n.id)
			cancel()
		}
		ctx, cancel = step()
		defer cancel()
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Our key expired (NATS was away longer than presence_ttl, or restarted):
			// claim it again and rewrite every contact.
			newRev, err = n.nodes.Create(ctx, n.id, n.record())
			if err != nil {
				n.log.Warn("cluster: node key not rewritten", "err", err)
				return
			}
			n.log.Info("cluster: node key was gone; contacts published again")
			n.pq.push(pop{resync: true})
		case gerr != nil:
			n.log.Warn("cluster: heartbeat failed", "err", gerr)
			return
		default:
			var r nodeRecord
			if json.Unmarshal(e.Value(), &r) == nil && r.Instance != n.instance {
				n.log.Error("cluster: another process took this node_id while this node was away; cluster.node_id must be unique", "node_id", n.id)
				return
			}
			newRev, err = n.nodes.Put(ctx, n.id, n.record())
			if err != nil {
				return
			}
		}
	}
	n.mu.Lock()
	n.rev = newRev
	n.mu.Unlock()

	ctx, cancel = step()
	defer cancel()
	keys, err := n.nodes.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return
	}
	now := map[string]bool{}
	for _, k := range keys {
		if k != n.id {
			now[k] = true
		}
	}
	var lost []string
	n.mu.Lock()
	grace := time.Now().Before(n.graceTill)
	for k := range n.alive {
		if !now[k] && !grace {
			lost = append(lost, k)
			delete(n.alive, k)
		}
	}
	for k := range now {
		n.alive[k] = true
	}
	n.mu.Unlock()
	for _, k := range lost {
		n.nodeLost(k)
	}
}

// isAlive: node is another node alive now (as of the last heartbeat).
func (n *Node) isAlive(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.alive[node]
}

// nodeLost ends what depended on a dead node: invitations ringing its users, calls its
// users placed here, and deletes its contacts.
func (n *Node) nodeLost(node string) {
	n.log.Warn("cluster: node lost", "lost", node)
	e := signaling.Errorf(signaling.CodeNodeLost, "Node lost: %s", node)
	var outs []*outLeg
	var ins []*inCall
	n.mu.Lock()
	for _, o := range n.out {
		if o.node == node {
			outs = append(outs, o)
		}
	}
	for _, c := range n.in {
		if c.from == node {
			ins = append(ins, c)
		}
	}
	n.mu.Unlock()
	for _, o := range outs {
		o.farEnd(e)
	}
	for _, c := range ins {
		c.callerGone(e)
	}
	n.endSeen(node)
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.deleteContacts(ctx, node)
}

// onMessage receives this node's subjects.
func (n *Node) onMessage(m *nats.Msg) {
	defer n.recovered("message")
	kind := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	msg, err := decodeMessage(m.Data, kind)
	if err == nil && msg.From == n.id {
		err = errors.New("from this node")
	}
	if err != nil {
		n.log.Warn("cluster: message dropped", "subject", m.Subject, "err", err, "bytes", len(m.Data))
		if m.Reply != "" {
			_ = m.Respond(errReply(signaling.Errorf(signaling.CodeInvalidParameters, "Cluster: bad message: %v", err)))
		}
		return
	}
	switch kind {
	case kindInvite:
		n.onInvite(m, msg)
	case kindProgress:
		n.onProgress(m, msg)
	case kindHangup:
		n.onHangup(msg)
	}
}

// send publishes a message to node.
func (n *Node) send(node, kind string, msg message) {
	msg.V, msg.Kind, msg.From = version, kind, n.id
	if err := n.nc.Publish(n.subject(node, kind), encode(msg)); err != nil {
		n.log.Warn("cluster: message not sent", "to", node, "kind", kind, "err", err)
	}
}

// request sends a request to node and decodes its answer.
func (n *Node) request(ctx context.Context, node, kind string, msg message) error {
	if !n.connected() {
		return unavailable()
	}
	msg.V, msg.Kind, msg.From = version, kind, n.id
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	r, err := n.nc.RequestWithContext(ctx, n.subject(node, kind), encode(msg))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return signaling.Errorf(signaling.CodeNodeLost, "Node lost: %s", node)
		}
		return signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: node %s did not answer: %v", node, err)
	}
	return decodeReply(r.Data)
}

// spawn runs f on a goroutine Close waits for.
func (n *Node) spawn(what string, f func()) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer n.recovered(what)
		f()
	}()
}

func (n *Node) recovered(what string) {
	if v := recover(); v != nil {
		n.log.Error("cluster: panic recovered", "in", what, "panic", v, "stack", string(debug.Stack()))
	}
}
