package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/sip/sdpdir"
)

// Direction of a call relative to nkbridge.
type Direction int

// Call directions.
const (
	Inbound Direction = iota + 1
	Outbound
)

// Cause says why a call ended.
type Cause string

// End causes.
const (
	CauseRemoteHangup  Cause = "remote_hangup"   // peer sent BYE
	CauseLocalHangup   Cause = "local_hangup"    // Hangup was called
	CauseCanceled      Cause = "canceled"        // inbound: CANCEL received; outbound: we canceled
	CauseRejected      Cause = "rejected"        // a final non-2xx response ended the INVITE
	CauseSessionExpiry Cause = "session_expired" // RFC 4028 session timer ran out
	CauseAckTimeout    Cause = "ack_timeout"     // answered inbound call never got ACK
	// CauseBadAnswer: a delayed-offer INVITE (or offerless re-INVITE) got our offer in the 200
	// and its ACK carried no usable SDP answer; we sent BYE (Code 488).
	CauseBadAnswer Cause = "bad_answer"
	CauseTransport Cause = "transport_error"
	CauseShutdown  Cause = "shutdown"
)

// End describes the end of a call; Code/Reason carry the SIP status when one applies.
type End struct {
	Cause  Cause
	Code   int
	Reason string
}

// DTMF is a digit received in-dialog.
type DTMF struct {
	Digit    rune // 0-9 * # A-D
	Duration time.Duration
	Method   string // "info"
}

// Reoffer is an SDP offer received in an established dialog (re-INVITE or UPDATE).
type Reoffer struct {
	SDP  []byte
	Info sdpdir.Info
	// Hold is true when the offer puts us on hold (sendonly, inactive or c=0.0.0.0).
	Hold bool
	// Answer is true when SDP is the peer's answer to our offer, carried in the ACK of a
	// delayed-offer INVITE or offerless re-INVITE: it is applied like a re-offer, the SDP
	// returned is not sent, and an error ends the call (CauseBadAnswer).
	Answer bool
}

// CallEvents receives a call's in-dialog events. Methods are called from SIP goroutines and
// should return quickly.
type CallEvents interface {
	// Reoffer returns the SDP answer to a re-offer (hold/resume/codec change). Returning nil
	// answer and nil error lets the call answer with its last local SDP and the mirrored
	// direction; an error rejects the offer with 488.
	Reoffer(c *Call, r Reoffer) ([]byte, error)
	// DTMF reports a digit received by SIP INFO.
	DTMF(c *Call, d DTMF)
	// Ended reports the end of the call, once.
	Ended(c *Call, e End)
}

// CallInfo describes a call's parties.
type CallInfo struct {
	CallID      string
	From        string // URI
	FromUser    string
	FromDisplay string
	To          string // URI
	ToUser      string
	RequestURI  string
	Source      string // ip:port of the peer
	Transport   string // udp, tcp, ...
	// AuthUser is the digest-authenticated user of an inbound call (empty for trunk calls).
	AuthUser string
	// Trunk is the trunk an inbound call came from (by source network).
	Trunk string
	// CallerID and CallerName identify an inbound call's caller: a trunk's asserted identity
	// (P-Asserted-Identity, Remote-Party-ID; "anonymous" with Privacy: id), else From's.
	CallerID, CallerName string
	// Destination is what the trunk's Destinations map the dialled user (DID) of an inbound
	// trunk call to; empty: route the dialled user itself.
	Destination string
}

type callState int

const (
	stateEarly callState = iota
	stateAnswered
	stateConfirmed
	stateEnded
)

