// Command nkbridge is the nkbridge daemon: the NkMEDIA External Interface
// control API over WebSocket, with SIP, Verto and media backends plugged in.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/nkbridge/nkbridge/internal/wsutil"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"github.com/nkbridge/nkbridge/web"
)

const version = "0.1.0"

func main() {
	// SIGTERM drains (no new connections, sessions or calls; the process
	// exits when the last session and call end, or after drain_timeout); a
	// second SIGTERM, or SIGINT, stops at once (gracefully).
	ctx, stop := context.WithCancel(context.Background())
	drainCtx, drain := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			if s == syscall.SIGTERM && drainCtx.Err() == nil {
				drain()
				continue
			}
			stop()
		}
	}()
	err := run(ctx, drainCtx.Done(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	signal.Stop(sigs)
	stop()
	drain()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "nkbridge:", err)
		os.Exit(1)
	}
}

// run is the whole program; it returns after a graceful stop when ctx is
// cancelled, or after draining when drain is closed (nil: never).
func run(ctx context.Context, drain <-chan struct{}, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("nkbridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile  = fs.String("config", "", "YAML configuration `file` (default: embedded defaults)")
		apiListen   = fs.String("api-listen", "", "control API listen `address` (overrides api.listen)")
		metricsAddr = fs.String("metrics-listen", "-", "metrics and health listen `address`, \"\" = off (overrides metrics.listen)")
		logLevel    = fs.String("log-level", "", "log `level`: debug, info, warn, error (overrides log.level)")
		logFormat   = fs.String("log-format", "", "log `format`: text or json (overrides log.format)")
		showVersion = fs.Bool("version", false, "print the version and exit")
		hashPw      = fs.Bool("hash-password", false, "read a password from stdin, print its password_hash and exit")
		checkConfig = fs.Bool("check-config", false, "check every section of the configuration (binding no port), print the effective configuration and exit")
		printDefs   = fs.Bool("print-defaults", false, "print the embedded defaults (every option, commented: a config file to start from) and exit")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "nkbridge", version+buildDetails())
		return nil
	}
	if *printDefs {
		_, err := io.WriteString(stdout, defaults.YAML())
		return err
	}
	if *hashPw {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("reading password from stdin: %w", err)
		}
		h, err := auth.HashPassword(strings.TrimRight(line, "\r\n"), 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, h)
		return nil
	}
	if *configFile == "" {
		if f, ok := env("NKB_CONFIG"); ok {
			*configFile = f
		}
	}
	cfg, err := loadConfig(*configFile, env)
	if err != nil {
		return err
	}
	if *apiListen != "" {
		cfg.API.Listen = *apiListen
	}
	if *metricsAddr != "-" {
		cfg.Metrics.Listen = *metricsAddr
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if *checkConfig {
		b, err := redactedYAML(cfg)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	log := newLogger(cfg.Log, stderr)
	return serve(ctx, drain, cfg, log)
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.Replace(strings.ToLower(c.Level), "warning", "warn", 1)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve wires the daemon together and runs it until ctx is done, or until
// it has drained after drain is closed.
func serve(ctx context.Context, drain <-chan struct{}, cfg *Config, log *slog.Logger) error {
	users, err := cfg.apiUsers()
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if err := wsapi.CheckListen(cfg.API.Listen, users); err != nil {
		return err
	}
	if err := wsutil.CheckOrigins("api.allowed_origins", cfg.API.AllowedOrigins, users.Empty()); err != nil {
		return err
	}

	mets := metrics.New()
	bus := signaling.NewBus()
	backends := signaling.NewBackends()
	backendHooks, err := wireBackends(ctx, cfg, log, bus, backends)
	if err != nil {
		return err
	}
	defer backendHooks.stop() // last: after the core has stopped every session
	for typ, name := range cfg.Sessions.Backends {
		backends.SetDefault(typ, name)
	}
	recorder, stopCDR, err := wireCDR(cfg, log, bus, mets)
	if err != nil {
		return err
	}
	defer stopCDR() // after core.Close: the last calls' records are written
	core := signaling.New(signaling.Options{
		Logger: log, Bus: bus, Backends: backends, Recorder: recorder,
		WaitTimeout: cfg.Sessions.WaitTimeout, ReadyTimeout: cfg.Sessions.ReadyTimeout,
		RingTime: cfg.Calls.RingTime, MaxRingTime: cfg.Calls.MaxRingTime,
		Observer: mets, // RTP counters come from the engines (TrafficFunc), not per session
	})
	clusterHooks, err := wireCluster(ctx, cfg, log, core) // wire_cluster.go; nothing without cluster.nats_url
	if err != nil {
		core.Close()
		return err
	}
	defer clusterHooks.stop()                                            // after core.Close: the ends of forwarded calls reach the other nodes
	core.AddResolver(signaling.CallTypeBot, signaling.BotResolver(core)) // calls to bots (streams.bots)
	var page http.Handler
	if cfg.Demo.Enabled {
		page = web.Handler()
	}
	api := wsapi.New(wsapi.Config{
		Listen: cfg.API.Listen, TLSCert: cfg.API.TLSCert, TLSKey: cfg.API.TLSKey,
		MaxFrameBytes: cfg.API.MaxFrameBytes, PingInterval: cfg.API.PingInterval,
		IdleTimeout: cfg.API.IdleTimeout, LoginTimeout: cfg.API.LoginTimeout,
		RequestTimeout: cfg.API.RequestTimeout, AckTimeout: cfg.API.AckTimeout,
		MaxConnections: cfg.API.MaxConnections, AllowedOrigins: cfg.API.AllowedOrigins,
		RequestRate: cfg.API.RequestRate, MaxOwned: cfg.API.MaxOwned, Users: users,
		MaxInFlight: cfg.API.MaxInFlight, SendQueueBytes: cfg.API.SendQueueBytes,
		SubscriptionBytes: cfg.API.SubscriptionBytes, MaxSubscriptions: cfg.API.MaxSubscriptions,
		MaxUserSessions: cfg.API.MaxUserSessions, MaxSourceSessions: cfg.API.MaxSourceSessions,
		MaxUserCalls: cfg.API.MaxUserCalls, MaxSourceCalls: cfg.API.MaxSourceCalls,
		MaxUserRooms: cfg.API.MaxUserRooms, MaxSourceRooms: cfg.API.MaxSourceRooms,
		MaxUnauthPerSource: cfg.API.MaxUnauthPerSource,
		MaxLoginsPerSource: cfg.API.MaxLoginsPerSource, MaxLogins: cfg.API.MaxLogins,
		Observer: mets, Handler: page,
	}, core, log)
	defer core.Close() // stops what is left (idempotent)
	mets.WatchCore(core.Stats, api.ConnCount)
	fronts, err := wireFrontEnds(ctx, cfg, log, core)
	if err != nil {
		return err
	}
	backendHooks.observe(mets)
	fronts.observe(mets)
	ops, err := startOps(ctx, cfg, log, mets, core)
	if err != nil {
		fronts.stop()
		return fmt.Errorf("metrics listener: %w", err)
	}
	defer ops.stop() // health and metrics answer until everything has stopped
	ln, err := api.Listen()
	if err != nil {
		fronts.stop()
		return err
	}
	log.Info("nkbridge starting", "version", version, "api", ln.Addr().String(), "users", users.Len(), "backends", backends.Names())
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	errc := make(chan error, 1)
	go func() { errc <- api.Serve(serveCtx, ln) }()
	select {
	case err := <-errc:
		fronts.stop()
		return err
	case <-ctx.Done():
	case <-drain:
		waitDrained(ctx, cfg.DrainTimeout, log, api, core, fronts.drain, clusterHooks.drain)
	}
	stopServe()
	err = <-errc
	fronts.stop()
	core.Close()
	log.Info("nkbridge stopped")
	return err
}

// waitDrained stops new work and waits until no session or call is left,
// the timeout passes, or ctx is cancelled.
func waitDrained(ctx context.Context, timeout time.Duration, log *slog.Logger, api *wsapi.Server, core *signaling.Core, others ...func()) {
	api.Drain()
	core.Drain()
	for _, d := range others {
		d()
	}
	s, c := core.Counts()
	log.Info("nkbridge draining", "sessions", s, "calls", c, "timeout", timeout)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s, c := core.Counts(); s == 0 && c == 0 {
			log.Info("nkbridge drained")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			s, c := core.Counts()
			log.Warn("nkbridge drain timeout, stopping what is left", "sessions", s, "calls", c)
			return
		case <-tick.C:
		}
	}
}

// hooks is what a piece of wiring gives the daemon for its shutdown and
// its metrics.
type hooks struct {
	Drain []func() // SIGTERM: refuse new work, keep what is in progress
	Stop  []func() // stop and release
	// Metrics are called once, after wiring, with the daemon's metrics:
	// register gauges (m.SIP().RegistrationsFunc, m.ESL().ConnectedFunc,
	// m.Media().GaugesFunc) or hand m.SIP() / m.Media() to a component
	// as its observer.
	Metrics []func(m *metrics.Metrics)
}

func (h hooks) observe(m *metrics.Metrics) {
	for _, f := range h.Metrics {
		f(m)
	}
}

func (h hooks) drain() {
	for _, f := range h.Drain {
		f()
	}
}

func (h hooks) stop() {
	for i := len(h.Stop) - 1; i >= 0; i-- {
		h.Stop[i]()
	}
}

// wireBackends registers the media backends (embedded media engine,
// FreeSWITCH) with backends.Register(name, backend, types...) and
// backends.RegisterRooms; they may publish room events on bus. Each team
// adds its wiring here, with its config section, and appends to the hooks
// (Stop runs after the core has stopped every session). With none
// registered, only p2p sessions work (others answer 2001/2002).
func wireBackends(ctx context.Context, cfg *Config, log *slog.Logger, bus *signaling.Bus, backends *signaling.Backends) (hooks, error) {
	var h hooks
	mc := cfg.Media
	mc.SDESOffers = cfg.SIP.wantsSDES()                    // SIP trunks/users with srtp: the media offers SDES keys
	eng, emb, err := wireMedia(mc, log, bus, backends, &h) // wire_media.go
	if err == nil {
		err = wireStreams(cfg.Streams, log, emb, backends, &h) // wire_streams.go
	}
	if err == nil {
		err = wireFreeSWITCH(ctx, cfg, log, bus, backends, eng, &h) // wire_freeswitch.go
	}
	if err != nil {
		h.stop()
		return hooks{}, err
	}
	return h, nil
}

// wireFrontEnds starts the other front ends (SIP, Verto) on core: they
// register call resolvers with core.AddResolver and start sessions and calls
// with core.StartSession / core.StartCall. Their hooks: Drain (SIGTERM:
// refuse new inbound calls) and Stop (before the core stops what is left).
// The API front end (wsapi) is always there and registers "user" and
// "session".
func wireFrontEnds(ctx context.Context, cfg *Config, log *slog.Logger, core *signaling.Core) (hooks, error) {
	var h hooks
	if err := wireSIP(ctx, cfg, log, core, &h); err != nil { // wire_sip.go
		h.stop()
		return hooks{}, err
	}
	if err := wireVerto(ctx, cfg, log, core, &h); err != nil { // wire_verto.go
		h.stop()
		return hooks{}, err
	}
	return h, nil
}
