package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/cdr"
	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/signaling"
)

// CDRConfig configures call records and webhooks (the cdr: section, docs/CDR.md).
type CDRConfig struct {
	Enabled             bool          `yaml:"enabled"`
	Events              bool          `yaml:"events"`
	Node                string        `yaml:"node"`
	QueueSize           int           `yaml:"queue_size"`
	JoinTimeout         time.Duration `yaml:"join_timeout"`
	File                string        `yaml:"file"`
	FileMaxBytes        int64         `yaml:"file_max_bytes"`
	FileMaxAge          time.Duration `yaml:"file_max_age"`
	FileMaxFiles        int           `yaml:"file_max_files"`
	Fsync               bool          `yaml:"fsync"`
	SpoolDir            string        `yaml:"spool_dir"`
	SpoolMaxBytes       int64         `yaml:"spool_max_bytes"`
	SpoolSegmentBytes   int64         `yaml:"spool_segment_bytes"`
	WebhookURLs         []string      `yaml:"webhook_urls"`
	WebhookSecret       string        `yaml:"webhook_secret"`
	WebhookEvents       []string      `yaml:"webhook_events"`
	WebhookAllowedHosts []string      `yaml:"webhook_allowed_hosts"`
	WebhookCAFile       string        `yaml:"webhook_ca_file"`
	WebhookTimeout      time.Duration `yaml:"webhook_timeout"`
	WebhookRetryMin     time.Duration `yaml:"webhook_retry_min"`
	WebhookRetryMax     time.Duration `yaml:"webhook_retry_max"`
	// dead letters: records an endpoint refuses (4xx) this many times in a row, or still not
	// taken this long after they were made, go to a file in the spool folder
	WebhookDeadLetterAttempts int           `yaml:"webhook_dead_letter_attempts"`
	WebhookDeadLetterAge      time.Duration `yaml:"webhook_dead_letter_age"`
}

// options turns the section into cdr.Options (without logger, publisher and observer); every
// error names its key.
func (c CDRConfig) options() (cdr.Options, error) {
	o := cdr.Options{
		Node: c.Node, QueueSize: c.QueueSize, JoinTimeout: c.JoinTimeout, SpoolDir: c.SpoolDir,
		File:  cdr.FileOptions{Path: c.File, MaxBytes: c.FileMaxBytes, MaxAge: c.FileMaxAge, MaxFiles: c.FileMaxFiles, Fsync: c.Fsync},
		Spool: cdr.SpoolOptions{MaxBytes: c.SpoolMaxBytes, SegmentBytes: c.SpoolSegmentBytes, Fsync: c.Fsync},
	}
	if !c.Enabled {
		if c.File != "" || len(c.WebhookURLs) > 0 {
			return o, errors.New("cdr.file and cdr.webhook_urls need cdr.enabled: true")
		}
		return o, nil
	}
	for _, e := range c.WebhookEvents {
		if !slices.Contains(cdr.Events, e) {
			return o, fmt.Errorf("cdr.webhook_events: unknown event %q (%s)", e, strings.Join(cdr.Events, ", "))
		}
	}
	if c.WebhookDeadLetterAttempts < 0 || c.WebhookDeadLetterAge < 0 {
		return o, errors.New("cdr.webhook_dead_letter_attempts and cdr.webhook_dead_letter_age must be >= 0 (0 = never)")
	}
	if len(c.WebhookURLs) == 0 {
		return o, nil
	}
	if c.SpoolDir == "" {
		return o, errors.New("cdr.spool_dir: required with cdr.webhook_urls (records wait there for the endpoints)")
	}
	if c.WebhookSecret == "" {
		return o, errors.New("cdr.webhook_secret: required with cdr.webhook_urls (the body is signed with it)")
	}
	var pool *x509.CertPool
	if c.WebhookCAFile != "" {
		pem, err := os.ReadFile(c.WebhookCAFile)
		if err != nil {
			return o, fmt.Errorf("cdr.webhook_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("cdr.webhook_ca_file %s: no PEM certificate", c.WebhookCAFile)
		}
	}
	for _, u := range c.WebhookURLs {
		if _, err := cdr.CheckWebhookURL(u, c.WebhookAllowedHosts); err != nil {
			return o, err
		}
		o.Webhooks = append(o.Webhooks, cdr.WebhookOptions{URL: u, Secret: c.WebhookSecret, Events: c.WebhookEvents,
			AllowedHosts: c.WebhookAllowedHosts, RootCAs: pool, Timeout: c.WebhookTimeout,
			RetryMin: c.WebhookRetryMin, RetryMax: c.WebhookRetryMax,
			DeadLetterAttempts: c.WebhookDeadLetterAttempts, DeadLetterAge: c.WebhookDeadLetterAge})
	}
	return o, nil
}

// wireCDR starts the call-record service when cdr.enabled; it returns the core's recorder
// (nil when off) and its stop, to run after the core has stopped every call and session.
func wireCDR(cfg *Config, log *slog.Logger, bus *signaling.Bus, m *metrics.Metrics) (signaling.Recorder, func(), error) {
	if !cfg.CDR.Enabled {
		return nil, func() {}, nil
	}
	o, err := cfg.CDR.options()
	if err != nil {
		return nil, nil, err
	}
	o.Logger = log.With("component", "cdr")
	if cfg.CDR.Events {
		o.Publisher = bus
	}
	var svc *cdr.Service
	// the metrics read the service, which needs the observer first
	o.Observer = m.CDR(func() map[string]uint64 {
		if svc == nil {
			return nil
		}
		return svc.Pending()
	}, func() int64 {
		if svc == nil {
			return 0
		}
		return svc.SpoolBytes()
	})
	svc, err = cdr.New(o)
	if err != nil {
		return nil, nil, err
	}
	log.Info("call records on", "file", o.File.Path, "webhooks", len(o.Webhooks), "spool", o.SpoolDir)
	return svc, func() { _ = svc.Close() }, nil
}