// Call is one SIP dialog (an inbound or outbound call leg). Methods are safe for concurrent
// use.
type Call struct {
	s     *Server
	id    string
	dir   Direction
	info  CallInfo
	srcIP netip.Addr // inbound from a non-trunk source: counted per source (sip.max_calls_per_source)
	// tcpFallback is the size of an outbound INVITE moved from UDP to TCP (RFC 3261 §18.1.1).
	tcpFallback int
	// trunkRT counts the call against its trunk's max_calls (trunkhealth.go)
	trunkRT *trunkRuntime
	// srtp is the SRTP mode of the call's trunk or user (srtp.go)
	srtp srtpPolicy

	done    chan struct{}
	endOnce sync.Once
	end     End

	mu         sync.Mutex
	events     CallEvents
	state      callState
	key        string
	callID     string
	localHdr   sip.Header // our From (outbound) or To (inbound), with our tag
	remoteHdr  sip.Header
	localTag   string
	remoteTag  string
	target     sip.Uri  // remote target (Contact)
	routes     []string // route set
	transport  string   // UDP, TCP, ...
	flow       string   // ip:port to send to instead of the remote target (stream peers, registered devices)
	localCSeq  uint32
	remoteCSeq uint32
	localSDP   []byte
	remoteSDP  []byte
	peerAllow  string
	busy       bool // an outgoing re-INVITE/UPDATE is in progress (glare → 491)

	// inbound
	inv      *sip.Request // the INVITE with our To tag added
	tx       sip.ServerTransaction
	final    chan struct{} // closed when a final response was sent
	acked    chan struct{} // closed when the 2xx was ACKed
	finalSet bool
	ackedSet bool
	reAcked  chan struct{} // current inbound re-INVITE awaiting ACK
	// delayed: the INVITE had no offer; our 200 carries the offer and its ACK the answer.
	delayed bool
	// reAnswer: the pending re-INVITE (reAcked) had no offer; its ACK carries the answer.
	reAnswer bool

	// replaces: an inbound INVITE's Replaces target (replaces.go)
	replaces *Call
	// peerUser: the user of the registered device an outbound call went to (refer.go)
	peerUser string

	// outbound
	ack      *sip.Request
	inviteTx sip.ClientTransaction
	// delayedOut: our INVITE had no SDP (Trunk.DelayedOffer); the 200 offers, the ACK answers.
	// delayedErr says why the 200's offer could not be answered (the call is then hung up).
	delayedOut bool
	delayedErr error

	// session timer
	se        time.Duration
	refresher string // "uac" or "uas"
	weRefresh bool
	stTimer   *time.Timer
	lastSeen  time.Time
}

// ID is a unique identifier for the call inside nkbridge.
func (c *Call) ID() string { return c.id }

// Direction says whether the call came in or went out.
func (c *Call) Direction() Direction { return c.dir }

// Info describes the parties.
func (c *Call) Info() CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// End returns why the call ended (zero until Done is closed).
func (c *Call) End() End {
	select {
	case <-c.done:
		return c.end
	default:
		return End{}
	}
}

// DelayedOffer reports whether an inbound call's INVITE came without an SDP offer: the SDP
// given to Answer is then our offer, and the peer's answer (in the ACK) reaches
// CallEvents.Reoffer with Reoffer.Answer set.
func (c *Call) DelayedOffer() bool { return c.delayed }

// SetEvents sets the receiver of in-dialog events. Set it before Answer.
func (c *Call) SetEvents(ev CallEvents) {
	c.mu.Lock()
	c.events = ev
	c.mu.Unlock()
}

// RemoteSDP returns the peer's current SDP (offer for inbound, answer for outbound, updated by
// re-offers).
func (c *Call) RemoteSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteSDP
}

// LocalSDP returns the SDP we last sent.
func (c *Call) LocalSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.localSDP
}

// SessionExpires returns the negotiated RFC 4028 interval and whether we are the refresher.
func (c *Call) SessionExpires() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.se, c.weRefresh
}

func (c *Call) events0() CallEvents {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events
}

// LastActivity is when the peer last sent something in this dialog (requests, ACK, OPTIONS).
func (c *Call) LastActivity() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeen
}

func (c *Call) touch() {
	c.mu.Lock()
	c.lastSeen = time.Now()
	c.mu.Unlock()
}

// finish ends the call once: it is removed from the server, timers stop, Ended is reported.
func (c *Call) finish(e End) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.end = e
		c.state = stateEnded
		if c.stTimer != nil {
			c.stTimer.Stop()
		}
		ev := c.events
		c.mu.Unlock()
		close(c.done)
		c.s.removeCall(c)
		c.s.log.Info("sip call ended", "call", c.id, "sip_call_id", c.callID, "cause", e.Cause, "code", e.Code)
		if ev != nil {
			ev.Ended(c, e)
		}
	})
}

func dialogKey(callID, localTag, remoteTag string) string {
	return callID + "\x00" + localTag + "\x00" + remoteTag
}

var (
	errTooManyCalls = errors.New("sip: too many calls (sip.max_calls)")
	errSourceCalls  = errors.New("sip: too many calls from this address (sip.max_calls_per_source)")
)

func (s *Server) addCall(c *Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sip: server closed")
	}
	if s.callCount >= s.cfg.Limits.MaxCalls {
		return errTooManyCalls
	}
	if c.srcIP.IsValid() {
		if s.bySource[c.srcIP] >= s.cfg.Limits.MaxCallsPerSource {
			return errSourceCalls
		}
		s.bySource[c.srcIP]++
	}
	s.callCount++
	if c.key != "" {
		s.calls[c.key] = c
	}
	return nil
}

// keyCall indexes c under its dialog key (outbound calls get one on 2xx).
func (s *Server) keyCall(c *Call, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	c.key = key
	c.mu.Unlock()
	s.calls[key] = c
}

func (s *Server) removeCall(c *Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	key := c.key
	c.mu.Unlock()
	if key != "" && s.calls[key] == c {
		delete(s.calls, key)
	}
	if c.srcIP.IsValid() {
		if s.bySource[c.srcIP]--; s.bySource[c.srcIP] <= 0 {
			delete(s.bySource, c.srcIP)
		}
	}
	if c.trunkRT != nil {
		c.trunkRT.release()
	}
	s.callCount--
}

