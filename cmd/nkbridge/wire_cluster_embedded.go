package main

import (
	"context"
	"log/slog"

	"github.com/nkbridge/nkbridge/cluster"
)

// ClusterEmbeddedConfig configures the NATS server nkbridge may run in-process
// (cluster.embedded_nats, cluster/embedded.go): JetStream, a loopback client listener for this
// node's own client, and a route listener and routes by which the nodes' servers form one NATS
// cluster.
type ClusterEmbeddedConfig cluster.EmbeddedConfig

func (c ClusterEmbeddedConfig) enabled() bool { return c.Enabled }

// check validates the section; errors name the key (cluster.embedded_nats.*).
func (c ClusterEmbeddedConfig) check() error {
	return cluster.EmbeddedConfig(c).Validate("cluster.embedded_nats")
}

// startEmbeddedNATS starts the in-process NATS server when configured and returns its client
// URL (used when cluster.nats_url is "") and how to stop it (nil: nothing started). The
// server's name is the node's (cluster.node_id, or the host name).
func startEmbeddedNATS(ctx context.Context, cc ClusterConfig, log *slog.Logger) (string, func(), error) {
	if !cc.EmbeddedNATS.enabled() {
		return "", nil, nil
	}
	name := cc.NodeID
	if name == "" {
		name = cluster.HostNodeID()
	}
	e, err := cluster.StartEmbedded(ctx, cluster.EmbeddedConfig(cc.EmbeddedNATS), name, log)
	if err != nil {
		return "", nil, err
	}
	return e.ClientURL(), e.Shutdown, nil
}
