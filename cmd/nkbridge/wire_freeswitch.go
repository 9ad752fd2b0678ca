package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge"
	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// FSConfig configures the FreeSWITCH backend (section freeswitch:, package
// fsbridge). It is off while ESLAddr is empty. testdata/freeswitch/README.md explains
// how to run FreeSWITCH with it.
type FSConfig struct {
	ESLAddr           string        `yaml:"esl_addr"`
	ESLPassword       string        `yaml:"esl_password"`
	SIPAddr           string        `yaml:"sip_addr"`
	SIPListen         string        `yaml:"sip_listen"`
	ConferenceProfile string        `yaml:"conference_profile"`
	Context           string        `yaml:"context"`
	Types             []string      `yaml:"types"`
	CreateRooms       bool          `yaml:"create_rooms"`
	CommandTimeout    time.Duration `yaml:"command_timeout"`
	ChannelTimeout    time.Duration `yaml:"channel_timeout"`
}

func (c FSConfig) validate() error {
	if c.ESLPassword == "" {
		return errors.New("freeswitch.esl_password is required with freeswitch.esl_addr")
	}
	if _, _, err := net.SplitHostPort(c.ESLAddr); err != nil {
		return fmt.Errorf("freeswitch.esl_addr %q: %w", c.ESLAddr, err)
	}
	if host, _, err := net.SplitHostPort(c.SIPAddr); err != nil || net.ParseIP(host) == nil {
		return fmt.Errorf("freeswitch.sip_addr %q: want IP:port", c.SIPAddr)
	}
	served := map[string]bool{}
	for _, t := range fsbridge.Types() {
		served[t] = true
	}
	for _, t := range c.Types {
		if !served[t] {
			return fmt.Errorf("freeswitch.types: %q is not served by FreeSWITCH (park, echo, mcu, bridge)", t)
		}
	}
	if c.ConferenceProfile != "" {
		if err := esl.ValidateName(c.ConferenceProfile); err != nil {
			return fmt.Errorf("freeswitch.conference_profile: %w", err)
		}
	}
	return nil
}

// wireFreeSWITCH registers the FreeSWITCH backend as "freeswitch" for park, echo, mcu
// and bridge (and as the provider of mcu rooms), makes it the default backend of
// freeswitch.types, and adds its shutdown to h. Its calls to FreeSWITCH start from the
// embedded media engine eng. With freeswitch.esl_addr empty it does nothing. Call it
// after the embedded backend is registered, so that the types it does not list keep
// the embedded backend as their default.
func wireFreeSWITCH(ctx context.Context, cfg *Config, log *slog.Logger, bus *signaling.Bus, backends *signaling.Backends, eng *media.Engine, h *hooks) error {
	fc := cfg.FreeSWITCH
	if fc.ESLAddr == "" {
		return nil
	}
	if err := fc.validate(); err != nil {
		return err
	}
	if eng == nil {
		return errors.New("freeswitch: the FreeSWITCH backend needs the embedded media engine (media.enabled: true)")
	}
	// The backend lives until its Stop hook (after the core stopped every session), not
	// until ctx ends, so that stopping sessions can still reach FreeSWITCH.
	svc, err := fsbridge.Start(context.WithoutCancel(ctx), fsbridge.Config{
		ESLAddr: fc.ESLAddr, Password: fc.ESLPassword, SIPAddr: fc.SIPAddr, SIPListen: fc.SIPListen,
		Profile: fc.ConferenceProfile, Context: fc.Context, CreateRooms: fc.CreateRooms,
		Engine: eng, Rooms: bus, CommandTimeout: fc.CommandTimeout, ChannelTimeout: fc.ChannelTimeout,
		Logger: log,
	})
	if err != nil {
		return fmt.Errorf("freeswitch: %w", err)
	}
	h.Stop = append(h.Stop, svc.Close) // before the engine closes: hooks stop in reverse
	// Metrics (wire_ops.go): nkbridge_esl_up and nkbridge_media_sessions{backend="freeswitch"}.
	h.Metrics = append(h.Metrics, func(m *metrics.Metrics) {
		m.ESL().ConnectedFunc("freeswitch", svc.Client().Connected)
		m.Media().GaugesFunc("freeswitch", func() metrics.MediaGauges { return metrics.MediaGauges{Sessions: svc.Sessions()} })
	})
	backends.Register("freeswitch", svc.Backend, fsbridge.Types()...)
	backends.RegisterRooms("freeswitch", svc.Backend, signaling.RoomMCU)
	for _, t := range fc.Types {
		backends.SetDefault(t, "freeswitch")
	}
	log.Info("FreeSWITCH backend configured", "esl", fc.ESLAddr, "sip", fc.SIPAddr, "sip_listen", svc.Dialer().Addr(), "types", fc.Types)
	return nil
}
