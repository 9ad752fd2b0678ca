package cluster

// The embedded NATS server (cluster.embedded_nats): each node may run a NATS server inside its
// own process, with JetStream, so that a small deployment needs no separate NATS daemon. The
// nodes' servers join one NATS cluster over NATS's own route protocol (cluster_listen and
// routes); every node's NATS client then connects to its own server on loopback.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig is cluster.embedded_nats: a NATS server (with JetStream) run inside the
// process. Zero fields take the values of defaults.yaml through the daemon's config; a library
// user sets what it needs.
type EmbeddedConfig struct {
	// Enabled runs the server.
	Enabled bool `yaml:"enabled"`
	// Listen is the client listener, a loopback IP:port (the node's own NATS client connects
	// here; other nodes reach this server through the routes, not as clients). Port 0 = any
	// free port (see Embedded.ClientURL).
	Listen string `yaml:"listen"`
	// ClusterName names the NATS cluster; every node's server must use the same.
	ClusterName string `yaml:"cluster_name"`
	// ClusterListen is the route listener, IP:port, that other nodes' servers connect to;
	// "" = no routes (a one-server cluster).
	ClusterListen string `yaml:"cluster_listen"`
	// Routes are the other servers' route URLs, nats://host:port (IP literals).
	Routes []string `yaml:"routes"`
	// ClusterUser and ClusterPassword, when set, are required of every server connecting
	// to the route listener and sent to the routes; both are required when cluster_listen is
	// not a loopback address.
	ClusterUser     string `yaml:"cluster_user"`
	ClusterPassword string `yaml:"cluster_password"`
	// StoreDir holds JetStream's files; "" = a temporary directory removed at shutdown.
	StoreDir string `yaml:"store_dir"`
	// MaxMemory and MaxStore cap JetStream's memory and file storage, bytes.
	MaxMemory int64 `yaml:"max_memory"`
	MaxStore  int64 `yaml:"max_store"`
	// StartTimeout bounds the wait for the server to accept connections.
	StartTimeout time.Duration `yaml:"start_timeout"`
}

// Validate checks c (only when Enabled) and returns an error naming the setting at fault;
// prefix is the key path of c in the configuration ("cluster.embedded_nats").
func (c EmbeddedConfig) Validate(prefix string) error {
	if !c.Enabled {
		return nil
	}
	host, _, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%s.listen %q: %v", prefix, c.Listen, err)
	}
	if !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("%s.listen %q: must be a loopback address (the embedded server takes no client credentials; nodes reach each other through cluster_listen and routes)", prefix, c.Listen)
	}
	if c.ClusterName == "" || strings.ContainsAny(c.ClusterName, " \t.*>") {
		return fmt.Errorf("%s.cluster_name %q: want a name without spaces, dots or wildcards", prefix, c.ClusterName)
	}
	if (c.ClusterUser == "") != (c.ClusterPassword == "") {
		return fmt.Errorf("%s.cluster_user and %s.cluster_password go together", prefix, prefix)
	}
	if c.ClusterListen != "" {
		host, _, err := splitHostPort(c.ClusterListen)
		if err != nil {
			return fmt.Errorf("%s.cluster_listen %q: %v", prefix, c.ClusterListen, err)
		}
		if ip := net.ParseIP(host); !ip.IsLoopback() && c.ClusterUser == "" {
			return fmt.Errorf("%s.cluster_listen %q is not a loopback address: set %s.cluster_user and %s.cluster_password (every node the same)", prefix, c.ClusterListen, prefix, prefix)
		}
		if len(c.Routes) == 0 {
			return fmt.Errorf("%s.routes: empty with cluster_listen set; JetStream in a NATS cluster needs them (list every node's cluster_listen as nats://IP:port, this node's included)", prefix)
		}
	} else if len(c.Routes) > 0 {
		return fmt.Errorf("%s.routes need %s.cluster_listen (routes connect cluster listeners)", prefix, prefix)
	}
	for _, r := range c.Routes {
		if _, err := routeURL(r, "", ""); err != nil {
			return fmt.Errorf("%s.routes: %v", prefix, err)
		}
	}
	if c.MaxMemory < 0 || c.MaxStore < 0 {
		return fmt.Errorf("%s.max_memory and %s.max_store must be >= 0", prefix, prefix)
	}
	if c.StartTimeout <= 0 {
		return fmt.Errorf("%s.start_timeout must be > 0", prefix)
	}
	return nil
}

// splitHostPort parses an IP-literal host:port with a port of 0..65535.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// routeURL parses a route URL (nats://IP:port, no path) and adds user/password when it has
// no credentials of its own.
func routeURL(s, user, password string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("route %q: %v", s, err)
	}
	if u.Scheme != "nats" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("route %q: want nats://IP:port", s)
	}
	if _, _, err := splitHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("route %q: %v", s, err)
	}
	if u.User == nil && user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u, nil
}

