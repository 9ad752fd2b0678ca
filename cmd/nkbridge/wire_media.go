package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// MediaConfig configures the embedded media engine (section media:).
type MediaConfig struct {
	// SDESOffers is not configured: it is set when a SIP trunk or user may use SRTP
	// (SIPConfig.wantsSDES).
	SDESOffers   bool          `yaml:"-"`
	Enabled      bool          `yaml:"enabled"`
	BindIP       string        `yaml:"bind_ip"`
	UDPPort      int           `yaml:"udp_port"`
	TCPPort      int           `yaml:"tcp_port"`
	ICELite      bool          `yaml:"ice_lite"`
	PublicIP     string        `yaml:"public_ip"`
	RTPPortMin   int           `yaml:"rtp_port_min"`
	RTPPortMax   int           `yaml:"rtp_port_max"`
	Quarantine   time.Duration `yaml:"quarantine"`
	MediaTimeout time.Duration `yaml:"media_timeout"`
	ICETimeout   time.Duration `yaml:"ice_timeout"`
	RecordDir    string        `yaml:"record_dir"`
	MaxSessions  int           `yaml:"max_sessions"`
	// RTPLatch: which sources plain-RTP legs accept: strict (the SDP's address), ip (the
	// SDP's host, any port) or any (first source; phones behind NAT).
	RTPLatch string `yaml:"rtp_latch"`
	// RTPPortsPerUser and RTPPortsReserve bound one user's share of the RTP port pairs.
	RTPPortsPerUser   int           `yaml:"rtp_ports_per_user"`
	RTPPortsReserve   int           `yaml:"rtp_ports_reserve"`
	RecordMaxBytes    int64         `yaml:"record_max_bytes"`
	RecordMaxDuration time.Duration `yaml:"record_max_duration"`
	// Rooms (publish/listen/park/mcu): park_file is a WAV looped to parked calls (empty:
	// silence), room_empty_grace how long an empty room lives, rooms_create_missing lets
	// publish/mcu create an unknown room_id (else 2030).
	ParkFile           string        `yaml:"park_file"`
	RoomEmptyGrace     time.Duration `yaml:"room_empty_grace"`
	RoomsCreateMissing bool          `yaml:"rooms_create_missing"`
	// Kernel receive buffers (SO_RCVBUF) of the WebRTC UDP port and of each plain RTP
	// socket, bytes; 0: the kernel default.
	UDPReadBuffer int `yaml:"udp_read_buffer"`
	RTPReadBuffer int `yaml:"rtp_read_buffer"`
}

// kernelDefaultIfZero maps a socket buffer setting to the packages' convention:
// 0 in the file means the kernel default, which the packages spell negative
// (their 0 takes the embedded default).
func kernelDefaultIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// engineConfig checks c and turns it into the engine's configuration.
func (c MediaConfig) engineConfig(log *slog.Logger) (media.Config, error) {
	bind, err := netip.ParseAddr(c.BindIP)
	if err != nil {
		return media.Config{}, fmt.Errorf("media.bind_ip %q: want an IP address", c.BindIP)
	}
	var public netip.Addr
	if c.PublicIP != "" {
		if public, err = netip.ParseAddr(c.PublicIP); err != nil || public.IsUnspecified() {
			return media.Config{}, fmt.Errorf("media.public_ip %q: want a specific IP address", c.PublicIP)
		}
	}
	if bind.IsUnspecified() && !public.IsValid() {
		return media.Config{}, fmt.Errorf("media.bind_ip %s needs media.public_ip (the address peers reach)", bind)
	}
	if c.UDPPort < 0 || c.UDPPort > 65535 || c.TCPPort < -1 || c.TCPPort > 65535 {
		return media.Config{}, fmt.Errorf("media.udp_port / media.tcp_port out of range")
	}
	if c.RTPPortMin < 1024 || c.RTPPortMax > 65535 || c.RTPPortMax-c.RTPPortMin < 3 {
		return media.Config{}, fmt.Errorf("media.rtp_port_min..rtp_port_max %d..%d: want a range of at least 2 port pairs within 1024..65535", c.RTPPortMin, c.RTPPortMax)
	}
	if c.UDPPort >= c.RTPPortMin && c.UDPPort <= c.RTPPortMax {
		return media.Config{}, fmt.Errorf("media.udp_port %d is inside the RTP port range", c.UDPPort)
	}
	if c.MaxSessions < 0 {
		return media.Config{}, fmt.Errorf("media.max_sessions must be >= 0")
	}
	if c.RTPLatch == "" {
		c.RTPLatch = string(plainrtp.LatchStrict)
	}
	if !plainrtp.LatchMode(c.RTPLatch).Valid() {
		return media.Config{}, fmt.Errorf("media.rtp_latch %q: want strict, ip or any", c.RTPLatch)
	}
	if c.RecordMaxBytes < 0 || c.RecordMaxDuration < 0 {
		return media.Config{}, fmt.Errorf("media.record_max_bytes and media.record_max_duration must be >= 0 (0 = default)")
	}
	return media.Config{
		BindIP: bind, UDPPort: c.UDPPort, TCPPort: c.TCPPort, ICELite: c.ICELite, PublicIP: public,
		RTPPortMin: c.RTPPortMin, RTPPortMax: c.RTPPortMax, Quarantine: c.Quarantine,
		MediaTimeout: c.MediaTimeout, ICETimeout: c.ICETimeout, RecordDir: c.RecordDir,
		MaxSessions: c.MaxSessions, Logger: log.With("component", "media"),
		RTPLatch: plainrtp.LatchMode(c.RTPLatch), RTPPortsPerUser: c.RTPPortsPerUser, RTPPortsReserve: c.RTPPortsReserve,
		RecordMaxBytes: c.RecordMaxBytes, RecordMaxDuration: c.RecordMaxDuration,
		UDPReadBuffer: kernelDefaultIfZero(c.UDPReadBuffer), RTPReadBuffer: kernelDefaultIfZero(c.RTPReadBuffer),
		SDESOffers: c.SDESOffers,
	}, nil
}

