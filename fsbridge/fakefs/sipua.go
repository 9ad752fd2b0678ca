package fakefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// SIPOptions configure a SIP stand-in.
type SIPOptions struct {
	// Addr is the UDP address to listen on (default 127.0.0.1:0).
	Addr string
	// Logger; nil discards.
	Logger *slog.Logger
	// ConferenceTone is the tone (Hz) a conference member hears, standing in for the
	// other members' mixed audio (default 600).
	ConferenceTone float64
}

// SIPAgent stands in for FreeSWITCH's SIP side (the nkbridge sofia profile) in tests.
// An INVITE goes through Server.Route (the shipped dialplan: 403 without a valid
// X-NKB-Session, otherwise a channel is created, answered and parked); the call is
// answered with a plain-RTP SDP (PCMU or PCMA). The channel's media follows its current
// application the way FreeSWITCH's would, so tests can prove where a call really is:
//
//   - park: nothing is sent (FreeSWITCH's park sends no media);
//   - echo: every received RTP packet is sent back;
//   - conference: a tone (ConferenceTone) is played, standing in for the mix.
//
// A BYE from nkbridge hangs the channel up (CHANNEL_HANGUP_COMPLETE…); a channel hung up
// on FreeSWITCH's side (uuid_kill, Server.Hangup, a conference kick) makes the agent send
// BYE, unless SetDropBYE makes that BYE get lost.
type SIPAgent struct {
	fs   *Server
	opts SIPOptions
	log  *slog.Logger

	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	cli   *sipgo.Client
	dua   *sipgo.DialogUA
	pc    net.PacketConn
	addr  string
	laddr sip.Addr

	mu      sync.Mutex
	calls   map[string]*sipCall                   // by Call-ID
	byChan  map[string]*sipCall                   // by channel uuid
	unacked map[string]*sipgo.DialogServerSession // answered, ACK not seen yet (even if ended)
	dropBYE bool
	reject  int
	before  func(INVITE)
	invites int
	closed  bool

	wg       sync.WaitGroup
	byeWG    sync.WaitGroup // BYEs in flight: they end before the socket closes
	handlers sync.WaitGroup // request handlers in flight
	ctx      context.Context
	cancel   context.CancelFunc
}

type sipCall struct {
	a       *SIPAgent
	callID  string
	channel string
	dlg     *sipgo.DialogServerSession
	conn    *net.UDPConn
	codec   plainrtp.Codec
	tePT    int // telephone-event payload type (-1: none)
	// ignoreMark: the channel's rtp_manual_rtp_bugs has IGNORE_MARK_BIT (read when its RTP
	// started, as FreeSWITCH does).
	ignoreMark bool
	// mediaTimeout is the channel's media_timeout: FreeSWITCH hangs the call up
	// (MEDIA_TIMEOUT) when no RTP arrived for that long (0: never).
	mediaTimeout time.Duration
	peer         netip.AddrPort

	mu      sync.Mutex
	ended   bool
	in, out int
	flushed int    // marked audio packets discarded
	digits  []byte // RFC 2833 digits received (as FreeSWITCH detects them)
	digitTS uint32 // timestamp of the last digit's end packets (sent three times)
	done    chan struct{}
}

// StartSIP starts a SIP stand-in for fs on UDP.
func StartSIP(fs *Server, opts SIPOptions) (*SIPAgent, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ConferenceTone <= 0 {
		opts.ConferenceTone = 600
	}
	a := &SIPAgent{fs: fs, opts: opts, log: opts.Logger, calls: map[string]*sipCall{}, byChan: map[string]*sipCall{},
		unacked: map[string]*sipgo.DialogServerSession{}}
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("fakefs: no DNS")
	}}
	quiet := slog.New(slog.DiscardHandler)
	var err error
	a.ua, err = sipgo.NewUA(sipgo.WithUserAgent("FreeSWITCH-mod_sofia/1.10.12-release~64bit"),
		sipgo.WithUserAgentHostname("127.0.0.1"), sipgo.WithUserAgentDNSResolver(noDNS),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		return nil, err
	}
	a.srv, err = sipgo.NewServer(a.ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		a.ua.Close()
		return nil, err
	}
	a.pc, err = net.ListenPacket("udp", opts.Addr)
	if err != nil {
		a.ua.Close()
		return nil, err
	}
	a.cli, err = sipgo.NewClient(a.ua, sipgo.WithClientLogger(quiet), sipgo.WithClientHostname("127.0.0.1"),
		sipgo.WithClientConnectionAddr(a.pc.LocalAddr().String()))
	if err != nil {
		a.pc.Close()
		a.ua.Close()
		return nil, err
	}
	a.addr = a.pc.LocalAddr().String()
	port := a.pc.LocalAddr().(*net.UDPAddr).Port
	ip := a.pc.LocalAddr().(*net.UDPAddr).IP
	a.laddr = sip.Addr{IP: ip, Port: port, Hostname: ip.String()}
	a.dua = &sipgo.DialogUA{Client: a.cli, ContactHDR: sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: "mod_sofia", Host: ip.String(), Port: port}}}
	a.srv.OnInvite(a.guard(a.onInvite))
	a.srv.OnAck(a.guard(a.onAck))
	a.srv.OnBye(a.guard(a.onBye))
	a.srv.OnOptions(a.guard(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}))
	a.ctx, a.cancel = context.WithCancel(context.Background())
	fs.OnHangup(a.onChannelHangup)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = a.srv.ServeUDP(a.pc)
	}()
	return a, nil
}

