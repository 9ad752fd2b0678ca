package cluster

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config configures a node's membership in a cluster (the cluster: section).
type Config struct {
	NATSURL        string        // comma-separated NATS URLs; "" = no cluster
	NodeID         string        // unique node name; "" = the host name
	User, Password string        // NATS user and password
	Token          string        // NATS token
	CredsFile      string        // NATS credentials file (JWT and nkey seed)
	TLSCA          string        // PEM roots of the NATS servers' certificates
	TLSCert        string        // client certificate (with TLSKey)
	TLSKey         string        //
	PresenceTTL    time.Duration // a dead node's users vanish within this
	RequestTimeout time.Duration // answer deadline of requests to other nodes
	ConnectTimeout time.Duration // the first connection to NATS at start-up
	Prefix         string        // subjects and bucket names
	Replicas       int           // JetStream replicas of the buckets
}

// Defaults of the zero values (defaults.yaml has the same).
const (
	DefaultPresenceTTL    = 10 * time.Second
	DefaultRequestTimeout = 2 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultPrefix         = "nkb"
)

func (c *Config) defaults() {
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.NodeID == "" {
		c.NodeID = HostNodeID()
	}
}

// HostNodeID is the default node_id: the host name with characters a NATS subject token
// cannot hold replaced by '-'.
func HostNodeID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "nkbridge"
	}
	return strings.Map(func(r rune) rune {
		if tokenChar(r) {
			return r
		}
		return '-'
	}, h)
}

func tokenChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// validToken: 1..64 characters from [A-Za-z0-9_-].
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !tokenChar(r) {
			return false
		}
	}
	return true
}

// URLs returns the NATS URLs of NATSURL.
func (c Config) URLs() []string {
	var out []string
	for _, u := range strings.Split(c.NATSURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Validate checks the configuration (after defaults); every error names its key.
func (c Config) Validate() error {
	c.defaults()
	urls := c.URLs()
	if len(urls) == 0 {
		return errors.New("cluster.nats_url: no URL")
	}
	for _, u := range urls {
		if !strings.Contains(u, "://") {
			return fmt.Errorf("cluster.nats_url %q: want nats://host:port (or tls://, ws://, wss://)", u)
		}
	}
	if !validToken(c.NodeID) {
		return fmt.Errorf("cluster.node_id %q: 1 to 64 characters from A-Z a-z 0-9 _ -", c.NodeID)
	}
	if !validToken(c.Prefix) {
		return fmt.Errorf("cluster.subject_prefix %q: 1 to 64 characters from A-Z a-z 0-9 _ -", c.Prefix)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("cluster.tls_cert and cluster.tls_key go together")
	}
	if c.Token != "" && (c.User != "" || c.CredsFile != "") {
		return errors.New("cluster.token: use either token, user/password or creds_file")
	}
	if c.User != "" && c.CredsFile != "" {
		return errors.New("cluster.user: use either user/password or creds_file")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("cluster.user and cluster.password go together")
	}
	for key, f := range map[string]string{"cluster.creds_file": c.CredsFile, "cluster.tls_ca": c.TLSCA, "cluster.tls_cert": c.TLSCert, "cluster.tls_key": c.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if c.PresenceTTL < time.Second {
		return fmt.Errorf("cluster.presence_ttl %s: at least 1s", c.PresenceTTL)
	}
	if c.Replicas > 5 {
		return fmt.Errorf("cluster.replicas %d: 1 to 5", c.Replicas)
	}
	return nil
}