// Calls returns the number of live calls.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callCount
}

func tagOf(params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

func (s *Server) lookupDialog(req *sip.Request) *Call {
	to, from := req.To(), req.From()
	if to == nil || from == nil || req.CallID() == nil {
		return nil
	}
	key := dialogKey(req.CallID().Value(), tagOf(to.Params), tagOf(from.Params))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

func (s *Server) lookupDialogResponse(res *sip.Response) *Call {
	to, from := res.To(), res.From()
	if to == nil || from == nil || res.CallID() == nil {
		return nil
	}
	key := dialogKey(res.CallID().Value(), tagOf(from.Params), tagOf(to.Params))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

// goTracked runs f in a goroutine the server waits for on Close.
func (s *Server) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
	return true
}

// contactHeader is our Contact for transport tp.
func (s *Server) contactHeader(tp string) *sip.ContactHeader {
	tp = strings.ToLower(tp)
	u := sip.Uri{Scheme: "sip", User: "nkbridge", Host: s.cfg.ExternalHost, Port: s.port(tp)}
	if tp != "udp" && tp != "" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: tp}}
	}
	return &sip.ContactHeader{Address: u}
}

// --- inbound INVITE ---------------------------------------------------------------------

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To().Params.Has("tag") {
		s.onReinvite(req, tx)
		return
	}
	if !s.admit(req, tx) {
		return
	}
	src := sourceAddr(req)
	var authUser, trunkName string
	tr := s.trunkFor(src)
	if tr == nil {
		tr = s.registrationTrunk(src, req.Recipient.User) // sent by a registrar we registered at, to our contact
	}
	if tr != nil {
		trunkName = tr.Name
		if !tr.rt.allowCall() {
			s.log.Warn("sip invite refused: trunk over its call rate", "trunk", tr.Name, "src", req.Source(), "setting", "sip.trunks[].cps")
			s.respond(req, tx, 503, tr.rt.errCPS(), sip.NewHeader("Retry-After", "1"))
			return
		}
	} else {
		u, ok := s.authenticate(req, tx)
		if !ok {
			return
		}
		authUser = u
		if !s.admitInvite(req, tx, u) {
			return
		}
	}
	if req.Contact() == nil {
		s.respond(req, tx, 400, "Missing Contact")
		return
	}
	body := req.Body()
	delayed := len(body) == 0 // delayed offer: we offer in the 200, the ACK answers
	pol := s.userSRTP(authUser)
	if tr != nil {
		pol = trunkSRTP(tr)
	}
	if !delayed {
		if ct := req.ContentType(); ct == nil || !strings.HasPrefix(strings.ToLower(ct.Value()), "application/sdp") {
			s.respond(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
			return
		}
		if info, err := sdpdir.Parse(body); err != nil || !info.HasAudio {
			s.respond(req, tx, 488, "Not Acceptable Here")
			return
		}
		b, err := pol.peerSDP(body) // srtp.go
		if err != nil {
			s.log.Info("sip invite refused by its SRTP offer", "src", req.Source(), "user", authUser, "trunk", trunkName, "why", err.Error())
			s.respond(req, tx, 488, err.Error())
			return
		}
		body = b
	} else if pol.mode == SRTPMandatory {
		s.respond(req, tx, 488, "Not Acceptable Here (an INVITE without SDP cannot set up mandatory SRTP: "+pol.setting+")")
		return
	}
	se, refresher, err := parseSessionExpires(req)
	if err != nil {
		s.respond(req, tx, 400, "Bad Session-Expires")
		return
	}
	if se > 0 && se < s.cfg.SessionTimer.MinSE {
		s.respond(req, tx, 422, "Session Interval Too Small",
			sip.NewHeader("Min-SE", strconv.Itoa(int(s.cfg.SessionTimer.MinSE/time.Second))))
		return
	}
	if s.handler == nil {
		s.respond(req, tx, 480, "Temporarily Unavailable")
		return
	}
	replaced, code, reason := s.replacesTarget(req)
	if code != 0 {
		s.log.Info("sip invite with Replaces refused", "src", req.Source(), "code", code, "reason", reason)
		s.respond(req, tx, code, reason)
		return
	}

	inv := req.Clone()
	localTag := sip.GenerateTagN(16)
	inv.To().Params.Add("tag", localTag)
	from := req.From()
	remoteTag, _ := from.Params.Get("tag")
	c := &Call{
		s: s, id: uuid.NewString(), dir: Inbound,
		done: make(chan struct{}), final: make(chan struct{}), acked: make(chan struct{}),
		callID: req.CallID().Value(), localTag: localTag, remoteTag: remoteTag,
		localHdr: sip.HeaderClone(inv.To()), remoteHdr: sip.HeaderClone(from),
		target: *req.Contact().Address.Clone(), transport: req.Transport(),
		remoteCSeq: req.CSeq().SeqNo, localCSeq: 0, remoteSDP: body,
		inv: inv, tx: tx, lastSeen: time.Now(), delayed: delayed, replaces: replaced, srtp: pol,
	}
	if delayed {
		c.remoteSDP = nil
	}
	for _, rr := range req.GetHeaders("Record-Route") {
		c.routes = append(c.routes, rr.Value())
	}
	if sip.IsReliable(req.Transport()) {
		// Stream peers (notably WebSocket clients with .invalid contacts) are reached back over
		// the connection they called on.
		c.flow = req.Source()
	}
	if h := req.GetHeader("Allow"); h != nil {
		c.peerAllow = h.Value()
	}
	c.info = CallInfo{
		CallID: c.callID, From: from.Address.String(), FromUser: from.Address.User, FromDisplay: from.DisplayName,
		To: req.To().Address.String(), ToUser: req.To().Address.User, RequestURI: req.Recipient.String(),
		Source: req.Source(), Transport: strings.ToLower(req.Transport()), AuthUser: authUser, Trunk: trunkName,
	}
	c.key = dialogKey(c.callID, localTag, remoteTag)
	s.negotiateInboundTimer(c, req, se, refresher)
	c.info.CallerID, c.info.CallerName = callerIdentity(req, tr != nil)
	if trunkName == "" {
		c.srcIP = src // calls from trunks are bounded by max_calls only
	} else {
		if d, ok := tr.Destinations[req.Recipient.User]; ok {
			c.info.Destination = d
		}
		if !tr.rt.acquire() {
			s.log.Warn("sip invite refused: trunk at its call limit", "trunk", tr.Name, "src", req.Source(), "setting", "sip.trunks[].max_calls")
			s.respond(req, tx, 503, tr.rt.errCalls(), sip.NewHeader("Retry-After", "5"))
			return
		}
		c.trunkRT = tr.rt
	}
	if err := s.addCall(c); err != nil {
		if c.trunkRT != nil {
			c.trunkRT.release()
		}
		reason := "Service Unavailable (sip.max_calls)"
		if errors.Is(err, errSourceCalls) {
			reason = "Service Unavailable (too many calls from this address: sip.max_calls_per_source)"
		}
		s.log.Warn("sip inbound call refused", "src", req.Source(), "user", authUser, "err", err)
		s.respond(req, tx, 503, reason, sip.NewHeader("Retry-After", "5"))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))
	tx.OnCancel(func(*sip.Request) {
		// Called by sipgo under its transaction lock, which has already answered 200 to the
		// CANCEL and 487 to the INVITE: only record the outcome here.
		go c.canceled()
	})
	s.log.Info("sip inbound call", "call", c.id, "sip_call_id", c.callID, "from", c.info.From, "to", c.info.To, "user", authUser, "trunk", trunkName)
	go s.handler.HandleInvite(c)

	// Keep the sipgo handler (and so the INVITE server transaction) alive until the call has a
	// final response, is canceled, or the transaction dies.
	ring := time.NewTimer(s.cfg.RingTimeout)
	defer ring.Stop()
	select {
	case <-c.final:
	case <-c.done:
	case <-ring.C:
		s.log.Info("sip inbound call not answered in time", "call", c.id, "sip_call_id", c.callID)
		_ = c.Reject(480, "Temporarily Unavailable")
	case <-tx.Done():
		c.mu.Lock()
		answered := c.finalSet
		c.mu.Unlock()
		if !answered {
			c.finish(End{Cause: CauseTransport, Code: 408, Reason: "transaction ended"})
		}
	}
}