// guard runs a handler unless the agent is closing; Close waits (a bounded time) for
// handlers in flight, so that no response is written after the socket closed (sipgo
// would open, and leak, another socket for it).
func (a *SIPAgent) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return
		}
		a.handlers.Add(1)
		a.mu.Unlock()
		defer a.handlers.Done()
		h(req, tx)
	}
}

// Addr is the host:port (UDP) the agent listens on.
func (a *SIPAgent) Addr() string { return a.addr }

// SetDropBYE makes BYEs toward nkbridge get lost (true) or be sent again (false).
func (a *SIPAgent) SetDropBYE(drop bool) {
	a.mu.Lock()
	a.dropBYE = drop
	a.mu.Unlock()
}

// SetReject makes the agent answer INVITEs with this final status (0: answer normally),
// as a FreeSWITCH that is overloaded (503) or has no such profile (404) would.
func (a *SIPAgent) SetReject(code int) {
	a.mu.Lock()
	a.reject = code
	a.mu.Unlock()
}

// SetBeforeRoute sets a hook called with each INVITE just before it is routed (tests
// use it to make something happen at that moment, e.g. an Event Socket outage).
func (a *SIPAgent) SetBeforeRoute(f func(INVITE)) {
	a.mu.Lock()
	a.before = f
	a.mu.Unlock()
}

// Calls returns the number of live SIP calls.
func (a *SIPAgent) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

// Invites returns how many INVITEs (initial, not re-INVITEs) arrived.
func (a *SIPAgent) Invites() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.invites
}

// RTPStats returns how many RTP packets the channel's call received and sent.
func (a *SIPAgent) RTPStats(channel string) (in, out int, ok bool) {
	a.mu.Lock()
	c := a.byChan[channel]
	a.mu.Unlock()
	if c == nil {
		return 0, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in, c.out, true
}

// Digits returns the RFC 2833 digits the channel's call received, in order.
func (a *SIPAgent) Digits(channel string) string {
	a.mu.Lock()
	c := a.byChan[channel]
	a.mu.Unlock()
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.digits)
}

// Close hangs nothing up (FreeSWITCH just disappears), stops the agent and waits for its
// goroutines.
func (a *SIPAgent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	calls := make([]*sipCall, 0, len(a.calls))
	for _, c := range a.calls {
		calls = append(calls, c)
	}
	a.mu.Unlock()
	a.cancel()
	a.byeWG.Wait() // a request sent after the socket closed would make sipgo open another
	handled := make(chan struct{})
	go func() { a.handlers.Wait(); close(handled) }()
	select {
	case <-handled:
	case <-time.After(2 * time.Second): // an INVITE whose ACK never came keeps its handler
	}
	for _, c := range calls {
		c.finish()
	}
	_ = a.srv.Close()
	_ = a.pc.Close()
	_ = a.ua.Close()
	a.wg.Wait()
	return nil
}

