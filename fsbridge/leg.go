package fsbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// SessionHeader is the SIP header that carries the nkbridge session id to FreeSWITCH
// (testdata/freeswitch's dialplan reads it as ${sip_h_X-NKB-Session}).
const SessionHeader = "X-NKB-Session"

// LegHeader carries a token unique to one call, so that a channel of an earlier call of
// a reused session id is never taken for the current one (${sip_h_X-NKB-Leg}).
const LegHeader = "X-NKB-Leg"

// LegDialer makes the call that carries one session's media to FreeSWITCH: plain RTP
// over SIP, with the session id in SessionHeader.
type LegDialer interface {
	// Dial places the call and returns once FreeSWITCH has answered; Leg.Answer is
	// then the answer for the client's offer. Cancelling ctx abandons the call.
	Dial(ctx context.Context, req LegRequest) (Leg, error)
}

// LegRequest describes one leg.
type LegRequest struct {
	SessionID string
	// Token goes in LegHeader (optional; letters, digits and '-').
	Token string
	// Dest is the Request-URI user (nkbridge uses the session type; the shipped
	// dialplan ignores it).
	Dest string
	// Offer is the client's offer (sdp, sdp_type "webrtc" or "rtp").
	Offer signaling.Desc
	// OnEnd is called once, from its own goroutine, when the leg ends by itself, not
	// when Hangup is called: with 2302 fs_channel_stop when FreeSWITCH hung up (BYE),
	// with another code for a media failure.
	OnEnd func(*signaling.Error)
}

// Leg is a live call to FreeSWITCH.
type Leg interface {
	// Answer is the answer for the client's offer.
	Answer() signaling.Desc
	// Update applies "media" update options (use_audio, use_video, bitrate, record).
	Update(ctx context.Context, opts map[string]any) error
	// Candidate passes a trickled ICE candidate from the client.
	Candidate(ctx context.Context, c signaling.Candidate) error
	// SetQuiet says whether FreeSWITCH may send no media for a while (park sends
	// none), so that the media engine's timeout does not end the call meanwhile.
	SetQuiet(quiet bool)
	// Hangup sends BYE and releases the media. It is idempotent.
	Hangup(ctx context.Context)
}

// SIPDialerConfig configures a SIPDialer.
type SIPDialerConfig struct {
	// Engine is the media engine that bridges the client to FreeSWITCH's plain RTP.
	Engine *media.Engine
	// Target is FreeSWITCH's nkbridge SIP profile, an IP literal host:port (UDP),
	// e.g. 127.0.0.1:5090. Host names are refused: no DNS lookups are made.
	Target string
	// Listen is the local UDP address for the SIP user agent (default 127.0.0.1:0). Its
	// address is in Contact, so FreeSWITCH must be able to reach it.
	Listen string
	// InviteTimeout bounds the wait for FreeSWITCH's final answer (default 10 s).
	InviteTimeout time.Duration
	Logger        *slog.Logger
}

// SIPDialer is a LegDialer on the media engine and a minimal SIP user agent (sipgo):
// the client's offer becomes a media proxy session whose far side is plain RTP; that
// side's offer goes in the INVITE, FreeSWITCH's 200 OK completes it.
type SIPDialer struct {
	cfg    SIPDialerConfig
	log    *slog.Logger
	target sip.Uri

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client
	dua *sipgo.DialogUA
	pc  net.PacketConn
	// laddr is pc's address, the source of every request
	laddr sip.Addr

	mu      sync.Mutex
	legs    map[string]*sipLeg // by Call-ID
	closed  bool
	sipDone bool // the user agent is closing: no more requests (sipgo would open a new socket)
	wg      sync.WaitGroup
	sending sync.WaitGroup  // BYEs and INVITEs in flight
	ctx     context.Context // cancelled by Close: abandons INVITEs in flight
	cancel  context.CancelFunc
}

