package main

import (
	"context"
	"log/slog"
)

// ClusterEmbeddedConfig configures the NATS server nkbridge may run in-process
// (cluster.embedded_nats). Placeholder: helper "clusterops" owns this file and the option.
type ClusterEmbeddedConfig struct{}

func (ClusterEmbeddedConfig) enabled() bool { return false }

func (ClusterEmbeddedConfig) check() error { return nil }

// startEmbeddedNATS starts the in-process NATS server when configured and returns its client
// URL (used when cluster.nats_url is "") and how to stop it (nil: nothing started).
func startEmbeddedNATS(context.Context, ClusterConfig, *slog.Logger) (string, func(), error) {
	return "", nil, nil
}