func (a *SIPAgent) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	if _, dup := a.calls[callID]; dup { // re-INVITE: keep the media as it is
		a.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	a.invites++
	reject := a.reject
	a.mu.Unlock()
	if reject != 0 {
		_ = tx.Respond(sip.NewResponseFromRequest(req, reject, "Rejected by test", nil))
		return
	}
	offer, err := plainrtp.ParseSDP(req.Body())
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	inv := INVITE{CallID: callID, RequestUser: req.Recipient.User, Headers: map[string]string{}}
	if f := req.From(); f != nil {
		inv.FromUser, inv.FromDisplay = f.Address.User, f.DisplayName
	}
	if host, _, err := net.SplitHostPort(req.Source()); err == nil {
		inv.RemoteAddr = host
	}
	for _, h := range req.Headers() {
		if n := h.Name(); len(n) > 2 && strings.EqualFold(n[:2], "x-") {
			inv.Headers[n] = h.Value()
		}
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		return
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	answer, err := plainrtp.Answer(offer, netip.MustParseAddr("127.0.0.1"), port,
		[]plainrtp.Codec{plainrtp.PCMU, plainrtp.PCMA, plainrtp.TelEvent8}, nil)
	if err != nil {
		conn.Close()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	main, _ := answer.MainCodec()
	dlg, err := a.dua.ReadInvite(req, tx)
	if err != nil {
		conn.Close()
		return
	}
	_ = dlg.Respond(100, "Trying", nil)
	a.mu.Lock()
	before := a.before
	a.mu.Unlock()
	if before != nil {
		before(inv)
	}
	ch, err := a.fs.Route(inv)
	if err != nil {
		conn.Close()
		code, reason := 500, "Server Internal Error"
		var hdrs []sip.Header
		switch {
		case errors.Is(err, ErrForbidden):
			code, reason = 403, "Forbidden"
		case errors.Is(err, ErrSessionRate):
			// mod_sofia when the core refuses the session (sofia.c: no session).
			code, reason = 503, "Maximum Calls In Progress"
			hdrs = append(hdrs, sip.NewHeader("Retry-After", "300"))
		}
		_ = dlg.Respond(code, reason, nil, hdrs...)
		return
	}
	c := &sipCall{a: a, callID: callID, channel: ch.UUID, dlg: dlg, conn: conn, codec: main, tePT: -1,
		ignoreMark:   ignoreMarkBit(ch.Var("rtp_manual_rtp_bugs")),
		mediaTimeout: varMillis(ch.Var("media_timeout")),
		peer:         netip.AddrPortFrom(offer.Addr, uint16(offer.Port)), done: make(chan struct{})}
	for _, cd := range answer.Codecs {
		if strings.EqualFold(cd.Name, "telephone-event") {
			c.tePT = int(cd.PT)
		}
	}
	a.mu.Lock()
	a.calls[callID] = c
	a.byChan[ch.UUID] = c
	a.unacked[callID] = dlg
	a.mu.Unlock()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); c.readRTP() }()
	go func() { defer a.wg.Done(); c.playRTP() }()
	if err := dlg.RespondSDP(answer.Marshal()); err != nil {
		a.log.Warn("fakefs sip: 200 OK failed", "err", err)
		a.endCall(c)
		_ = a.fs.Hangup(ch.UUID, "NORMAL_TEMPORARY_FAILURE")
	}
}

// onAck confirms the dialog; the ACK is routed even when the call already ended (a
// hangup racing the ACK), or the 200 OK would be retransmitted for 32 s.
func (a *SIPAgent) onAck(req *sip.Request, tx sip.ServerTransaction) {
	h := req.CallID()
	if h == nil {
		return
	}
	a.mu.Lock()
	dlg := a.unacked[h.Value()]
	delete(a.unacked, h.Value())
	a.mu.Unlock()
	if dlg != nil {
		_ = dlg.ReadAck(req, tx)
	}
}

func (a *SIPAgent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := a.callOf(req)
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := c.dlg.ReadBye(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if a.endCall(c) {
		_ = a.fs.Hangup(c.channel, "NORMAL_CLEARING")
	}
}

func (a *SIPAgent) callOf(req *sip.Request) *sipCall {
	h := req.CallID()
	if h == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[h.Value()]
}

// endCall removes c; it reports whether c was still live.
func (a *SIPAgent) endCall(c *sipCall) bool {
	a.mu.Lock()
	_, live := a.calls[c.callID]
	delete(a.calls, c.callID)
	if a.byChan[c.channel] == c {
		delete(a.byChan, c.channel)
	}
	a.mu.Unlock()
	c.finish()
	return live
}

// onChannelHangup is the fake's OnHangup hook: the channel is gone, so its SIP call ends
// with a BYE (sent from a goroutine: FreeSWITCH does not block its event thread on SIP).
func (a *SIPAgent) onChannelHangup(ch Channel, _ string) {
	a.mu.Lock()
	c := a.byChan[ch.UUID]
	drop, closed := a.dropBYE, a.closed
	a.mu.Unlock()
	if c == nil || closed || !a.endCall(c) {
		return
	}
	if drop {
		return
	}
	a.byeWG.Add(1)
	go func() {
		defer a.byeWG.Done()
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		defer cancel()
		bye := sip.NewRequest(sip.BYE, c.dlg.InviteRequest.Contact().Address)
		bye.SetTransport(c.dlg.InviteRequest.Transport())
		bye.Laddr = a.laddr // the listening socket (else sipgo may open and leak another)
		if err := c.dlg.WriteBye(ctx, bye); err != nil {
			a.log.Debug("fakefs sip: BYE failed", "err", err)
		}
	}()
}

func (c *sipCall) finish() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	close(c.done)
	c.mu.Unlock()
	_ = c.conn.Close()
}

