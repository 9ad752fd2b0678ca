// Command nkbridge is the nkbridge daemon: the NkMEDIA External Interface
// control API over WebSocket, with SIP, Verto and media backends plugged in.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

const version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "nkbridge:", err)
		os.Exit(1)
	}
}

// run is the whole program; it returns when ctx is cancelled (SIGINT or
// SIGTERM) after a graceful stop.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("nkbridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile  = fs.String("config", "", "YAML configuration `file` (default: embedded defaults)")
		apiListen   = fs.String("api-listen", "", "control API listen `address` (overrides api.listen)")
		logLevel    = fs.String("log-level", "", "log `level`: debug, info, warn, error (overrides log.level)")
		logFormat   = fs.String("log-format", "", "log `format`: text or json (overrides log.format)")
		showVersion = fs.Bool("version", false, "print the version and exit")
		hashPw      = fs.Bool("hash-password", false, "read a password from stdin, print its password_hash and exit")
		checkConfig = fs.Bool("check-config", false, "print the effective configuration and exit")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "nkbridge", version)
		return nil
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
		b, err := yaml.Marshal(cfg)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	log := newLogger(cfg.Log, stderr)
	return serve(ctx, cfg, log)
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

// serve wires the daemon together and runs it until ctx is done.
func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	hashes := make(map[string]string, len(cfg.Users))
	for _, u := range cfg.Users {
		hashes[u.User] = u.PasswordHash
	}
	users, err := auth.NewUsers(hashes)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if err := wsapi.CheckListen(cfg.API.Listen, users); err != nil {
		return err
	}

	bus := signaling.NewBus()
	backends := signaling.NewBackends()
	if err := wireBackends(ctx, cfg, log, bus, backends); err != nil {
		return err
	}
	for typ, name := range cfg.Sessions.Backends {
		backends.SetDefault(typ, name)
	}
	core := signaling.New(signaling.Options{
		Logger: log, Bus: bus, Backends: backends,
		WaitTimeout: cfg.Sessions.WaitTimeout, ReadyTimeout: cfg.Sessions.ReadyTimeout,
		RingTime: cfg.Calls.RingTime, MaxRingTime: cfg.Calls.MaxRingTime,
	})
	api := wsapi.New(wsapi.Config{
		Listen: cfg.API.Listen, TLSCert: cfg.API.TLSCert, TLSKey: cfg.API.TLSKey,
		MaxFrameBytes: cfg.API.MaxFrameBytes, PingInterval: cfg.API.PingInterval,
		IdleTimeout: cfg.API.IdleTimeout, LoginTimeout: cfg.API.LoginTimeout,
		RequestTimeout: cfg.API.RequestTimeout, AckTimeout: cfg.API.AckTimeout,
		MaxConnections: cfg.API.MaxConnections, AllowedOrigins: cfg.API.AllowedOrigins,
		RequestRate: cfg.API.RequestRate, MaxOwned: cfg.API.MaxOwned, Users: users,
	}, core, log)
	if err := wireFrontEnds(ctx, cfg, log, core); err != nil {
		return err
	}
	ln, err := api.Listen()
	if err != nil {
		return err
	}
	log.Info("nkbridge starting", "version", version, "api", ln.Addr().String(), "users", users.Len(), "backends", backends.Names())
	err = api.Serve(ctx, ln)
	core.Close()
	log.Info("nkbridge stopped")
	return err
}

// wireBackends registers the media backends (embedded media engine,
// FreeSWITCH) with backends.Register(name, backend, types...); they may
// publish room events on bus. Their teams add their wiring here. With none
// registered, only p2p sessions work (others answer 2001/2002).
func wireBackends(_ context.Context, _ *Config, _ *slog.Logger, _ *signaling.Bus, _ *signaling.Backends) error {
	return nil
}

// wireFrontEnds starts the other front ends (SIP, Verto) on core: they
// register their call resolvers with core.AddResolver and start sessions and
// calls with core.StartSession / core.StartCall. Their teams add them here.
// The API front end (wsapi) is always there and registers "user" and "session".
func wireFrontEnds(_ context.Context, _ *Config, _ *slog.Logger, _ *signaling.Core) error {
	return nil
}