// NewSIPDialer binds the user agent's UDP socket and starts serving (BYEs from
// FreeSWITCH). Close releases it.
func NewSIPDialer(cfg SIPDialerConfig) (*SIPDialer, error) {
	if cfg.Engine == nil {
		return nil, errors.New("fsbridge: SIP dialer needs a media engine")
	}
	host, port, err := net.SplitHostPort(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("fsbridge: FreeSWITCH SIP address %q: %w", cfg.Target, err)
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("fsbridge: FreeSWITCH SIP address %q: want an IP literal", cfg.Target)
	}
	var portN int
	if _, err := fmt.Sscanf(port, "%d", &portN); err != nil || portN <= 0 || portN > 65535 {
		return nil, fmt.Errorf("fsbridge: FreeSWITCH SIP address %q: bad port", cfg.Target)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.InviteTimeout <= 0 {
		cfg.InviteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &SIPDialer{cfg: cfg, log: cfg.Logger, legs: map[string]*sipLeg{},
		target: sip.Uri{Scheme: "sip", Host: host, Port: portN}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		d.cancel()
		return nil, fmt.Errorf("fsbridge: SIP listen %s: %w", cfg.Listen, err)
	}
	d.pc = pc
	laddr := pc.LocalAddr().(*net.UDPAddr)
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("fsbridge: the SIP leg makes no DNS lookups")
	}}
	sipLog := slog.New(slog.DiscardHandler)
	parser := sip.NewParser()
	parser.MaxMessageLength = maxSIPMessage
	d.ua, err = sipgo.NewUA(sipgo.WithUserAgent("nkbridge"), sipgo.WithUserAgentHostname(laddr.IP.String()),
		sipgo.WithUserAgentDNSResolver(noDNS), sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			// 200 OK retransmissions that cross our ACK: nothing to do.
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err == nil {
		d.srv, err = sipgo.NewServer(d.ua, sipgo.WithServerLogger(sipLog))
	}
	if err == nil {
		// Requests leave from the listening socket (no extra socket bound on all interfaces).
		d.cli, err = sipgo.NewClient(d.ua, sipgo.WithClientLogger(sipLog), sipgo.WithClientHostname(laddr.IP.String()),
			sipgo.WithClientConnectionAddr(laddr.String()))
	}
	if err != nil {
		d.cancel()
		pc.Close()
		if d.ua != nil {
			d.ua.Close()
		}
		return nil, err
	}
	d.laddr = sip.Addr{IP: laddr.IP, Port: laddr.Port, Hostname: laddr.IP.String()}
	d.dua = &sipgo.DialogUA{Client: d.cli, ContactHDR: sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: "nkbridge", Host: laddr.IP.String(), Port: laddr.Port}}}
	d.srv.OnBye(d.fromFS(d.onBye))
	d.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	d.srv.OnInvite(d.fromFS(func(req *sip.Request, tx sip.ServerTransaction) {
		// FreeSWITCH does not re-INVITE nkbridge's legs (no session timers on the profile);
		// anything else is not ours to accept.
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
	}))
	d.srv.OnOptions(d.fromFS(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}))
	d.srv.OnNoRoute(d.fromFS(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	}))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = d.srv.ServeUDP(pc)
	}()
	return d, nil
}

// maxSIPMessage bounds what the dialer's user agent parses.
const maxSIPMessage = 16 << 10

// fromFS drops requests that do not come from FreeSWITCH's address: this user agent
// talks to FreeSWITCH only, so nothing else gets an answer (no reflection, no probing).
func (d *SIPDialer) fromFS(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		host, _, err := net.SplitHostPort(req.Source())
		if err != nil || !net.ParseIP(host).Equal(net.ParseIP(d.target.Host)) {
			d.log.Debug("fsbridge: SIP request from a stranger dropped", "source", req.Source(), "method", req.Method)
			return
		}
		// Answered before the socket closes: a response written after that would make
		// sipgo open (and leak) another socket.
		if !d.beginSend() {
			return
		}
		defer d.sending.Done()
		h(req, tx)
	}
}