func (c *Call) canceled() {
	c.mu.Lock()
	already := c.finalSet
	c.finalSet = true
	c.mu.Unlock()
	if already {
		return
	}
	c.finish(End{Cause: CauseCanceled, Code: 487, Reason: "Request Terminated"})
}

func (c *Call) inboundResponse(code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(c.inv, code, reason, body)
	if len(body) > 0 {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	if code > 100 && code < 300 {
		res.AppendHeader(c.s.contactHeader(c.transport))
		res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
		res.AppendHeader(sip.NewHeader("Supported", "timer"))
	}
	res.AppendHeader(sip.NewHeader("User-Agent", c.s.cfg.UserAgent))
	return res
}

var errNotInbound = errors.New("sip: only for unanswered inbound calls")

func (c *Call) provisional(code int, reason string, sdp []byte) error {
	if c.dir != Inbound {
		return errNotInbound
	}
	c.mu.Lock()
	if c.finalSet {
		c.mu.Unlock()
		return errNotInbound
	}
	if sdp != nil {
		c.localSDP = sdp
	}
	c.mu.Unlock()
	return c.tx.Respond(c.inboundResponse(code, reason, sdp))
}

// Ringing sends 180 Ringing (with early-media SDP when sdp is not nil).
func (c *Call) Ringing(sdp []byte) error { return c.provisional(180, "Ringing", sdp) }

// Progress sends 183 Session Progress with early-media SDP.
func (c *Call) Progress(sdp []byte) error {
	if len(sdp) == 0 {
		return errors.New("sip: 183 needs SDP")
	}
	return c.provisional(183, "Session Progress", sdp)
}

// Answer sends 200 OK with the SDP answer. The 2xx is retransmitted (UDP) until ACK; without
// ACK the call is hung up after Config.AckTimeout.
func (c *Call) Answer(sdp []byte) error {
	if c.dir != Inbound {
		return errNotInbound
	}
	if len(sdp) == 0 {
		return errors.New("sip: answer needs SDP")
	}
	c.mu.Lock()
	if c.finalSet || c.state == stateEnded {
		c.mu.Unlock()
		return errNotInbound
	}
	c.finalSet = true
	c.localSDP = sdp
	c.state = stateAnswered
	res := c.inboundResponse(200, "OK", sdp)
	if c.se > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(c.se/time.Second), c.refresher)))
		if peerSupportsTimer(c.inv) {
			res.AppendHeader(sip.NewHeader("Require", "timer"))
		}
	}
	c.mu.Unlock()
	if err := c.tx.Respond(res); err != nil {
		if errors.Is(err, sip.ErrTransactionCanceled) { // CANCEL won the race: 487 went out
			c.finish(End{Cause: CauseCanceled, Code: 487, Reason: "Request Terminated"})
		} else {
			c.finish(End{Cause: CauseTransport, Reason: err.Error()})
		}
		return err
	}
	close(c.final)
	c.startSessionTimer()
	reliable := sip.IsReliable(c.transport)
	c.s.goTracked(func() { c.awaitAck(res, reliable) })
	return nil
}