func (c *sipCall) application() string {
	ch, ok := c.a.fs.Channel(c.channel)
	if !ok {
		return ""
	}
	return ch.Application
}

// Flushed returns how many marked audio packets the channel's call discarded.
func (a *SIPAgent) Flushed(channel string) int {
	a.mu.Lock()
	c := a.byChan[channel]
	a.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushed
}

// ignoreMarkBit parses rtp_manual_rtp_bugs like switch_core_media_parse_rtp_bugs:
// case-insensitive, "~IGNORE_MARK_BIT" turns the bug off again.
func ignoreMarkBit(bugs string) bool {
	b := strings.ToUpper(bugs)
	return strings.Contains(b, "IGNORE_MARK_BIT") && !strings.Contains(b, "~IGNORE_MARK_BIT")
}

// varMillis parses a channel variable in milliseconds (0 if unset or invalid).
func varMillis(v string) time.Duration {
	ms, err := strconv.Atoi(v)
	if err != nil || ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// readRTP counts what arrives and echoes it when the channel runs echo; with a
// media_timeout, no RTP for that long hangs the channel up (MEDIA_TIMEOUT). A marked audio
// packet (not telephone-event) is discarded unless the channel has IGNORE_MARK_BIT:
// FreeSWITCH 1.10 flushes its read buffer when an audio packet has the marker bit
// (switch_rtp.c, rtp_flush_read_buffer), so a sender that marks every packet gets
// nothing back from echo.
func (c *sipCall) readRTP() {
	buf := make([]byte, 1500)
	var seq uint16 = uint16(rand.Uint32())
	ssrc := rand.Uint32()
	for {
		if c.mediaTimeout > 0 {
			_ = c.conn.SetReadDeadline(time.Now().Add(c.mediaTimeout))
		}
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.a.log.Info("fakefs sip: media timeout", "channel", c.channel, "after", c.mediaTimeout)
				_ = c.a.fs.Hangup(c.channel, "MEDIA_TIMEOUT")
			}
			return
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		flush := p.Marker && int(p.PayloadType) != c.tePT && !c.ignoreMark
		c.mu.Lock()
		c.in++
		c.peer = from // symmetric RTP, as sofia does by default for a latched peer
		if flush {
			c.flushed++
		}
		if int(p.PayloadType) == c.tePT {
			c.dtmfLocked(&p)
		}
		c.mu.Unlock()
		if flush || c.application() != "echo" {
			continue
		}
		p.SSRC = ssrc
		p.SequenceNumber = seq
		seq++
		out, err := p.Marshal()
		if err != nil {
			continue
		}
		if _, err := c.conn.WriteToUDPAddrPort(out, from); err == nil {
			c.mu.Lock()
			c.out++
			c.mu.Unlock()
		}
	}
}

// dtmfLocked records the digit of an RFC 2833 event's end packet, once per event.
func (c *sipCall) dtmfLocked(p *rtp.Packet) {
	if len(p.Payload) < 4 || p.Payload[1]&0x80 == 0 || (len(c.digits) > 0 && p.Timestamp == c.digitTS) {
		return
	}
	if ev := p.Payload[0]; ev < 16 {
		c.digits = append(c.digits, "0123456789*#ABCD"[ev])
		c.digitTS = p.Timestamp
	}
}

// playRTP plays the conference tone while the channel is in a conference.
func (c *sipCall) playRTP() {
	name := strings.ToLower(c.codec.Name)
	enc, err := codec.NewEncoder(name, 8000)
	if err != nil {
		return
	}
	tone := audiotest.Tone(c.a.opts.ConferenceTone, 8000, 8000, 12000) // one second, looped
	buf := make([]byte, 1500)
	seq, ts, ssrc := uint16(rand.Uint32()), rand.Uint32(), rand.Uint32()
	pos := 0
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tk.C:
		}
		if c.application() != "conference" {
			continue
		}
		if pos+160 > len(tone) {
			pos = 0
		}
		n, err := enc.Encode(buf, tone[pos:pos+160])
		pos += 160
		if err != nil {
			continue
		}
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: c.codec.PT, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: buf[:n]}
		seq++
		ts += 160
		out, err := p.Marshal()
		if err != nil {
			continue
		}
		c.mu.Lock()
		to := c.peer
		c.mu.Unlock()
		if _, err := c.conn.WriteToUDPAddrPort(out, to); err == nil {
			c.mu.Lock()
			c.out++
			c.mu.Unlock()
		}
	}
}

// String describes the agent (for logs).
func (a *SIPAgent) String() string { return fmt.Sprintf("fakefs sip agent on udp %s", a.addr) }
