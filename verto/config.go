package verto

import (
	"crypto/tls"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Config holds the Verto server settings. The zero value is usable: [Config.withDefaults] fills in
// loopback-only, size- and rate-limited defaults.
type Config struct {
	// Addr is the listen address for ListenAndServe (default "127.0.0.1:8081").
	Addr string
	// TLS, when set, makes ListenAndServe serve wss instead of ws.
	TLS *tls.Config
	// CertFile and KeyFile, when both set and TLS is nil, load a certificate for wss.
	CertFile, KeyFile string
	// AllowedOrigins lists the Origin header values accepted on the WebSocket upgrade. Empty means
	// same-origin requests and requests without Origin only; "*" allows every origin.
	AllowedOrigins []string
	// LoopbackHostOnly refuses upgrades whose Host header is not a loopback address or
	// "localhost" (set it when logins are anonymous: a page on a domain resolving to 127.0.0.1,
	// DNS rebinding, is same-origin to itself).
	LoopbackHostOnly bool
	// MaxConnectionsPerIP caps the concurrent sockets of one IP address
	// (verto.max_connections_per_ip); more get HTTP 503.
	MaxConnectionsPerIP int
	// MaxLoginsPerIP caps the password checks in progress for one IP address
	// (verto.max_logins_per_ip; more are refused at once), MaxLogins those in all
	// (verto.max_logins; more wait). An address or user locked out after failures is refused
	// before any password check.
	MaxLoginsPerIP int
	MaxLogins      int

	// MaxFrameBytes caps one incoming frame (default verto.max_frame_bytes of internal/defaults); a bigger frame closes the socket
	// with close code 1009.
	MaxFrameBytes int64
	// RequestRate / RequestBurst is the token bucket for all requests of one connection
	// (default 20/s, burst 60).
	RequestRate  float64
	RequestBurst int
	// InviteRate / InviteBurst is the token bucket for verto.invite per connection (default 1/s,
	// burst 4).
	InviteRate  float64
	InviteBurst int
	// MaxCallsPerSession caps concurrent calls of one sessid (default 16).
	MaxCallsPerSession int
	// MaxConnections caps concurrent sockets (default verto.max_connections); more get HTTP 503.
	MaxConnections int
	// MaxSessionsPerUser caps the sessids one user may hold at once (default 32).
	MaxSessionsPerUser int

	// LoginTimeout closes a connection that has not logged in within it (default 60 s).
	LoginTimeout time.Duration
	// LoginFailDelay is the first back-off after a failed login; it doubles per failure up to
	// 3.2 s (default 100 ms). After MaxLoginFailures failures (default 10) the socket is closed.
	LoginFailDelay   time.Duration
	MaxLoginFailures int
	// MaxLoginFailuresPerIP: after this many failed logins from one IP address within
	// LoginLockout (default 30 in 10 minutes), logins from it are refused at once until the
	// window passes, whatever socket they come on.
	MaxLoginFailuresPerIP int
	LoginLockout          time.Duration
	// PingInterval: the server sends verto.ping after this long without any frame from the client
	// (default 30 s, like mod_verto).
	PingInterval time.Duration
	// WriteTimeout bounds one WebSocket write (default 10 s).
	WriteTimeout time.Duration
	// DetachGrace keeps answered calls of a disconnected sessid for re-attach (default verto.detach_grace, 120 s as
	// mod_verto's detach-timeout-sec). After it they are hung up with RECOVERY_ON_TIMER_EXPIRE.
	DetachGrace time.Duration
	// KeepDomain passes the whole "user@domain" login as Credentials.User; by default the
	// "@domain" part is chopped off (mod_verto chop-domain).
	KeepDomain bool
	// OnPresence, if set, is told when a login of user (sessid) gets a live socket (online) and
	// when it loses it; called without the server's locks, it must not block.
	OnPresence func(user, sessid string, online bool)
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = defaults.String("verto.listen")
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = int64(defaults.Int("verto.max_frame_bytes"))
	}
	if c.MaxConnectionsPerIP <= 0 {
		c.MaxConnectionsPerIP = defaults.Int("verto.max_connections_per_ip")
	}
	if c.MaxLoginsPerIP <= 0 {
		c.MaxLoginsPerIP = defaults.Int("verto.max_logins_per_ip")
	}
	if c.MaxLogins <= 0 {
		c.MaxLogins = defaults.Int("verto.max_logins")
	}
	if c.RequestRate <= 0 {
		c.RequestRate = 20
	}
	if c.RequestBurst <= 0 {
		c.RequestBurst = 60
	}
	if c.InviteRate <= 0 {
		c.InviteRate = 1
	}
	if c.InviteBurst <= 0 {
		c.InviteBurst = 4
	}
	if c.MaxCallsPerSession <= 0 {
		c.MaxCallsPerSession = 16
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = defaults.Int("verto.max_connections")
	}
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = 32
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = 60 * time.Second
	}
	if c.LoginFailDelay <= 0 {
		c.LoginFailDelay = 100 * time.Millisecond
	}
	if c.MaxLoginFailures <= 0 {
		c.MaxLoginFailures = 10
	}
	if c.MaxLoginFailuresPerIP <= 0 {
		c.MaxLoginFailuresPerIP = 30
	}
	if c.LoginLockout <= 0 {
		c.LoginLockout = 10 * time.Minute
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.DetachGrace <= 0 {
		c.DetachGrace = defaults.Duration("verto.detach_grace")
	}
	return c
}
