package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/internal/sockbuf"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// Kind is the kind of an SDP / endpoint: WebRTC (ICE + DTLS-SRTP) or plain RTP.
type Kind string

// Endpoint kinds, spelled as the control API's sdp_type.
const (
	KindWebRTC Kind = "webrtc"
	KindRTP    Kind = "rtp"
)

func (k Kind) valid() bool { return k == KindWebRTC || k == KindRTP }

// Description is an SDP offer or answer and the kind of endpoint it describes.
type Description struct {
	Kind Kind
	SDP  string
}

// Config configures an Engine. The zero value of every field has a usable default except
// BindIP, which must be set.
type Config struct {
	// BindIP is the local address of the WebRTC UDP mux, the ICE-TCP listener and the RTP ports
	// (e.g. 127.0.0.1 in tests). An unspecified address (0.0.0.0) needs PublicIP.
	BindIP netip.Addr
	// UDPPort is the single UDP port every WebRTC peer uses (ICE UDP mux); 0 picks a free one.
	UDPPort int
	// TCPPort enables ICE-TCP (passive) on this port when > 0; -1 picks a free port; 0 disables.
	TCPPort int
	// ICELite makes the WebRTC endpoints ICE-lite (host candidates only, controlled role).
	ICELite bool
	// PublicIP, if set, is advertised instead of BindIP in WebRTC candidates (NAT 1:1) and in
	// plain-RTP SDP.
	PublicIP netip.Addr
	// AllowedIPs restricts the local addresses ICE gathers candidates on; empty means BindIP
	// when it is specified, otherwise every address.
	AllowedIPs []netip.Addr
	// EnableMDNS lets WebRTC endpoints gather and resolve mDNS candidates (off by default).
	EnableMDNS bool
	// RTPPortMin and RTPPortMax bound the plain RTP port pool (default media.rtp_port_min, media.rtp_port_max of internal/defaults).
	RTPPortMin, RTPPortMax int
	// Quarantine is how long released RTP ports stay unused (default media.quarantine; negative disables).
	Quarantine time.Duration
	// RTPLatch says which sources a plain-RTP leg accepts media from (default media.rtp_latch,
	// strict: only the address in the peer's SDP; see plainrtp.LatchMode).
	RTPLatch plainrtp.LatchMode
	// RTPPortsPerUser caps the RTP port pairs the sessions of one user (SessionOptions.Owner)
	// hold at once (default media.rtp_ports_per_user; 0 there: a quarter of the range);
	// negative: no cap.
	RTPPortsPerUser int
	// RTPPortsReserve is how many port pairs a user already holding two cannot take (default
	// media.rtp_ports_reserve; 0 there: a tenth of the range); negative: none.
	RTPPortsReserve int
	// MediaTimeout stops a session whose peer sends no RTP for this long (default media.media_timeout;
	// negative disables). It does not run while the session is on hold.
	MediaTimeout time.Duration
	// ICETimeout is how long ICE may stay disconnected before it counts as failed (default media.ice_timeout).
	ICETimeout time.Duration
	// RecordDir is where recordings are written; recording is refused when empty.
	RecordDir string
	// RecordMaxBytes bounds one recording file's audio data (default media.record_max_bytes,
	// 100 MiB: about 109 minutes at 8 kHz 16-bit); RecordMaxDuration bounds its length in time
	// (default media.record_max_duration, 1 h). When either is reached the recording stops (not
	// the session) and OnRecordStop is told.
	RecordMaxBytes    int64
	RecordMaxDuration time.Duration
	// MaxSessions caps concurrent sessions (default media.max_sessions).
	MaxSessions int
	// UDPReadBuffer is the kernel receive buffer (SO_RCVBUF) asked for on the WebRTC UDP
	// port, in bytes (default media.udp_read_buffer); RTPReadBuffer likewise for each plain
	// RTP socket (default media.rtp_read_buffer). Negative: the kernel default. A cap by
	// net.core.rmem_max is logged as a warning.
	UDPReadBuffer, RTPReadBuffer int
	// SDESOffers puts SDES keys (a=crypto, RFC 4568) for every suite nkbridge speaks in the
	// plain-RTP offers of proxy sessions' far sides, profile RTP/AVP (best-effort SRTP): a
	// far side that answers with one gets SRTP, one that ignores them plain RTP. The SIP front
	// end strips them, or requires SRTP, per trunk and user (sip.trunks[].srtp). Answers to
	// offers with SDES keys always use SRTP, whatever this says.
	SDESOffers bool
	// Logger receives the engine's logs (default: discard).
	Logger *slog.Logger
}

