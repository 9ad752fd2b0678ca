package stream

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/internal/egress"
)

// Config configures a Manager (section streams: of the daemon). Zero values take the
// defaults of internal/defaults.
type Config struct {
	// AllowedHosts are the hosts (names or IP addresses, as in the URL) streams may connect
	// to (streams.allowed_hosts); empty: none. ws:// is allowed only to a listed loopback
	// host; at connection time a loopback, link-local, unspecified or multicast address is
	// refused unless it is listed itself.
	AllowedHosts []string
	// AllowedUsers are the API users who may start streams (streams.allowed_users; "*" =
	// any logged-in user). Configured bots need no user.
	AllowedUsers []string
	// RootCAs verify wss:// servers (nil: the system's roots).
	RootCAs *x509.CertPool
	// QueueFrames bounds the 20 ms frames waiting for a slow application
	// (streams.queue_frames); beyond, frames are dropped and counted.
	QueueFrames int
	// PlaybackMax bounds the application's audio queued to play into the call
	// (streams.playback_max); beyond, what it sends is dropped and counted.
	PlaybackMax time.Duration
	// ConnectTimeout bounds the WebSocket connection and handshake (streams.connect_timeout).
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to the application (streams.write_timeout); a write that
	// takes longer ends the connection (a stalled application).
	WriteTimeout time.Duration
	// ReconnectAttempts is how many times a stream with reconnect on connects again after
	// losing its application (streams.reconnect_attempts), waiting ReconnectDelay, doubled
	// each time.
	ReconnectAttempts int
	ReconnectDelay    time.Duration
	// MaxMessageBytes bounds one message from the application (streams.max_message_bytes).
	MaxMessageBytes int64
	// MaxStreams bounds the streams running at once (streams.max_streams).
	MaxStreams int
	Logger     *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.QueueFrames <= 0 {
		c.QueueFrames = defaults.Int("streams.queue_frames")
	}
	if c.PlaybackMax <= 0 {
		c.PlaybackMax = defaults.Duration("streams.playback_max")
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaults.Duration("streams.connect_timeout")
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaults.Duration("streams.write_timeout")
	}
	if c.ReconnectAttempts < 0 {
		c.ReconnectAttempts = 0
	}
	if c.ReconnectDelay <= 0 {
		c.ReconnectDelay = defaults.Duration("streams.reconnect_delay")
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = int64(defaults.Int("streams.max_message_bytes"))
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = defaults.Int("streams.max_streams")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Options are one stream's options (the API's stream object, or a configured bot).
type Options struct {
	URL           string         `json:"url" yaml:"url"`
	Mix           string         `json:"mix,omitempty" yaml:"mix"`                         // mono (default), stereo, mixed
	SampleRate    int            `json:"sample_rate,omitempty" yaml:"sample_rate"`         // 8000 (default) or 16000
	Bidirectional bool           `json:"bidirectional,omitempty" yaml:"bidirectional"`     // the application's audio is played to the caller
	Metadata      map[string]any `json:"metadata,omitempty" yaml:"metadata"`               // passed in the start message
	Framing       string         `json:"framing,omitempty" yaml:"framing"`                 // nkbridge (default) or twilio
	Reconnect     bool           `json:"reconnect,omitempty" yaml:"reconnect"`             // connect again after losing the application
	HangupOnClose bool           `json:"hangup_on_close,omitempty" yaml:"hangup_on_close"` // the application leaving ends the session
}

// ErrNotAllowed wraps refusals by the allow-lists; the text names the setting.
var ErrNotAllowed = errors.New("stream: not allowed")

// ErrBadOptions wraps invalid stream options.
var ErrBadOptions = errors.New("stream: bad options")

// Normalize checks o and fills in its defaults.
func (o *Options) Normalize() error {
	if o.Mix == "" {
		o.Mix = MixMono
	}
	if o.SampleRate == 0 {
		o.SampleRate = 8000
	}
	if o.Framing == "" {
		o.Framing = FramingNkbridge
	}
	switch {
	case o.URL == "":
		return fmt.Errorf("%w: url is required", ErrBadOptions)
	case o.Mix != MixMono && o.Mix != MixStereo && o.Mix != MixMixed:
		return fmt.Errorf("%w: mix %q (want mono, stereo or mixed)", ErrBadOptions, o.Mix)
	case o.SampleRate != 8000 && o.SampleRate != 16000:
		return fmt.Errorf("%w: sample_rate %d (want 8000 or 16000)", ErrBadOptions, o.SampleRate)
	case o.Framing != FramingNkbridge && o.Framing != FramingTwilio:
		return fmt.Errorf("%w: framing %q (want nkbridge or twilio)", ErrBadOptions, o.Framing)
	case o.Framing == FramingTwilio && o.SampleRate != 8000:
		return fmt.Errorf("%w: twilio framing is µ-law at 8000 Hz (sample_rate %d)", ErrBadOptions, o.SampleRate)
	}
	return nil
}

// CheckURL checks raw against allowed (streams.allowed_hosts): ws:// or wss://, a listed host,
// plain ws:// only to a loopback host, no credentials.
func CheckURL(raw string, allowed []string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: bad stream URL %q", ErrBadOptions, raw)
	}
	host := u.Hostname()
	if !slices.Contains(allowed, host) {
		if len(allowed) == 0 {
			return nil, fmt.Errorf("%w: stream host %q: streams.allowed_hosts is empty", ErrNotAllowed, host)
		}
		return nil, fmt.Errorf("%w: stream host %q is not in streams.allowed_hosts", ErrNotAllowed, host)
	}
	switch strings.ToLower(u.Scheme) {
	case "wss":
	case "ws":
		if !egress.LoopbackHost(host) {
			return nil, fmt.Errorf("%w: stream URL %q: ws:// only to a loopback host, use wss://", ErrNotAllowed, raw)
		}
	default:
		return nil, fmt.Errorf("%w: stream URL %q: scheme must be ws or wss", ErrBadOptions, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: stream URL %q: no credentials in the URL", ErrBadOptions, raw)
	}
	return u, nil
}

// guardedAddr refuses a connection to an address of this machine or its link that the
// allow-list does not name (egress.AddrAllowed).
func guardedAddr(ip net.IP, allowed []string) error {
	if egress.AddrAllowed(ip, allowed) {
		return nil
	}
	return fmt.Errorf("%w: connection to %s refused: not listed in streams.allowed_hosts", ErrNotAllowed, ip)
}

// userAllowed reports whether API user may start streams.
func userAllowed(user string, allowed []string) bool {
	return slices.Contains(allowed, "*") || user != "" && slices.Contains(allowed, user)
}