// awaitAck retransmits the 2xx on unreliable transports until ACK (RFC 3261 §13.3.1.4).
func (c *Call) awaitAck(res *sip.Response, reliable bool) {
	deadline := time.NewTimer(c.s.cfg.AckTimeout)
	defer deadline.Stop()
	interval := sip.T1
	retr := time.NewTimer(interval)
	defer retr.Stop()
	for {
		select {
		case <-c.acked:
			return
		case <-c.done:
			return
		case <-deadline.C:
			c.s.log.Info("sip: no ACK for 2xx, hanging up", "call", c.id, "sip_call_id", c.callID)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.sendBye(ctx)
			cancel()
			c.finish(End{Cause: CauseAckTimeout})
			return
		case <-retr.C:
			if !reliable {
				_ = c.tx.Respond(res)
			}
			interval = min(2*interval, sip.T2)
			retr.Reset(interval)
		}
	}
}

// Reject answers an unanswered inbound call with a final 3xx–6xx status.
func (c *Call) Reject(code int, reason string) error {
	if c.dir != Inbound {
		return errNotInbound
	}
	if code < 300 || code > 699 {
		return fmt.Errorf("sip: reject code %d out of range", code)
	}
	if reason == "" {
		reason = reasonFor(code)
	}
	c.mu.Lock()
	if c.finalSet {
		c.mu.Unlock()
		return errNotInbound
	}
	c.finalSet = true
	c.mu.Unlock()
	err := c.tx.Respond(c.inboundResponse(code, reason, nil))
	close(c.final)
	c.finish(End{Cause: CauseRejected, Code: code, Reason: reason})
	return err
}

func reasonFor(code int) string {
	switch code {
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return "Rejected"
}

// --- in-dialog requests from the peer ----------------------------------------------------

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookupDialog(req)
	if c == nil {
		return
	}
	c.mu.Lock()
	wantAnswer := false
	if c.dir == Inbound && !c.ackedSet && req.CSeq().SeqNo == c.inv.CSeq().SeqNo {
		c.ackedSet = true
		close(c.acked)
		if c.state == stateAnswered {
			c.state = stateConfirmed
		}
		wantAnswer = c.delayed
	} else if c.reAcked != nil {
		close(c.reAcked)
		c.reAcked = nil
		wantAnswer = c.reAnswer
		c.reAnswer = false
	}
	c.lastSeen = time.Now()
	c.mu.Unlock()
	if wantAnswer {
		c.s.goTracked(func() { c.ackAnswer(req.Body()) })
	}
}