// Addr is the UDP address of the dialer's SIP user agent.
func (d *SIPDialer) Addr() string { return d.pc.LocalAddr().String() }

// beginSend registers a request about to be sent; false once the user agent is closing.
func (d *SIPDialer) beginSend() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sipDone {
		return false
	}
	d.sending.Add(1)
	return true
}

// Legs returns the number of live legs.
func (d *SIPDialer) Legs() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.legs)
}

// Close hangs up every leg and stops the user agent.
func (d *SIPDialer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.cancel()
	legs := make([]*sipLeg, 0, len(d.legs))
	for _, l := range d.legs {
		legs = append(legs, l)
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	for _, l := range legs {
		l.Hangup(ctx)
	}
	cancel()
	d.mu.Lock()
	d.sipDone = true
	d.mu.Unlock()
	d.sending.Wait()
	_ = d.srv.Close()
	_ = d.pc.Close()
	_ = d.ua.Close()
	d.wg.Wait()
	return nil
}

// Dial implements LegDialer.
func (d *SIPDialer) Dial(ctx context.Context, req LegRequest) (Leg, error) {
	sdp := req.Offer.SDP()
	if sdp == "" {
		return nil, signaling.Errorf(signaling.CodeMissingOffer, "Missing offer: the FreeSWITCH backend needs an SDP offer")
	}
	var kind media.Kind
	switch req.Offer.SDPType() {
	case "webrtc":
		kind = media.KindWebRTC
	case "rtp":
		kind = media.KindRTP
	default:
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: sdp_type %q (want webrtc or rtp)", req.Offer.SDPType())
	}
	if err := validSessionID(req.SessionID); err != nil {
		return nil, err
	}
	if err := validDest(req.Dest); err != nil {
		return nil, err
	}
	if req.Token != "" && strings.Trim(req.Token, "0123456789abcdefABCDEF-") != "" || len(req.Token) > 64 {
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid leg token")
	}
	if !d.beginSend() {
		return nil, signaling.Errorf(signaling.CodeSessionStop, "Server stopping")
	}
	defer d.sending.Done()
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, signaling.Errorf(signaling.CodeSessionStop, "Server stopping")
	}
	l := &sipLeg{d: d, sid: req.SessionID, onEnd: req.OnEnd, done: make(chan struct{})}
	msess, farOffer, err := d.cfg.Engine.StartProxy(ctx, media.Description{Kind: kind, SDP: sdp}, media.KindRTP,
		// FreeSWITCH flushes its input on marked audio packets: mark talk spurts only.
		media.SessionOptions{ID: "fs-" + req.SessionID, OnStop: l.mediaStopped, TalkspurtMarkers: true})
	if err != nil {
		return nil, mediaError(err)
	}
	l.media = msess

	ictx, cancel := context.WithTimeout(ctx, d.cfg.InviteTimeout)
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	uri := d.target
	uri.User = req.Dest
	hdrs := []sip.Header{sip.NewHeader("Content-Type", "application/sdp"), sip.NewHeader(SessionHeader, req.SessionID)}
	if req.Token != "" {
		hdrs = append(hdrs, sip.NewHeader(LegHeader, req.Token))
	}
	dlg, err := d.dua.Invite(ictx, uri, []byte(farOffer.SDP), hdrs...)
	if err != nil {
		msess.Close()
		return nil, signaling.Errorf(signaling.CodeFSError, "FreeSWITCH SIP: INVITE not sent: %v", err)
	}
	l.dlg = dlg
	callID := dlg.InviteRequest.CallID().Value()
	l.callID = callID
	// Register before the answer: a BYE can follow the 200 OK immediately.
	d.mu.Lock()
	d.legs[callID] = l
	d.mu.Unlock()
	fail := func(e *signaling.Error) (Leg, error) {
		d.drop(l)
		msess.Close()
		_ = dlg.Close()
		return nil, e
	}
	if err := dlg.WaitAnswer(ictx, sipgo.AnswerOptions{}); err != nil {
		var rerr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &rerr):
			return fail(refused(rerr.Res.StatusCode, rerr.Res.Reason))
		case ictx.Err() != nil && ctx.Err() == nil:
			return fail(signaling.Errorf(signaling.CodeFSError, "FreeSWITCH SIP: no answer within %s", d.cfg.InviteTimeout))
		}
		return fail(signaling.Errorf(signaling.CodeFSError, "FreeSWITCH SIP: %v", err))
	}
	if err := dlg.Ack(ictx); err != nil {
		l.bye()
		return fail(signaling.Errorf(signaling.CodeFSError, "FreeSWITCH SIP: ACK failed: %v", err))
	}
	body := dlg.InviteResponse.Body()
	if len(body) == 0 {
		l.bye()
		return fail(signaling.Errorf(signaling.CodeSIPNoSDP, "FreeSWITCH answered without SDP"))
	}
	ans, err := msess.SetAnswer(ictx, media.Description{Kind: media.KindRTP, SDP: string(body)})
	if err != nil {
		l.bye()
		return fail(signaling.Errorf(signaling.CodeFSOpError, "FreeSWITCH's SDP answer is unusable: %v", err))
	}
	answer := signaling.Desc{"sdp": ans.SDP, "sdp_type": string(ans.Kind)}
	l.answer = answer
	return l, nil
}