// wireMedia starts the embedded media engine (unless media.enabled is false)
// and registers it as backend "media" for echo and proxy. Its Stop hooks
// close the backend, then the engine. It returns the engine and backend (nil
// when disabled) for other wiring. Room events are published on bus (nil:
// dropped): FreeSWITCH legs use the engine; the SIP and Verto front ends
// reach the backend's sessions through the core (signaling.MediaAs).
func wireMedia(c MediaConfig, log *slog.Logger, bus *signaling.Bus, backends *signaling.Backends, h *hooks) (*media.Engine, *embedded.Backend, error) {
	if !c.Enabled {
		log.Info("embedded media engine disabled")
		return nil, nil, nil
	}
	mc, err := c.engineConfig(log)
	if err != nil {
		return nil, nil, err
	}
	if mc.RecordDir != "" {
		if err := os.MkdirAll(mc.RecordDir, 0o750); err != nil {
			return nil, nil, fmt.Errorf("media.record_dir: %w", err)
		}
	}
	eng, err := media.New(mc)
	if err != nil {
		return nil, nil, fmt.Errorf("media engine: %w", err)
	}
	b := embedded.New(eng, log)
	rooms, err := b.EnableRooms(embedded.RoomsConfig{EmptyGrace: c.RoomEmptyGrace, CreateMissing: c.RoomsCreateMissing,
		ParkFile: c.ParkFile, RecordDir: mc.RecordDir, RecordMaxBytes: mc.RecordMaxBytes, RecordMaxDuration: mc.RecordMaxDuration, OnEvent: func(ev signaling.Event) {
			if bus != nil {
				bus.Publish(ev)
			}
		}})
	if err != nil {
		_ = eng.Close()
		return nil, nil, fmt.Errorf("media.park_file: %w", err)
	}
	backends.Register(embedded.Name, b, append(embedded.Types(), embedded.RoomTypes()...)...)
	backends.RegisterRooms(embedded.Name, rooms, signaling.RoomSFU, signaling.RoomMCU)
	// Offer adaptation (one call ringing a browser and a SIP phone): aux proxy sessions on an
	// engine of their own, as one engine's WebRTC legs cannot reach each other. Same addresses
	// and RTP range (each engine skips the ports the other holds), WebRTC on a free UDP port,
	// full ICE (two ICE-lite agents never connect), no ICE-TCP.
	amc := mc
	amc.UDPPort, amc.TCPPort, amc.ICELite, amc.Logger = 0, 0, false, log.With("component", "media-adapt")
	aeng, err := media.New(amc)
	if err != nil {
		b.Close()
		_ = eng.Close()
		return nil, nil, fmt.Errorf("media engine for offer adaptation: %w", err)
	}
	ab := embedded.New(aeng, log.With("role", "offer-adapter"))
	backends.SetOfferAdapter(embedded.NewAdapter(ab))
	// run in reverse: backends (rooms, aux sessions), then engines
	h.Stop = append(h.Stop, func() { _ = aeng.Close(); _ = eng.Close() }, func() { ab.Close(); b.Close() })
	h.Metrics = append(h.Metrics, func(m *metrics.Metrics) {
		m.Media().GaugesFunc(embedded.Name, func() metrics.MediaGauges {
			st := eng.Stats()
			ast := aeng.Stats() // offer adaptation's aux sessions are media load too
			return metrics.MediaGauges{Sessions: st.Sessions + ast.Sessions, Transcoding: b.Transcoding() + ab.Transcoding(),
				RTPPorts: st.RTPPortsInUse + ast.RTPPortsInUse}
		})
		m.Media().TrafficFunc(embedded.Name, func() metrics.MediaTraffic {
			t := eng.Traffic() // cumulative, counted as packets flow: moves during calls
			return metrics.MediaTraffic{PacketsIn: t.PacketsIn, PacketsOut: t.PacketsOut, BytesIn: t.BytesIn, BytesOut: t.BytesOut,
				Lost: t.Lost, Streams: t.Streams, JitterMax: t.JitterMax, JitterMean: t.JitterMean}
		})
	})
	log.Info("embedded media engine started", "bind", mc.BindIP, "udp_port", eng.UDPPort(), "tcp_port", eng.TCPPort(),
		"ice_lite", mc.ICELite, "public_ip", c.PublicIP, "rtp_ports", fmt.Sprintf("%d-%d", mc.RTPPortMin, mc.RTPPortMax),
		"record_dir", mc.RecordDir, "rtp_latch", mc.RTPLatch, "types", append(embedded.Types(), embedded.RoomTypes()...))
	return eng, b, nil
}