// ackAnswer applies the SDP answer an ACK carries to our offer (delayed offer); a missing or
// unusable one ends the call with BYE.
func (c *Call) ackAnswer(body []byte) {
	bad := func(why string) {
		c.s.log.Info("sip: ACK without a usable SDP answer, hanging up", "call", c.id, "sip_call_id", c.callID, "why", why)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.sendBye(ctx)
		cancel()
		c.finish(End{Cause: CauseBadAnswer, Code: 488, Reason: "ACK without a usable SDP answer: " + why})
	}
	if len(body) == 0 {
		bad("no SDP")
		return
	}
	info, err := sdpdir.Parse(body)
	if err != nil || !info.HasAudio || info.Port == 0 {
		bad("not an SDP answer with audio")
		return
	}
	if body, err = c.srtp.peerSDP(body); err != nil {
		bad(err.Error())
		return
	}
	if ev := c.events0(); ev != nil {
		if _, err := ev.Reoffer(c, Reoffer{SDP: body, Info: info, Hold: info.OnHold(), Answer: true}); err != nil {
			bad(err.Error())
			return
		}
	}
	c.mu.Lock()
	c.remoteSDP = body
	c.mu.Unlock()
}

// checkInDialog finds the call for an in-dialog request and enforces CSeq ordering; it
// answers 481/500 itself when it returns nil.
func (s *Server) checkInDialog(req *sip.Request, tx sip.ServerTransaction) *Call {
	c := s.lookupDialog(req)
	if c == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := req.CSeq().SeqNo
	if c.remoteCSeq != 0 && seq <= c.remoteCSeq {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error (CSeq out of order)", nil))
		return nil
	}
	c.remoteCSeq = seq
	c.lastSeen = time.Now()
	return c
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := s.checkInDialog(req, tx)
	if c == nil {
		return
	}
	s.respond(req, tx, 200, "OK")
	c.finish(End{Cause: CauseRemoteHangup, Code: 200, Reason: "BYE"})
}

func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	// Matching CANCELs are handled inside sipgo's INVITE transaction; this one matched none.
	s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := s.checkInDialog(req, tx)
	if c == nil {
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if len(req.Body()) == 0 {
		s.respond(req, tx, 200, "OK") // keep-alive style INFO
		return
	}
	d, err := ParseDTMF(ct, req.Body())
	if errors.Is(err, errDTMFType) {
		s.respond(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
		return
	}
	if err != nil {
		s.respond(req, tx, 400, "Bad DTMF")
		return
	}
	s.respond(req, tx, 200, "OK")
	if ev := c.events0(); ev != nil {
		ev.DTMF(c, d)
	}
}

func (s *Server) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	c := s.checkInDialog(req, tx)
	if c == nil {
		return
	}
	var answer []byte
	if len(req.Body()) > 0 {
		a, code := c.answerReoffer(req.Body())
		if code != 200 {
			s.respond(req, tx, code, reasonFor(code))
			return
		}
		answer = a
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", answer)
	if answer != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(s.contactHeader(c.transport))
	c.refreshedBy(req, res)
	_ = tx.Respond(res)
}

func (s *Server) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	c := s.checkInDialog(req, tx)
	if c == nil {
		return
	}
	c.mu.Lock()
	busy, pendingAck := c.busy, c.reAcked != nil
	confirmed := c.state == stateConfirmed || c.dir == Outbound && c.state == stateAnswered
	c.mu.Unlock()
	if busy {
		s.respond(req, tx, 491, "Request Pending")
		return
	}
	if pendingAck || !confirmed {
		s.respond(req, tx, 500, "Server Internal Error", sip.NewHeader("Retry-After", "1"))
		return
	}
	var answer []byte
	if len(req.Body()) > 0 {
		a, code := c.answerReoffer(req.Body())
		if code != 200 {
			s.respond(req, tx, code, reasonFor(code))
			return
		}
		answer = a
	} else {
		// Offerless re-INVITE: we offer our current SDP (sendrecv, new version), the ACK
		// carries the answer (ackAnswer).
		local := c.LocalSDP()
		a, err := sdpdir.Set(local, sdpdir.SendRecv)
		if err != nil {
			s.respond(req, tx, 500, "Server Internal Error (no local SDP)")
			return
		}
		answer = sdpdir.BumpVersion(a)
		c.mu.Lock()
		c.localSDP = answer
		c.mu.Unlock()
	}
	if h := req.Contact(); h != nil {
		c.mu.Lock()
		c.target = *h.Address.Clone()
		c.mu.Unlock()
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", answer)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(s.contactHeader(c.transport))
	res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	res.AppendHeader(sip.NewHeader("Supported", "timer"))
	c.refreshedBy(req, res)
	acked := make(chan struct{})
	c.mu.Lock()
	c.reAcked = acked
	c.reAnswer = len(req.Body()) == 0
	c.mu.Unlock()
	if err := tx.Respond(res); err != nil {
		return
	}
	if !sip.IsReliable(req.Transport()) {
		c.s.goTracked(func() {
			interval := sip.T1
			t := time.NewTimer(interval)
			defer t.Stop()
			limit := time.NewTimer(64 * sip.T1)
			defer limit.Stop()
			for {
				select {
				case <-acked:
					return
				case <-c.done:
					return
				case <-limit.C:
					c.mu.Lock()
					if c.reAcked == acked {
						c.reAcked = nil
					}
					c.mu.Unlock()
					return
				case <-t.C:
					_ = tx.Respond(res)
					interval = min(2*interval, sip.T2)
					t.Reset(interval)
				}
			}
		})
	} else {
		// Reliable: nothing to retransmit, but do not block later re-INVITEs on a lost ACK.
		c.s.goTracked(func() {
			select {
			case <-acked:
			case <-c.done:
			case <-time.After(64 * sip.T1):
				c.mu.Lock()
				if c.reAcked == acked {
					c.reAcked = nil
				}
				c.mu.Unlock()
			}
		})
	}
}

// answerReoffer computes the answer to an in-dialog offer; code is the SIP status to use.
func (c *Call) answerReoffer(offer []byte) ([]byte, int) {
	info, err := sdpdir.Parse(offer)
	if err != nil || !info.HasAudio {
		return nil, 488
	}
	if offer, err = c.srtp.peerSDP(offer); err != nil {
		c.s.log.Info("sip re-offer refused by its SRTP keys", "call", c.id, "sip_call_id", c.callID, "why", err.Error())
		return nil, 488
	}
	c.mu.Lock()
	sameAsBefore := string(offer) == string(c.remoteSDP)
	local := c.localSDP
	ev := c.events
	c.mu.Unlock()
	if sameAsBefore && local != nil {
		return local, 200 // session refresh: nothing changed
	}
	var answer []byte
	if ev != nil {
		a, err := ev.Reoffer(c, Reoffer{SDP: offer, Info: info, Hold: info.OnHold()})
		if err != nil {
			return nil, 488
		}
		answer = a
	}
	if answer == nil {
		if local == nil {
			return nil, 488
		}
		a, err := sdpdir.Set(local, sdpdir.AnswerFor(info))
		if err != nil {
			return nil, 488
		}
		answer = sdpdir.BumpVersion(a)
	}
	c.mu.Lock()
	c.remoteSDP = offer
	c.localSDP = answer
	c.mu.Unlock()
	return answer, 200
}

// --- requests we send in the dialog -------------------------------------------------------

// noBuild tells sipgo to send the request exactly as built.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

func (s *Server) via(tp string) *sip.ViaHeader {
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(tp),
		Host: s.cfg.ExternalHost, Port: s.port(strings.ToLower(tp)), Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranchN(16))
	v.Params.Add("rport", "")
	return v
}

