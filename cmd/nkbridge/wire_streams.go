package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/media/stream"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// StreamsConfig configures live audio streams to applications (section streams:).
type StreamsConfig struct {
	AllowedHosts      []string                  `yaml:"allowed_hosts"`
	AllowedUsers      []string                  `yaml:"allowed_users"`
	CAFile            string                    `yaml:"ca_file"`
	Bots              map[string]stream.Options `yaml:"bots" env:"-"`
	QueueFrames       int                       `yaml:"queue_frames"`
	PlaybackMax       time.Duration             `yaml:"playback_max"`
	ConnectTimeout    time.Duration             `yaml:"connect_timeout"`
	WriteTimeout      time.Duration             `yaml:"write_timeout"`
	ReconnectAttempts int                       `yaml:"reconnect_attempts"`
	ReconnectDelay    time.Duration             `yaml:"reconnect_delay"`
	MaxMessageBytes   int64                     `yaml:"max_message_bytes"`
	MaxStreams        int                       `yaml:"max_streams"`
}

// config checks the section and turns it into the stream manager's configuration; every
// error names its key.
func (c StreamsConfig) config(log *slog.Logger) (stream.Config, error) {
	for k, v := range map[string]int64{"streams.queue_frames": int64(c.QueueFrames), "streams.reconnect_attempts": int64(c.ReconnectAttempts),
		"streams.max_message_bytes": c.MaxMessageBytes, "streams.max_streams": int64(c.MaxStreams)} {
		if v < 0 {
			return stream.Config{}, fmt.Errorf("%s must be >= 0", k)
		}
	}
	for k, v := range map[string]time.Duration{"streams.playback_max": c.PlaybackMax, "streams.connect_timeout": c.ConnectTimeout,
		"streams.write_timeout": c.WriteTimeout, "streams.reconnect_delay": c.ReconnectDelay} {
		if v < 0 {
			return stream.Config{}, fmt.Errorf("%s must be >= 0", k)
		}
	}
	var pool *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return stream.Config{}, fmt.Errorf("streams.ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return stream.Config{}, fmt.Errorf("streams.ca_file %s: no PEM certificate", c.CAFile)
		}
	}
	for name, o := range c.Bots {
		if !signaling.ValidID(name) {
			return stream.Config{}, fmt.Errorf("streams.bots: bad bot name %q", name)
		}
		if err := o.Normalize(); err != nil {
			return stream.Config{}, fmt.Errorf("streams.bots.%s: %w", name, err)
		}
		if _, err := stream.CheckURL(o.URL, c.AllowedHosts); err != nil {
			return stream.Config{}, fmt.Errorf("streams.bots.%s: %w", name, err)
		}
	}
	return stream.Config{AllowedHosts: c.AllowedHosts, AllowedUsers: c.AllowedUsers, RootCAs: pool,
		QueueFrames: c.QueueFrames, PlaybackMax: c.PlaybackMax, ConnectTimeout: c.ConnectTimeout, WriteTimeout: c.WriteTimeout,
		ReconnectAttempts: c.ReconnectAttempts, ReconnectDelay: c.ReconnectDelay, MaxMessageBytes: c.MaxMessageBytes,
		MaxStreams: c.MaxStreams, Logger: log}, nil
}

// wireStreams gives the embedded media engine's sessions audio streams and registers its
// bot session type (nothing without the engine). The manager stops after the backend.
func wireStreams(c StreamsConfig, log *slog.Logger, b *embedded.Backend, backends *signaling.Backends, h *hooks) error {
	if b == nil {
		return nil
	}
	sc, err := c.config(log)
	if err != nil {
		return err
	}
	mgr, err := stream.NewManager(sc)
	if err != nil {
		return err
	}
	if err := b.EnableStreams(mgr, c.Bots); err != nil {
		return err
	}
	backends.Register(embedded.Name, b, append(append(embedded.Types(), embedded.RoomTypes()...), signaling.TypeBot)...)
	// hooks.Stop runs in reverse: the backend (registered before) closes after this, so
	// the manager closes first only if listed after; close it at the very end instead
	h.Stop = append([]func(){mgr.Close}, h.Stop...)
	h.Metrics = append(h.Metrics, func(m *metrics.Metrics) {
		m.StreamsFunc(func() metrics.StreamCounters {
			k := mgr.Counters()
			return metrics.StreamCounters{Started: k.Started, Failed: k.Failed, Active: k.Active, FramesSent: k.FramesSent,
				FramesDropped: k.FramesDropped, AppMessages: k.AppFrames, AppGarbage: k.AppGarbage,
				PlaybackDropped: k.PlaybackDropped, Disconnects: k.Disconnects, Reconnects: k.Reconnects}
		})
	})
	log.Info("audio streams enabled", "allowed_hosts", c.AllowedHosts, "allowed_users", c.AllowedUsers, "bots", b.Bots())
	return nil
}