// Embedded is a running embedded NATS server.
type Embedded struct {
	srv     *server.Server
	tempDir string // removed at Shutdown
}

// StartEmbedded starts the server described by cfg under serverName (the node id: servers of
// one cluster need distinct names) and returns once it accepts client connections and, with
// routes, once JetStream has its quorum (a majority of the servers in routes: start the nodes
// together; cfg.StartTimeout bounds the wait). ctx bounds
// the start only; Shutdown stops the server.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig, serverName string, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Enabled = true
	if err := cfg.Validate("embedded_nats"); err != nil {
		return nil, err
	}
	if serverName == "" {
		return nil, errors.New("embedded nats: no server name (cluster.node_id)")
	}
	host, port, _ := splitHostPort(cfg.Listen)
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:         serverName,
		Host:               host,
		Port:               port,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		// Monitoring (HTTP) stays off; nothing listens but the two configured addresses.
		HTTPPort: 0,
	}
	e := &Embedded{}
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "nkbridge-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		opts.StoreDir, e.tempDir = dir, dir
	}
	if cfg.ClusterListen != "" {
		chost, cport, _ := splitHostPort(cfg.ClusterListen)
		if cport == 0 {
			cport = server.RANDOM_PORT
		}
		opts.Cluster = server.ClusterOpts{
			Name: cfg.ClusterName, Host: chost, Port: cport,
			Username: cfg.ClusterUser, Password: cfg.ClusterPassword,
		}
		for _, r := range cfg.Routes {
			u, _ := routeURL(r, cfg.ClusterUser, cfg.ClusterPassword)
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	nl := &natsLogger{log: log.With("component", "embedded_nats")}
	srv.SetLoggerV2(nl, false, false, false)
	e.srv = srv
	go srv.Start()
	deadline := time.Now().Add(cfg.StartTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		if last := nl.lastError(); last != "" || time.Now().After(deadline) || ctx.Err() != nil {
			e.Shutdown()
			if last == "" {
				last = "not accepting connections on " + cfg.Listen
			}
			return nil, fmt.Errorf("embedded nats (cluster.embedded_nats): %s", last)
		}
	}
	// In a NATS cluster JetStream works once its meta group has a leader, which needs a
	// majority of the servers in routes: wait for it, so that the node's buckets can be made.
	if cfg.ClusterListen != "" && !srv.JetStreamIsCurrent() {
		log.Warn("embedded nats: waiting for the JetStream quorum (a majority of cluster.embedded_nats.routes must be up; start the nodes together)",
			"start_timeout", cfg.StartTimeout)
		for !srv.JetStreamIsCurrent() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				e.Shutdown()
				return nil, fmt.Errorf("embedded nats (cluster.embedded_nats): no JetStream quorum within start_timeout %v: a majority of the servers in routes must run (routed to: %v)",
					cfg.StartTimeout, e.RoutedServers())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	log.Info("embedded nats server running", "client_url", srv.ClientURL(), "cluster_listen", cfg.ClusterListen,
		"routes", len(cfg.Routes), "store_dir", opts.StoreDir)
	return e, nil
}

// ClientURL is the URL the node's NATS client connects to (nats://127.0.0.1:port).
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// ClusterAddr is the address of the route listener, nil without one.
func (e *Embedded) ClusterAddr() *net.TCPAddr { return e.srv.ClusterAddr() }

// NumRoutes is the number of route connections to other servers (NATS pools several per
// server).
func (e *Embedded) NumRoutes() int { return e.srv.NumRoutes() }

// RoutedServers lists the names of the other servers this one has a route to, sorted.
func (e *Embedded) RoutedServers() []string {
	rz, err := e.srv.Routez(nil)
	if err != nil {
		return nil
	}
	var names []string
	for _, r := range rz.Routes {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// Server is the underlying nats-server, for tests and diagnostics.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server, waits for it, and removes a temporary store directory.
func (e *Embedded) Shutdown() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	e.removeTemp()
}

func (e *Embedded) removeTemp() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
		e.tempDir = ""
	}
}

// natsLogger writes nats-server's log lines to slog (notices as info; debug and trace are off)
// and keeps the last fatal error, which ends a start.
type natsLogger struct {
	log   *slog.Logger
	mu    sync.Mutex
	fatal string
}

func (l *natsLogger) Noticef(f string, v ...any) { l.notice(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Fatalf(f string, v ...any)  { l.setFatal(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Tracef(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }

// notice logs at info; "Can't start JetStream" comes as a notice before the server stops.
func (l *natsLogger) notice(msg string) {
	if strings.HasPrefix(msg, "Can't start JetStream") {
		l.setFatal(msg)
		return
	}
	l.log.Info(msg)
}

func (l *natsLogger) setFatal(msg string) {
	l.log.Error(msg)
	l.mu.Lock()
	l.fatal = msg
	l.mu.Unlock()
}

func (l *natsLogger) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