func (d *SIPDialer) drop(l *sipLeg) {
	d.mu.Lock()
	if d.legs[l.callID] == l {
		delete(d.legs, l.callID)
	}
	d.mu.Unlock()
}

func (d *SIPDialer) onBye(req *sip.Request, tx sip.ServerTransaction) {
	var l *sipLeg
	if h := req.CallID(); h != nil {
		d.mu.Lock()
		l = d.legs[h.Value()]
		d.mu.Unlock()
	}
	if l == nil || l.dlg == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := l.dlg.ReadBye(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	l.ended(signaling.Errorf(signaling.CodeFSChannelStop, "FreeSWITCH hung up the call (BYE)"))
}

type sipLeg struct {
	d      *SIPDialer
	sid    string
	callID string
	media  *media.Session
	dlg    *sipgo.DialogClientSession
	answer signaling.Desc
	onEnd  func(*signaling.Error)

	mu   sync.Mutex
	over bool
	done chan struct{}
}

func (l *sipLeg) Answer() signaling.Desc { return l.answer }

// finish marks the leg over; it reports whether it was still live.
func (l *sipLeg) finish() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.over {
		return false
	}
	l.over = true
	close(l.done)
	return true
}

// ended is the leg ending by itself.
func (l *sipLeg) ended(e *signaling.Error) {
	if !l.finish() {
		return
	}
	l.d.drop(l)
	if l.media != nil {
		l.media.Close()
	}
	if l.onEnd != nil {
		l.onEnd(e) // a MediaReporter: never blocks
	}
}

// mediaStopped: the media engine ended the session (timeout, ICE failure…). The reason
// is reported before the BYE, whose consequences (FreeSWITCH's hangup) would otherwise
// race it.
func (l *sipLeg) mediaStopped(info media.StopInfo) {
	code := signaling.CodeSessionStop
	if info.Cause == media.CauseMediaTimeout {
		code = signaling.CodeSessionTimeout
	}
	text := "Media stopped: " + info.Reason
	if info.Cause == media.CauseEngineClosed {
		text = "Media engine stopped"
	}
	l.ended(signaling.Errorf(code, "%s", text))
	l.bye()
}