// Errors returned by the Engine.
var (
	ErrClosed      = errors.New("media: engine closed")
	ErrTooMany     = errors.New("media: too many sessions")
	ErrBadKind     = errors.New("media: sdp kind must be \"webrtc\" or \"rtp\"")
	ErrBadSDP      = errors.New("media: bad SDP")
	ErrNoAudio     = errors.New("media: SDP has no audio stream")
	ErrNoCodec     = errors.New("media: no common audio codec")
	ErrState       = errors.New("media: operation not valid in this session state")
	ErrNoRecordDir = errors.New("media: recording is not configured (no record dir)")
	// ErrPortQuota wraps a refusal by the per-user RTP port limits; its text names the setting.
	ErrPortQuota = errors.New("media: RTP port quota")
)

// Engine owns the shared sockets (UDP mux, TCP listener, RTP port pool) and the sessions.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	api       *webrtc.API
	udpConn   *net.UDPConn
	udpMux    ice.UDPMux
	tcpLn     *net.TCPListener
	tcpMux    ice.TCPMux
	pool      *plainrtp.PortPool
	traffic   traffic // RTP counters (traffic.go)
	advertise netip.Addr

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
	nextID   uint64
}

// New opens the engine's sockets and returns it. Close releases them.
func New(cfg Config) (*Engine, error) {
	if !cfg.BindIP.IsValid() {
		return nil, errors.New("media: Config.BindIP is required")
	}
	if cfg.BindIP.IsUnspecified() && !cfg.PublicIP.IsValid() {
		return nil, errors.New("media: Config.PublicIP is required when BindIP is unspecified")
	}
	if cfg.RTPPortMin == 0 && cfg.RTPPortMax == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = defaults.Int("media.rtp_port_min"), defaults.Int("media.rtp_port_max")
	}
	if cfg.Quarantine == 0 {
		cfg.Quarantine = defaults.Duration("media.quarantine")
	} else if cfg.Quarantine < 0 {
		cfg.Quarantine = 0
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = defaults.Duration("media.media_timeout")
	}
	if cfg.ICETimeout <= 0 {
		cfg.ICETimeout = defaults.Duration("media.ice_timeout")
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = defaults.Int("media.max_sessions")
	}
	if cfg.RTPLatch == "" {
		cfg.RTPLatch = plainrtp.LatchMode(defaults.String("media.rtp_latch"))
	}
	if !cfg.RTPLatch.Valid() {
		return nil, fmt.Errorf("media: RTP latch mode %q: want strict, ip or any", cfg.RTPLatch)
	}
	if cfg.RecordMaxBytes <= 0 {
		cfg.RecordMaxBytes = int64(defaults.Int("media.record_max_bytes"))
	}
	if cfg.RecordMaxDuration <= 0 {
		cfg.RecordMaxDuration = defaults.Duration("media.record_max_duration")
	}
	if cfg.RTPPortsPerUser == 0 {
		cfg.RTPPortsPerUser = defaults.Int("media.rtp_ports_per_user")
	}
	if cfg.RTPPortsReserve == 0 {
		cfg.RTPPortsReserve = defaults.Int("media.rtp_ports_reserve")
	}
	if cfg.UDPReadBuffer == 0 {
		cfg.UDPReadBuffer = defaults.Int("media.udp_read_buffer")
	}
	if cfg.RTPReadBuffer == 0 {
		cfg.RTPReadBuffer = defaults.Int("media.rtp_read_buffer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RecordDir != "" {
		if st, err := os.Stat(cfg.RecordDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("media: record dir %q is not a directory", cfg.RecordDir)
		}
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, sessions: map[*Session]struct{}{}}
	e.advertise = cfg.BindIP
	if cfg.PublicIP.IsValid() {
		e.advertise = cfg.PublicIP
	}
	pool, err := plainrtp.NewPortPool(cfg.BindIP, cfg.RTPPortMin, cfg.RTPPortMax, cfg.Quarantine, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := pool.SetLatchMode(cfg.RTPLatch); err != nil {
		return nil, err
	}
	perUser, reserve := cfg.RTPPortsPerUser, cfg.RTPPortsReserve
	if perUser == 0 {
		perUser = max(pool.Pairs()/4, 1)
	}
	if reserve == 0 {
		reserve = pool.Pairs() / 10
	}
	pool.SetOwnerLimits(perUser, reserve)
	pool.SetReadBuffer(cfg.RTPReadBuffer)
	e.cfg.RTPPortsPerUser, e.cfg.RTPPortsReserve = perUser, reserve
	e.pool = pool
	if err := e.openWebRTC(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Engine) openWebRTC() error {
	cfg := e.cfg
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.BindIP, uint16(cfg.UDPPort))))
	if err != nil {
		return fmt.Errorf("media: WebRTC UDP port: %w", err)
	}
	sockbuf.Apply(udp, cfg.UDPReadBuffer, "media.udp_read_buffer", "webrtc udp "+udp.LocalAddr().String(), e.log)
	e.udpConn = udp
	lf := &pionLogFactory{log: e.log}
	e.udpMux = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), udp)

	var se webrtc.SettingEngine
	se.LoggerFactory = lf
	se.SetICEUDPMux(e.udpMux)
	nets := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.TCPPort != 0 {
		port := max(cfg.TCPPort, 0)
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(cfg.BindIP, uint16(port))))
		if err != nil {
			return fmt.Errorf("media: WebRTC TCP port: %w", err)
		}
		e.tcpLn = ln
		e.tcpMux = webrtc.NewICETCPMux(lf.NewLogger("tcpmux"), ln, 32)
		se.SetICETCPMux(e.tcpMux)
		nets = append(nets, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(nets)
	se.SetLite(cfg.ICELite)
	se.SetICETimeouts(cfg.ICETimeout/2, cfg.ICETimeout, 2*time.Second)
	if !cfg.EnableMDNS {
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	allowed := cfg.AllowedIPs
	if len(allowed) == 0 && !cfg.BindIP.IsUnspecified() {
		allowed = []netip.Addr{cfg.BindIP}
	}
	if len(allowed) > 0 {
		se.SetIPFilter(func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				return false
			}
			a = a.Unmap()
			for _, x := range allowed {
				if x == a {
					return true
				}
			}
			return false
		})
	}
	if cfg.BindIP.IsLoopback() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if cfg.PublicIP.IsValid() {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: []string{cfg.PublicIP.String()},
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
			return err
		}
	}

	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return err
	}
	e.api = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir))
	return nil
}

