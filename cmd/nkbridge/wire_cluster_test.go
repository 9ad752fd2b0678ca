package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// With cluster.nats_url set the daemon joins the cluster; a second daemon with a node_id
// alive in the cluster refuses to start, naming the setting.
func TestRunRefusesNodeIDAliveInCluster(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	env := testEnv(map[string]string{"NKB_CLUSTER_NATS_URL": ns.ClientURL(), "NKB_CLUSTER_NODE_ID": "n1", "NKB_CLUSTER_PRESENCE_TTL": "3s"})
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, nil, nil, io.Discard, logs, env) }()
	peers.WaitFor(t, 20*time.Second, "the first node in the cluster", func() bool { return strings.Contains(logs.String(), "cluster node started") })

	err = run(context.Background(), nil, nil, nil, io.Discard, io.Discard, env)
	if err == nil || !strings.Contains(err.Error(), "cluster.node_id") || !strings.Contains(err.Error(), `"n1"`) {
		t.Fatalf("second n1: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}
	if !strings.Contains(logs.String(), "cluster node stopped") {
		t.Fatalf("logs: %s", logs.String())
	}
}
