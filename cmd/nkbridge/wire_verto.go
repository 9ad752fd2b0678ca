package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/nkbridge/nkbridge/internal/wsutil"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
	"github.com/nkbridge/nkbridge/verto/vertogw"
)

// VertoConfig configures the Verto listener and the routing of Verto calls (section verto:).
type VertoConfig struct {
	Listen          string        `yaml:"listen"`
	TLSCert         string        `yaml:"tls_cert"`
	TLSKey          string        `yaml:"tls_key"`
	AllowedOrigins  []string      `yaml:"allowed_origins"`
	DetachGrace     time.Duration `yaml:"detach_grace"`
	MaxConnections  int           `yaml:"max_connections"`
	MaxFrameBytes   int64         `yaml:"max_frame_bytes"`
	MaxCallsPerUser int           `yaml:"max_calls_per_user"`
	// Limits against hostile clients (docs/SECURITY.md).
	MaxConnectionsPerIP int               `yaml:"max_connections_per_ip"`
	MaxLoginsPerIP      int               `yaml:"max_logins_per_ip"`
	MaxLogins           int               `yaml:"max_logins"`
	Extensions          map[string]string `yaml:"extensions"`
	ConfPrefix          string            `yaml:"conf_prefix"`
	BotPrefix           string            `yaml:"bot_prefix"`
}

func (c VertoConfig) validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("verto.listen %q: %w", c.Listen, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("verto.tls_cert and verto.tls_key go together")
	}
	if c.DetachGrace < 0 || c.MaxConnections < 0 || c.MaxFrameBytes < 0 || c.MaxCallsPerUser < 0 {
		return errors.New("verto: detach_grace, max_connections, max_frame_bytes and max_calls_per_user must not be negative")
	}
	gc := vertogw.Config{Extensions: c.Extensions, ConfPrefix: c.ConfPrefix, BotPrefix: c.BotPrefix}
	return gc.Validate()
}

// wireVerto starts the Verto server (unless verto.listen is "") with its glue to the core:
// logins against the API's users, verto.invite routed like SIP, Verto logins as call targets
// ("verto", and "user" beside the API connections and SIP devices). Drain refuses new Verto
// calls; Stop closes the server (hanging up its calls) and waits for the glue.
func wireVerto(ctx context.Context, cfg *Config, log *slog.Logger, core *signaling.Core, h *hooks) error {
	c := cfg.Verto
	if c.Listen == "" {
		log.Info("verto disabled")
		return nil
	}
	if err := c.validate(); err != nil {
		return err
	}
	users, err := cfg.apiUsers()
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if err := vertogw.CheckListen(c.Listen, users); err != nil {
		return err
	}
	if err := wsutil.CheckOrigins("verto.allowed_origins", c.AllowedOrigins, users.Empty()); err != nil {
		return err
	}
	vlog := log.With("component", "verto")
	gw, err := vertogw.New(vertogw.Config{Extensions: c.Extensions, ConfPrefix: c.ConfPrefix, BotPrefix: c.BotPrefix, MaxCallsPerUser: c.MaxCallsPerUser,
		DetachGrace: c.DetachGrace},
		core, log)
	if err != nil {
		return err
	}
	a := vertogw.NewAuth(users, log.With("component", "vertogw"))
	srv, err := verto.New(verto.Config{
		Addr: c.Listen, CertFile: c.TLSCert, KeyFile: c.TLSKey, AllowedOrigins: c.AllowedOrigins,
		LoopbackHostOnly: users.Empty(), MaxConnectionsPerIP: c.MaxConnectionsPerIP,
		MaxLoginsPerIP: c.MaxLoginsPerIP, MaxLogins: c.MaxLogins,
		DetachGrace: c.DetachGrace, MaxConnections: c.MaxConnections, MaxFrameBytes: c.MaxFrameBytes,
		OnPresence: gw.Presence,
	}, a, gw, vlog)
	if err != nil {
		return fmt.Errorf("verto: %w", err)
	}
	gw.Attach(srv)
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("verto listen: %w", err)
	}
	if a.Open() {
		vlog.Warn("NO USERS CONFIGURED: Verto accepts ANY login (allowed because it listens on loopback only)", "listen", ln.Addr().String())
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			vlog.Error("verto server", "err", err)
		}
	}()
	h.Drain = append(h.Drain, gw.Drain)
	h.Stop = append(h.Stop, func() {
		srv.Close()
		cancel()
		<-done
		gw.Close()
	})
	return nil
}