// bindLocal makes UDP requests leave from our listening socket.
func (s *Server) bindLocal(req *sip.Request, tp string) {
	if !strings.EqualFold(tp, "udp") {
		return
	}
	if a, ok := s.Addr("udp").(*net.UDPAddr); ok {
		req.Laddr = sip.Addr{IP: a.IP, Port: a.Port}
	}
}

func (c *Call) newRequest(method sip.RequestMethod) *sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := sip.NewRequest(method, *c.target.Clone())
	tp := c.transport
	req.AppendHeader(c.s.via(tp))
	for _, r := range c.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := c.localHdr
	to := c.remoteHdr
	switch h := from.(type) {
	case *sip.ToHeader:
		f := h.AsFrom()
		req.AppendHeader(&f)
	case *sip.FromHeader:
		req.AppendHeader(sip.HeaderClone(h))
	}
	switch h := to.(type) {
	case *sip.FromHeader:
		t := h.AsTo()
		req.AppendHeader(&t)
	case *sip.ToHeader:
		req.AppendHeader(sip.HeaderClone(h))
	}
	cid := sip.CallIDHeader(c.callID)
	req.AppendHeader(&cid)
	if method != sip.ACK {
		c.localCSeq++
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.localCSeq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(c.s.contactHeader(tp))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", c.s.cfg.UserAgent))
	req.SetTransport(tp)
	c.s.bindLocal(req, tp)
	return req
}

// do sends an in-dialog request and waits for its final response.
func (c *Call) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.Body() == nil {
		req.SetBody(nil)
	}
	if err := c.route(ctx, req); err != nil {
		return nil, err
	}
	tx, err := c.s.sendTx(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	res, err := c.await(ctx, tx)
	if errors.Is(err, errTxEnded) {
		if err := tx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("sip: transaction ended without response")
	}
	return res, err
}

// errTxEnded is await's answer when the transaction ends before a final response.
var errTxEnded = errors.New("sip: transaction ended")

// await waits for the final response of tx, noting each provisional one on the way.
// It returns errTxEnded when the transaction ends first, ctx's error when ctx ends first.
func (c *Call) await(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	return c.s.await(ctx, tx)
}

