package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/nkbridge/nkbridge/cluster"
	"github.com/nkbridge/nkbridge/signaling"
)

// ClusterConfig configures the cluster (the cluster: section, docs/CLUSTER.md): off while
// nats_url is "".
type ClusterConfig struct {
	NATSURL        string                `yaml:"nats_url"`
	NodeID         string                `yaml:"node_id"`
	User           string                `yaml:"user"`
	Password       string                `yaml:"password"`
	Token          string                `yaml:"token"`
	CredsFile      string                `yaml:"creds_file"`
	TLSCA          string                `yaml:"tls_ca"`
	TLSCert        string                `yaml:"tls_cert"`
	TLSKey         string                `yaml:"tls_key"`
	PresenceTTL    time.Duration         `yaml:"presence_ttl"`
	RequestTimeout time.Duration         `yaml:"request_timeout"`
	ConnectTimeout time.Duration         `yaml:"connect_timeout"`
	SubjectPrefix  string                `yaml:"subject_prefix"`
	Replicas       int                   `yaml:"replicas"`
	EmbeddedNATS   ClusterEmbeddedConfig `yaml:"embedded_nats"` // wire_cluster_embedded.go
}

// enabled: a NATS URL is configured (or the embedded server provides one).
func (c ClusterConfig) enabled() bool { return c.NATSURL != "" || c.EmbeddedNATS.enabled() }

func (c ClusterConfig) options() cluster.Config {
	return cluster.Config{
		NATSURL: c.NATSURL, NodeID: c.NodeID, User: c.User, Password: c.Password, Token: c.Token,
		CredsFile: c.CredsFile, TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		PresenceTTL: c.PresenceTTL, RequestTimeout: c.RequestTimeout, ConnectTimeout: c.ConnectTimeout,
		Prefix: c.SubjectPrefix, Replicas: c.Replicas,
	}
}

// check validates the section (-check-config); nothing is dialled.
func (c ClusterConfig) check() error {
	if err := c.EmbeddedNATS.check(); err != nil {
		return err
	}
	if c.NATSURL == "" {
		return nil
	}
	return c.options().Validate()
}

// wireCluster joins the cluster when one is configured: it refuses a node_id alive in the
// cluster. Its hooks: Drain (SIGTERM) and Stop, to run after the core stopped everything.
func wireCluster(ctx context.Context, cfg *Config, log *slog.Logger, core *signaling.Core) (hooks, error) {
	var h hooks
	if !cfg.Cluster.enabled() {
		return h, nil
	}
	cc := cfg.Cluster
	url, stopEmbedded, err := startEmbeddedNATS(ctx, cc, log)
	if err != nil {
		return h, err
	}
	if stopEmbedded != nil {
		h.Stop = append(h.Stop, stopEmbedded)
	}
	o := cc.options()
	if o.NATSURL == "" {
		o.NATSURL = url
	}
	n, err := cluster.Start(ctx, cluster.Options{Config: o, Core: core, Logger: log})
	if err != nil {
		h.stop()
		return hooks{}, err
	}
	h.Drain = append(h.Drain, n.Drain)
	h.Stop = append(h.Stop, n.Close)
	return h, nil
}
