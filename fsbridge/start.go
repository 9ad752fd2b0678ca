package fsbridge

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/media"
)

// Config is everything Start needs to put a FreeSWITCH behind nkbridge.
type Config struct {
	// ESLAddr and Password of mod_event_socket (testdata/freeswitch: 127.0.0.1:8021).
	ESLAddr  string
	Password string
	// SIPAddr is FreeSWITCH's nkbridge SIP profile (IP:port, testdata/freeswitch:
	// 127.0.0.1:5090); SIPListen the local UDP address of nkbridge's side (default
	// 127.0.0.1:0).
	SIPAddr   string
	SIPListen string
	// Profile is the conference profile (default nkbridge); Context the dialplan context
	// of nkbridge's calls (default nkbridge).
	Profile string
	Context string
	// CreateRooms lets mcu sessions name rooms that do not exist yet (Options.CreateRooms).
	CreateRooms bool
	// Engine is the media engine the legs start from (required).
	Engine *media.Engine
	// Rooms receives media/room events (optional; e.g. the core's *signaling.Bus).
	Rooms RoomEvents
	// CommandTimeout bounds each Event Socket command (default 5 s), ChannelTimeout the
	// wait for a call's channel (default 10 s), InviteTimeout the SIP answer (default 10 s).
	CommandTimeout, ChannelTimeout, InviteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the Event Socket reconnection backoff (defaults of
	// esl.ClientOptions).
	MinBackoff, MaxBackoff time.Duration
	// EventQueue is the Event Socket client's event queue (default of esl.Options);
	// events beyond it are dropped and trigger a reconciliation.
	EventQueue int
	Logger     *slog.Logger
}

// Service is a running FreeSWITCH backend: the Backend, its Event Socket client and its
// SIP dialer.
type Service struct {
	*Backend
	client *esl.Client
	dialer *SIPDialer
	cancel context.CancelFunc
	done   chan struct{}
}

// Start creates the SIP dialer and the Event Socket client and starts connecting in the
// background (reconnecting until ctx ends or Close). Sessions started while FreeSWITCH
// is not connected wait up to CommandTimeout for it, then fail with 2300.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.ESLAddr == "" || cfg.SIPAddr == "" {
		return nil, errors.New("fsbridge: the Event Socket and SIP addresses are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "fsbridge")
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = defaults.Duration("freeswitch.command_timeout")
	}
	dialer, err := NewSIPDialer(SIPDialerConfig{Engine: cfg.Engine, Target: cfg.SIPAddr, Listen: cfg.SIPListen,
		InviteTimeout: cfg.InviteTimeout, Logger: log})
	if err != nil {
		return nil, err
	}
	svc := &Service{dialer: dialer, done: make(chan struct{})}
	client, err := esl.NewClient(esl.ClientOptions{
		Addr: cfg.ESLAddr,
		Conn: esl.Options{Password: cfg.Password, Logger: log, CommandTimeout: cfg.CommandTimeout, EventQueue: cfg.EventQueue},
		OnEvent: func(ev *esl.Event) {
			svc.Backend.HandleEvent(ev)
		},
		Reconcile: func(ctx context.Context, r esl.Reconciliation) {
			svc.Backend.Reconcile(ctx, r)
		},
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
	})
	if err != nil {
		dialer.Close()
		return nil, err
	}
	b, err := New(Options{ESL: client, Dialer: dialer, Profile: cfg.Profile, Context: cfg.Context, Rooms: cfg.Rooms, CreateRooms: cfg.CreateRooms,
		ChannelTimeout: cfg.ChannelTimeout, CommandTimeout: cfg.CommandTimeout, Logger: log})
	if err != nil {
		dialer.Close()
		return nil, err
	}
	svc.Backend, svc.client = b, client
	rctx, cancel := context.WithCancel(ctx)
	svc.cancel = cancel
	go func() {
		defer close(svc.done)
		_ = client.Run(rctx)
	}()
	return svc, nil
}

// Client returns the Event Socket client.
func (s *Service) Client() *esl.Client { return s.client }

// Dialer returns the SIP dialer.
func (s *Service) Dialer() *SIPDialer { return s.dialer }

// Close waits for pending cleanups, hangs up the remaining legs and disconnects. Stop
// the sessions (signaling.Core.Close) first.
func (s *Service) Close() {
	s.Backend.Close()
	s.dialer.Close()
	s.cancel()
	<-s.done
}