// await is Call.await for requests outside a call (REGISTER, OPTIONS keep-alives).
func (s *Server) await(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	for {
		select {
		case res := <-tx.Responses():
			s.gotResponse(res)
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, errTxEnded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// doOK is do for a request whose only good answer is a 2xx: any other final status is a
// *StatusError.
func (c *Call) doOK(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	if !res.IsSuccess() {
		return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
	}
	return res, nil
}

func (c *Call) sendBye(ctx context.Context) error {
	_, err := c.doOK(ctx, c.newRequest(sip.BYE))
	return err
}

// Hangup ends the call: BYE when established, 480 when an inbound call is still unanswered.
// (An unanswered outbound call is canceled by canceling the Dial context.)
func (c *Call) Hangup(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.mu.Lock()
	state, finalSet := c.state, c.finalSet
	c.mu.Unlock()
	if c.dir == Inbound && !finalSet {
		return c.Reject(480, "Temporarily Unavailable")
	}
	var err error
	if state == stateAnswered || state == stateConfirmed {
		err = c.sendBye(ctx)
	}
	c.finish(End{Cause: CauseLocalHangup})
	return err
}

// SendDTMF sends one digit by SIP INFO (application/dtmf-relay).
func (c *Call) SendDTMF(ctx context.Context, digit rune, duration time.Duration) error {
	if !validDigit(digit) {
		return fmt.Errorf("sip: invalid DTMF digit %q", digit)
	}
	if duration <= 0 {
		duration = 160 * time.Millisecond
	}
	req := c.newRequest(sip.INFO)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody([]byte(fmt.Sprintf("Signal=%c\r\nDuration=%d\r\n", digit, duration.Milliseconds())))
	_, err := c.doOK(ctx, req)
	return err
}

// Options sends an in-dialog OPTIONS (a liveness probe) and returns the status code.
func (c *Call) Options(ctx context.Context) (int, error) {
	res, err := c.do(ctx, c.newRequest(sip.OPTIONS))
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// Reinvite sends a re-INVITE with sdp (for example with a=sendonly to put the peer on hold)
// and returns the peer's SDP answer.
func (c *Call) Reinvite(ctx context.Context, sdp []byte) ([]byte, error) {
	c.mu.Lock()
	if c.busy || (c.state != stateConfirmed && !(c.dir == Outbound && c.state == stateAnswered)) {
		c.mu.Unlock()
		return nil, errors.New("sip: dialog not ready for re-INVITE")
	}
	c.busy = true
	tp := c.transport
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.busy = false; c.mu.Unlock() }()
	sdp, err := c.srtp.ourOffer(sdp) // srtp.go
	if err != nil {
		return nil, err
	}

	// Over 1300 bytes to a UDP peer, the re-INVITE (and the rest of the dialog) goes over TCP
	// (RFC 3261 §18.1.1, mtu.go).
	req, err := c.fitInvite(func() *sip.Request { return c.buildReinvite(sdp) })
	if err != nil {
		return nil, err
	}
	if err := c.route(ctx, req); err != nil {
		return nil, err
	}
	tx, err := c.sendInvite(ctx, req)
	if err != nil {
		c.mu.Lock()
		if c.tcpFallback > 0 && tp != c.transport { // TCP failed: small requests still go as before
			c.transport, c.info.Transport = tp, strings.ToLower(tp)
		}
		c.mu.Unlock()
		return nil, err
	}
	defer tx.Terminate()
	res, err := c.await(ctx, tx)
	if errors.Is(err, errTxEnded) {
		return nil, fmt.Errorf("sip: re-INVITE failed: %w", tx.Err())
	}
	if err != nil {
		return nil, err
	}
	if !res.IsSuccess() {
		return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
	}
	ack := c.newRequest(sip.ACK)
	ack.CSeq().SeqNo = req.CSeq().SeqNo
	if err := c.route(ctx, ack); err != nil {
		return nil, err
	}
	if err := c.s.sendDirect(ack); err != nil {
		return nil, err
	}
	answer := res.Body()
	if len(answer) > 0 {
		if answer, err = c.srtp.peerSDP(answer); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	c.localSDP = sdp
	if len(answer) > 0 {
		c.remoteSDP = answer
	}
	if h := res.Contact(); h != nil {
		c.target = *h.Address.Clone()
	}
	c.mu.Unlock()
	c.refreshedByResponse(res)
	return answer, nil
}

// buildReinvite is a re-INVITE of the dialog carrying sdp.
func (c *Call) buildReinvite(sdp []byte) *sip.Request {
	req := c.newRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	c.mu.Lock()
	if c.se > 0 {
		req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(c.se/time.Second), c.ourRefresherRole())))
	}
	c.mu.Unlock()
	req.SetBody(sdp)
	return req
}

// StatusError is a final SIP failure status (3xx–6xx) of a request we sent. Contacts holds
// the redirect targets of a 3xx.
type StatusError struct {
	Code     int
	Reason   string
	Contacts []string
}

func (e *StatusError) Error() string { return fmt.Sprintf("sip: %d %s", e.Code, e.Reason) }