// bye sends BYE on an established dialog (best effort, bounded).
func (l *sipLeg) bye() {
	if l.dlg == nil || !l.d.beginSend() {
		return
	}
	defer l.d.sending.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := l.dlg.InviteResponse
	if res == nil {
		return
	}
	to := l.dlg.InviteRequest.Recipient
	if c := res.Contact(); c != nil {
		to = c.Address
	}
	bye := sip.NewRequest(sip.BYE, *to.Clone())
	bye.SetTransport(l.dlg.InviteRequest.Transport())
	// From the listening socket: without a local address sipgo may open (and leak) an
	// extra socket for in-dialog requests.
	bye.Laddr = l.d.laddr
	if err := l.dlg.WriteBye(ctx, bye); err != nil {
		l.d.log.Debug("fsbridge: BYE to FreeSWITCH failed", "session_id", l.sid, "err", err)
	}
}

func (l *sipLeg) Hangup(ctx context.Context) {
	if !l.finish() {
		return
	}
	l.d.drop(l)
	l.bye()
	if l.media != nil {
		l.media.Close()
	}
}

func (l *sipLeg) SetQuiet(quiet bool) { l.media.SetHold(quiet) }

func (l *sipLeg) Update(_ context.Context, opts map[string]any) error {
	var mo media.MediaOptions
	if v, ok := opts["use_audio"].(bool); ok {
		mo.UseAudio = &v
	}
	if v, ok := opts["use_video"].(bool); ok {
		mo.UseVideo = &v
	}
	if v, ok := opts["record"].(bool); ok {
		mo.Record = &v
	}
	if v, ok := opts["bitrate"].(float64); ok {
		if v < 0 || v > 1e9 {
			return signaling.InvalidField("bitrate")
		}
		n := int(v)
		mo.Bitrate = &n
	}
	if err := l.media.Update(mo); err != nil {
		return mediaError(err)
	}
	return nil
}

func (l *sipLeg) Candidate(_ context.Context, c signaling.Candidate) error {
	if c.End {
		return mediaError(l.media.CandidatesEnd(media.SideCaller))
	}
	idx := uint16(c.MLineIndex)
	mc := media.Candidate{Candidate: c.Candidate, SDPMLineIndex: &idx}
	if c.MID != "" {
		mid := c.MID
		mc.SDPMid = &mid
	}
	return mediaError(l.media.AddCandidate(media.SideCaller, mc))
}

// mediaError maps a media engine error to an API error.
func mediaError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, media.ErrBadSDP), errors.Is(err, media.ErrNoAudio), errors.Is(err, media.ErrNoCodec), errors.Is(err, media.ErrBadKind):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid offer: %v", err)
	case errors.Is(err, media.ErrState):
		return signaling.Errorf(signaling.CodeInvalidOperation, "Invalid operation: %v", err)
	case errors.Is(err, media.ErrTooMany):
		return signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is full")
	case errors.Is(err, media.ErrNoRecordDir):
		return signaling.Errorf(signaling.CodeInvalidOperation, "Recording is not configured")
	case errors.Is(err, media.ErrClosed):
		return signaling.Errorf(signaling.CodeSessionStop, "Server stopping")
	}
	return signaling.Errorf(signaling.CodeInternalError, "Media error: %v", err)
}

// refused is the error for FreeSWITCH refusing the call with a SIP status. A 503 is what
// mod_sofia answers ("Maximum Calls In Progress") when its core refuses a new session:
// over switch.conf.xml's sessions-per-second (30 by default) or max-sessions (1000 by
// default); the error says so, since nkbridge's own limits are not the cause.
func refused(code int, reason string) *signaling.Error {
	if code == 503 {
		return signaling.Errorf(signaling.CodeFSOpError, "FreeSWITCH refused the call: %d %s (FreeSWITCH creates at most "+
			"sessions-per-second new sessions a second, 30 by default, and max-sessions in all, 1000 by default: raise them "+
			"in its switch.conf.xml)", code, reason)
	}
	return signaling.Errorf(signaling.CodeFSOpError, "FreeSWITCH refused the call: %d %s", code, reason)
}

// validDest checks the Request-URI user.
func validDest(s string) error {
	if s == "" || len(s) > 32 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid destination %q", s)
	}
	return nil
}
