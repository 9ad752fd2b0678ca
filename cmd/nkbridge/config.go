package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Config is the whole nkbridge configuration. Each section is a struct with
// yaml tags; later sections (sip, verto, media, freeswitch) are added here as
// fields and get NKB_<SECTION>_<KEY> environment overrides automatically.
type Config struct {
	DrainTimeout time.Duration  `yaml:"drain_timeout"`
	Log          LogConfig      `yaml:"log"`
	API          APIConfig      `yaml:"api"`
	Users        []UserConfig   `yaml:"users" env:"-"`
	Sessions     SessionsConfig `yaml:"sessions"`
	Calls        CallsConfig    `yaml:"calls"`
	Metrics      MetricsConfig  `yaml:"metrics"`
	Health       HealthConfig   `yaml:"health"`
	Demo         DemoConfig     `yaml:"demo"`
	Media        MediaConfig    `yaml:"media"`
	SIP          SIPConfig      `yaml:"sip"`
	Verto        VertoConfig    `yaml:"verto"`
	FreeSWITCH   FSConfig       `yaml:"freeswitch"` // wire_freeswitch.go
	CDR          CDRConfig      `yaml:"cdr"`        // wire_cdr.go
	Cluster      ClusterConfig  `yaml:"cluster"`    // wire_cluster.go
	Streams      StreamsConfig  `yaml:"streams"`    // wire_streams.go
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// APIConfig configures the WebSocket control API.
type APIConfig struct {
	Listen         string        `yaml:"listen"`
	TLSCert        string        `yaml:"tls_cert"`
	TLSKey         string        `yaml:"tls_key"`
	MaxFrameBytes  int64         `yaml:"max_frame_bytes"`
	PingInterval   time.Duration `yaml:"ping_interval"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	LoginTimeout   time.Duration `yaml:"login_timeout"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	AckTimeout     time.Duration `yaml:"ack_timeout"`
	MaxConnections int           `yaml:"max_connections"`
	RequestRate    float64       `yaml:"request_rate"`
	MaxOwned       int           `yaml:"max_owned"`
	AllowedOrigins []string      `yaml:"allowed_origins"`
	// Limits against hostile clients (docs/SECURITY.md).
	MaxInFlight        int `yaml:"max_in_flight"`
	SendQueueBytes     int `yaml:"send_queue_bytes"`
	SubscriptionBytes  int `yaml:"subscription_bytes"`
	MaxSubscriptions   int `yaml:"max_subscriptions"`
	MaxUserSessions    int `yaml:"max_user_sessions"`
	MaxSourceSessions  int `yaml:"max_source_sessions"`
	MaxUserCalls       int `yaml:"max_user_calls"`
	MaxSourceCalls     int `yaml:"max_source_calls"`
	MaxUserRooms       int `yaml:"max_user_rooms"`
	MaxSourceRooms     int `yaml:"max_source_rooms"`
	MaxUnauthPerSource int `yaml:"max_unauth_per_source"`
	MaxLoginsPerSource int `yaml:"max_logins_per_source"`
	MaxLogins          int `yaml:"max_logins"`
}

// UserConfig is one API user; the password is stored as a PBKDF2 hash.
type UserConfig struct {
	User         string `yaml:"user"`
	PasswordHash string `yaml:"password_hash"`
	Admin        bool   `yaml:"admin"` // sees and acts on every user's sessions, calls and rooms
}

// SessionsConfig configures sessions.
type SessionsConfig struct {
	WaitTimeout  time.Duration     `yaml:"wait_timeout"`
	ReadyTimeout time.Duration     `yaml:"ready_timeout"`
	Backends     map[string]string `yaml:"backends"`
}

// CallsConfig configures the call router.
type CallsConfig struct {
	RingTime    time.Duration `yaml:"ring_time"`
	MaxRingTime time.Duration `yaml:"max_ring_time"`
}

// MetricsConfig configures the operations HTTP listener (metrics and health).
type MetricsConfig struct {
	Listen string `yaml:"listen"`
	Path   string `yaml:"path"`
	Pprof  bool   `yaml:"pprof"` // /debug/pprof/ on this listener
}

// HealthConfig sets when /health reports overload (429).
type HealthConfig struct {
	MaxSessions int     `yaml:"max_sessions"`
	MaxCPU      float64 `yaml:"max_cpu"`
}

// DemoConfig configures the demo page on the API port.
type DemoConfig struct {
	Enabled bool `yaml:"enabled"`
}

// loadConfig builds the configuration: embedded defaults, then the file (if
// any), then NKB_* environment variables from env.
func loadConfig(file string, env func(string) (string, bool)) (*Config, error) {
	var cfg Config
	if err := yaml.NewDecoder(strings.NewReader(defaults.YAML()), yaml.DisallowUnknownField()).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if err := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField()).Decode(&cfg); err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "NKB", env); err != nil {
		return nil, err
	}
	return &cfg, cfg.validate()
}

func (c *Config) validate() error {
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "warning", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		return fmt.Errorf("api.tls_cert and api.tls_key go together")
	}
	if c.Metrics.Listen != "" && !strings.HasPrefix(c.Metrics.Path, "/") {
		return fmt.Errorf("metrics.path %q: must start with /", c.Metrics.Path)
	}
	if c.Metrics.Path == "/health" {
		return fmt.Errorf("metrics.path: /health is the health check")
	}
	if c.Metrics.Pprof && strings.HasPrefix(c.Metrics.Path, "/debug/pprof/") {
		return fmt.Errorf("metrics.path %q: /debug/pprof/ is the profiler's with metrics.pprof on", c.Metrics.Path)
	}
	if c.Health.MaxSessions < 0 || c.Health.MaxCPU < 0 || c.Health.MaxCPU > 100 {
		return fmt.Errorf("health: max_sessions must be >= 0 and max_cpu within 0..100")
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.User == "" || u.PasswordHash == "" {
			return fmt.Errorf("users[%d]: user and password_hash are required", i)
		}
		if seen[u.User] {
			return fmt.Errorf("users: %q listed twice", u.User)
		}
		seen[u.User] = true
	}
	return c.checkSections()
}

// applyEnv sets the fields of v from variables named prefix_<YAML KEY>,
// recursing into structs. Supported: strings, ints, bools, durations,
// []string (comma-separated) and map[string]string ("k=v,k=v").
func applyEnv(v reflect.Value, prefix string, env func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Tag.Get("env") == "-" {
			continue
		}
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(key)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		s, ok := env(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, s); err != nil {
			return fmt.Errorf("%s=%q: %w", name, s, err)
		}
	}
	return nil
}

func setFromString(fv reflect.Value, s string) error {
	if fv.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(f)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type")
		}
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		fv.Set(reflect.ValueOf(out))
	case reflect.Map:
		if fv.Type().Key().Kind() != reflect.String || fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported map type")
		}
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("want key=value pairs")
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		fv.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}