// UDPPort returns the WebRTC UDP mux port.
func (e *Engine) UDPPort() int { return e.udpConn.LocalAddr().(*net.UDPAddr).Port }

// TCPPort returns the ICE-TCP port, or 0 when TCP is disabled.
func (e *Engine) TCPPort() int {
	if e.tcpLn == nil {
		return 0
	}
	return e.tcpLn.Addr().(*net.TCPAddr).Port
}

// Pool returns the plain RTP port pool (for SIP legs that need a bare RTP endpoint).
func (e *Engine) Pool() *plainrtp.PortPool { return e.pool }

// AdvertisedIP is the address put in plain-RTP SDP (PublicIP, else BindIP).
func (e *Engine) AdvertisedIP() netip.Addr { return e.advertise }

// EngineStats are engine-wide gauges (for metrics).
type EngineStats struct {
	Sessions       int
	RTPPortsInUse  int // port pairs
	RTPQuarantined int // port pairs
	WebRTCUDPPort  int
	WebRTCTCPPort  int // 0 when disabled
}

// Stats returns engine-wide gauges.
func (e *Engine) Stats() EngineStats {
	return EngineStats{Sessions: e.Sessions(), RTPPortsInUse: e.pool.InUse(), RTPQuarantined: e.pool.Quarantined(),
		WebRTCUDPPort: e.UDPPort(), WebRTCTCPPort: e.TCPPort()}
}

// Sessions returns the number of live sessions.
func (e *Engine) Sessions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

func (e *Engine) register(s *Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if len(e.sessions) >= e.cfg.MaxSessions {
		return ErrTooMany
	}
	e.nextID++
	if s.id == "" {
		s.id = "m" + strconv.FormatUint(e.nextID, 10)
	}
	s.log = e.log.With("media_session", s.id)
	e.sessions[s] = struct{}{}
	return nil
}

func (e *Engine) unregister(s *Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	e.mu.Unlock()
}

// Close stops every session (their OnStop callbacks get CauseEngineClosed), and releases the
// sockets. It is safe to call more than once.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	list := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		list = append(list, s)
	}
	e.mu.Unlock()
	for _, s := range list {
		s.stop(StopInfo{Cause: CauseEngineClosed, Reason: "media engine shut down"}, true)
		<-s.cleaned
	}
	if e.pool != nil {
		e.pool.Close()
	}
	if e.udpMux != nil {
		e.udpMux.Close()
	}
	if e.udpConn != nil {
		e.udpConn.Close()
	}
	if e.tcpMux != nil {
		e.tcpMux.Close()
	}
	if e.tcpLn != nil {
		e.tcpLn.Close()
	}
	return nil
}

// waitCtx waits for ch or ctx.
func waitCtx(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// portErr names the setting behind a refusal of the RTP port pool.
func (e *Engine) portErr(owner string, err error) error {
	switch {
	case errors.Is(err, plainrtp.ErrOwnerQuota):
		return fmt.Errorf("%w: user %q holds %d RTP port pairs, the limit (media.rtp_ports_per_user)", ErrPortQuota, owner, e.cfg.RTPPortsPerUser)
	case errors.Is(err, plainrtp.ErrReserve):
		return fmt.Errorf("%w: user %q already holds RTP ports and only the %d reserved pairs are left (media.rtp_ports_reserve)", ErrPortQuota, owner, e.cfg.RTPPortsReserve)
	}
	return err
}
