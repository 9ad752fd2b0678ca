package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/icholy/digest"

	"github.com/nkbridge/nkbridge/sip/registrar"
)

// Progress is a provisional response to an outbound INVITE.
type Progress struct {
	Code   int
	Reason string
	// SDP is the early-media answer carried by a 180/183, if any.
	SDP []byte
}

// DialOptions describe an outbound call.
type DialOptions struct {
	// Target is the SIP URL to call ("sip:bob@203.0.113.5:5060;transport=tcp"). Its host must be
	// an allowed outbound domain or a trunk host.
	Target string
	// Binding, instead of Target, calls a contact registered with our registrar.
	Binding *registrar.Binding
	// Caller is the user on whose behalf the call is placed; calls to a Target require a user
	// allowed to call SIP URLs (User.CanCallSIP) unless Trusted is set.
	Caller string
	// Trusted marks internal legs (e.g. to a configured media server); never set it from user
	// input.
	Trusted bool
	// FromUser / FromDisplay name us in the From header (default "nkbridge").
	FromUser    string
	FromDisplay string
	// Offer is the SDP offer (required).
	Offer []byte
	// Events receives in-dialog events once the call is answered.
	Events CallEvents
	// OnProgress is called for each 1xx (180/183 with early-media SDP included).
	OnProgress func(Progress)

	sessionExpires time.Duration // raised after a 422
	headers        []sip.Header  // identity headers of trunk calls (identity.go)
}

// Errors of Dial besides *StatusError.
var (
	ErrForbiddenTarget = errors.New("sip: target domain is not allowed")
	ErrNotPermitted    = errors.New("sip: caller may not call SIP URLs")
	ErrBadTarget       = errors.New("sip: bad target URI")
)

// Authorize checks whether caller may call target (a SIP URL): the caller must be allowed to
// call SIP URLs and the target host must be an allowed outbound domain or a trunk host.
func (s *Server) Authorize(caller, target string) (*sip.Uri, error) {
	var u sip.Uri
	if len(target) > 1024 || sip.ParseUri(target, &u) != nil || u.Host == "" || (u.Scheme != "sip" && u.Scheme != "sips") {
		return nil, ErrBadTarget
	}
	if caller != "" && !s.users.CanCallSIP(caller) {
		return nil, ErrNotPermitted
	}
	if s.trunkForHost(u.Host, u.Port) != nil {
		return &u, nil
	}
	for _, d := range s.cfg.OutboundDomains {
		if hostMatches(d, u.Host, u.Port) {
			return &u, nil
		}
	}
	return nil, ErrForbiddenTarget
}

func (s *Server) trunkForHost(host string, port int) *trunk {
	for i := range s.trunks {
		for _, h := range s.trunks[i].Hosts { // Host is Hosts[0]
			if hostMatches(h, host, port) {
				return &s.trunks[i]
			}
		}
	}
	return nil
}

// Dial places an outbound call and returns once it is answered (after ACK). A 3xx–6xx final
// response returns *StatusError with the code and reason. Canceling ctx before the answer sends
// CANCEL and returns ctx's error.
func (s *Server) Dial(ctx context.Context, o DialOptions) (*Call, error) {
	if o.Binding == nil && o.Target != "" {
		if c, err, ok := s.dialTrunk(ctx, o); ok { // trunkhealth.go: cps, balance, failover
			return c, err
		}
	}
	return s.dial(ctx, o)
}

func (s *Server) dial(ctx context.Context, o DialOptions) (*Call, error) {
	var target sip.Uri
	switch {
	case o.Binding != nil:
		live := false
		for _, b := range s.reg.Lookup(o.Binding.AOR) {
			if b.Contact == o.Binding.Contact {
				live = true
			}
		}
		if !live || sip.ParseUri(o.Binding.Contact, &target) != nil {
			return nil, &StatusError{Code: 480, Reason: "Temporarily Unavailable (not registered)"}
		}
	case o.Target != "":
		if !o.Trusted && o.Caller == "" {
			return nil, ErrNotPermitted
		}
		u, err := s.Authorize(o.Caller, o.Target)
		if err != nil {
			return nil, err
		}
		target = *u
	default:
		return nil, ErrBadTarget
	}
	if len(o.Offer) == 0 {
		return nil, errors.New("sip: Dial needs an SDP offer")
	}
	pol := srtpPolicy{mode: SRTPOff}
	if o.Binding != nil {
		pol = s.userSRTP(o.Binding.AOR)
	} else if t := s.trunkForHost(target.Host, target.Port); t != nil {
		pol = trunkSRTP(t)
	}
	offer, err := pol.ourOffer(o.Offer) // srtp.go
	if err != nil {
		return nil, err
	}
	o.Offer = offer
	tp := "UDP"
	if v, ok := target.UriParams.Get("transport"); ok && v != "" {
		tp = strings.ToUpper(v)
	} else if o.Binding != nil && o.Binding.Transport != "" {
		tp = strings.ToUpper(o.Binding.Transport)
	}
	if s.port(strings.ToLower(tp)) == 0 && tp != "UDP" && tp != "TCP" {
		return nil, fmt.Errorf("sip: no %s listener", tp)
	}

	fromUser := o.FromUser
	if fromUser == "" {
		fromUser = "nkbridge"
	}
	localTag := sip.GenerateTagN(16)
	from := &sip.FromHeader{DisplayName: o.FromDisplay, Address: sip.Uri{Scheme: "sip", User: fromUser, Host: s.cfg.Domain}, Params: sip.NewParams()}
	from.Params.Add("tag", localTag)
	toURI := *target.Clone()
	toURI.UriParams, toURI.Headers = nil, nil
	to := &sip.ToHeader{Address: toURI, Params: sip.NewParams()}

	c := &Call{
		s: s, id: uuid.NewString(), dir: Outbound, done: make(chan struct{}),
		callID: uuid.NewString(), localTag: localTag, localHdr: from, remoteHdr: to,
		target: target, transport: tp, localCSeq: 1, localSDP: o.Offer, events: o.Events,
		lastSeen: time.Now(), srtp: pol,
	}
	if o.Binding != nil {
		c.peerUser = o.Binding.AOR // a registered device: its user (REFER authentication)
	}
	if b := o.Binding; b != nil && b.Source != "" {
		// Reach a device over the connection it registered on (TCP/TLS/WS), or at its source
		// address when its Contact is not an address at all (e.g. "xyz.invalid" from a WebSocket
		// client). A UDP device with an IP Contact is called at that Contact (RFC 3261).
		if _, err := netip.ParseAddr(target.Host); err != nil || sip.IsReliable(tp) {
			c.flow = b.Source
		}
	}
	c.info = CallInfo{CallID: c.callID, From: from.Address.String(), FromUser: fromUser, FromDisplay: o.FromDisplay,
		To: toURI.String(), ToUser: toURI.User, RequestURI: target.String(), Transport: strings.ToLower(tp), AuthUser: o.Caller}
	if t := s.trunkForHost(target.Host, target.Port); t != nil && o.Binding == nil {
		c.delayedOut = t.DelayedOffer // delayedout.go
		if !t.rt.acquire() {
			s.log.Warn("sip outbound call refused: trunk at its call limit", "trunk", t.Name, "setting", "sip.trunks[].max_calls")
			return nil, &StatusError{Code: 503, Reason: t.rt.errCalls()}
		}
		c.trunkRT = t.rt
	}
	if err := s.addCall(c); err != nil {
		if c.trunkRT != nil {
			c.trunkRT.release()
		}
		return nil, err
	}
	res, err := c.invite(ctx, o)
	if err != nil {
		var se *StatusError
		switch {
		case errors.As(err, &se):
			c.finish(End{Cause: CauseRejected, Code: se.Code, Reason: se.Reason})
		case ctx.Err() != nil:
			c.finish(End{Cause: CauseCanceled, Code: 487, Reason: "Request Terminated"})
		default:
			c.finish(End{Cause: CauseTransport, Reason: err.Error()})
		}
		return nil, err
	}
	_ = res
	return c, nil
}

func (c *Call) buildInvite(o DialOptions, cseq uint32) *sip.Request {
	s := c.s
	req := sip.NewRequest(sip.INVITE, *c.target.Clone())
	req.AppendHeader(s.via(c.transport))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(c.localHdr))
	req.AppendHeader(sip.HeaderClone(c.remoteHdr))
	cid := sip.CallIDHeader(c.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.INVITE})
	req.AppendHeader(s.contactHeader(c.transport))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	if !s.cfg.SessionTimer.Disabled {
		se := max(s.cfg.SessionTimer.Expires, o.sessionExpires)
		req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d", int(se/time.Second))))
		req.AppendHeader(sip.NewHeader("Min-SE", fmt.Sprintf("%d", int(s.cfg.SessionTimer.MinSE/time.Second))))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	for _, h := range o.headers {
		req.AppendHeader(sip.HeaderClone(h))
	}
	if c.delayedOut {
		req.SetBody(nil) // delayed offer: the peer offers in its 200
	} else {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(o.Offer)
	}
	req.SetTransport(c.transport)
	s.bindLocal(req, c.transport)
	return req
}

// invite runs the INVITE client transaction(s): auth retries, provisional responses, 2xx/ACK,
// and CANCEL on ctx end.
func (c *Call) invite(ctx context.Context, o DialOptions) (*sip.Response, error) {
	s := c.s
	cseq := uint32(1)
	req, err := c.fitInvite(func() *sip.Request { return c.buildInvite(o, cseq) })
	if err != nil {
		return nil, err
	}
	txCtx, txCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer txCancel()
	if err := c.route(ctx, req); err != nil {
		return nil, err
	}
	tx, err := c.sendInvite(txCtx, req)
	if err != nil {
		return nil, err
	}
	authTries := 0
	retried422 := false
	gotProvisional := false
	for {
		select {
		case res := <-tx.Responses():
			s.gotResponse(res)
			switch {
			case res.IsProvisional():
				if res.StatusCode > 100 {
					gotProvisional = true
				} else {
					gotProvisional = true // 100 also allows CANCEL (RFC 3261 §9.1)
				}
				if o.OnProgress != nil && res.StatusCode > 100 {
					var sdp []byte
					if ct := res.ContentType(); ct != nil && strings.HasPrefix(strings.ToLower(ct.Value()), "application/sdp") {
						sdp = res.Body()
					}
					if c.delayedOut {
						sdp = nil // an offer (no PRACK here): not early media
					}
					if len(sdp) > 0 {
						var err error
						if sdp, err = c.srtp.peerSDP(sdp); err != nil { // srtp.go: no early media then
							s.log.Info("sip early media refused by its SRTP keys", "sip_call_id", c.callID, "why", err.Error())
						}
					}
					o.OnProgress(Progress{Code: res.StatusCode, Reason: res.Reason, SDP: sdp})
				}
				continue
			case res.IsSuccess():
				c.mu.Lock()
				c.inviteTx = tx
				c.mu.Unlock()
				if err := c.established(res); err != nil {
					tx.Terminate()
					return nil, err
				}
				err := c.delayedFailed() // delayedout.go
				if err == nil {
					err = c.checkAnswerSRTP() // srtp.go
				}
				if err != nil {
					hctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
					_ = c.sendBye(hctx)
					cancel()
					return nil, err
				}
				if ctx.Err() != nil { // answered while we were canceling: hang up
					hctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
					_ = c.sendBye(hctx)
					cancel()
					return nil, ctx.Err()
				}
				return res, nil
			case res.StatusCode == 422 && !retried422:
				// Session Interval Too Small (RFC 4028 §6): retry once with the peer's Min-SE.
				retried422 = true
				minSE := res.GetHeader("Min-SE")
				n, perr := 0, error(nil)
				if minSE != nil {
					v, _, _ := strings.Cut(minSE.Value(), ";")
					n, perr = strconv.Atoi(strings.TrimSpace(v))
				}
				if minSE == nil || perr != nil || n <= 0 || n > 86400 {
					tx.Terminate()
					return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
				}
				tx.Terminate()
				o.sessionExpires = time.Duration(n) * time.Second
				cseq++
				if req, err = c.fitInvite(func() *sip.Request { return c.buildInvite(o, cseq) }); err != nil {
					return nil, err
				}
				if err := c.route(ctx, req); err != nil {
					return nil, err
				}
				if tx, err = c.sendInvite(txCtx, req); err != nil {
					return nil, err
				}
				gotProvisional = false
				continue
			case (res.StatusCode == 401 || res.StatusCode == 407) && authTries < 2:
				creds := s.trunkForHost(c.target.Host, c.target.Port)
				if creds == nil || creds.Username == "" {
					tx.Terminate()
					return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
				}
				authTries++
				tx.Terminate()
				var authErr error
				next, err := c.fitInvite(func() *sip.Request {
					r, err := c.authorizedInvite(o, res, creds, cseq+1)
					authErr = err
					return r
				})
				if authErr != nil {
					return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
				}
				if err != nil {
					return nil, err
				}

				cseq++
				req = next
				if err := c.route(ctx, req); err != nil {
					return nil, err
				}
				if tx, err = c.sendInvite(txCtx, req); err != nil {
					return nil, err
				}
				gotProvisional = false
				continue
			default:
				tx.Terminate()
				se := &StatusError{Code: res.StatusCode, Reason: res.Reason}
				if res.IsRedirection() {
					for _, h := range res.GetHeaders("Contact") {
						if ch, ok := h.(*sip.ContactHeader); ok && len(se.Contacts) < 16 {
							se.Contacts = append(se.Contacts, ch.Address.String())
						}
					}
				}
				return nil, se
			}
		case <-tx.Done():
			err := tx.Err()
			if errors.Is(err, sip.ErrTransactionTimeout) {
				return nil, &StatusError{Code: 408, Reason: "Request Timeout"}
			}
			return nil, &StatusError{Code: 503, Reason: fmt.Sprintf("Service Unavailable (%v)", err)}
		case <-ctx.Done():
			return c.cancelInvite(ctx, req, tx, gotProvisional)
		}
	}
}

// authorizedInvite builds a new INVITE answering a 401/407 challenge with trunk credentials.
func (c *Call) authorizedInvite(o DialOptions, res *sip.Response, t *trunk, cseq uint32) (*sip.Request, error) {
	hname, aname := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hname, aname = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(hname)
	if h == nil {
		return nil, errors.New("no challenge")
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return nil, err
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: c.target.String(), Username: t.Username, Password: t.Password})
	if err != nil {
		return nil, err
	}
	req := c.buildInvite(o, cseq)
	req.AppendHeader(sip.NewHeader(aname, cred.String()))
	return req, nil
}

// cancelInvite sends CANCEL for a pending INVITE and waits for its final response.
func (c *Call) cancelInvite(ctx context.Context, req *sip.Request, tx sip.ClientTransaction, gotProvisional bool) (*sip.Response, error) {
	defer tx.Terminate()
	wait := time.NewTimer(64 * sip.T1)
	defer wait.Stop()
	if !gotProvisional {
		// CANCEL may only follow a provisional response (RFC 3261 §9.1).
		select {
		case res := <-tx.Responses():
			c.s.gotResponse(res)
			if res.IsSuccess() {
				_ = c.established(res)
				hctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				_ = c.sendBye(hctx)
				cancel()
				return nil, ctx.Err()
			}
			if !res.IsProvisional() {
				return nil, ctx.Err()
			}
		case <-tx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			return nil, ctx.Err()
		}
	}
	cancelReq := sip.NewRequest(sip.CANCEL, req.Recipient)
	cancelReq.AppendHeader(sip.HeaderClone(req.Via()))
	for _, r := range req.GetHeaders("Route") {
		cancelReq.AppendHeader(sip.HeaderClone(r))
	}
	mf := sip.MaxForwardsHeader(70)
	cancelReq.AppendHeader(&mf)
	cancelReq.AppendHeader(sip.HeaderClone(req.From()))
	cancelReq.AppendHeader(sip.HeaderClone(req.To()))
	cancelReq.AppendHeader(sip.HeaderClone(req.CallID()))
	cancelReq.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancelReq.SetBody(nil)
	cancelReq.SetTransport(req.Transport())
	cancelReq.Laddr = req.Laddr
	cancelReq.SetDestination(req.Destination())
	cctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	ctx2 := cctx
	ctx2Tx, err := c.s.sendTx(ctx2, cancelReq)
	if err == nil {
		defer ctx2Tx.Terminate()
		go func() {
			// Drain the CANCEL's own responses so its transaction does not block.
			for {
				select {
				case r := <-ctx2Tx.Responses():
					c.s.gotResponse(r)
				case <-ctx2Tx.Done():
					return
				case <-cctx.Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case res := <-tx.Responses():
			c.s.gotResponse(res)
			if res.IsProvisional() {
				continue
			}
			if res.IsSuccess() { // 200 raced the CANCEL: confirm and hang up
				_ = c.established(res)
				hctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				_ = c.sendBye(hctx)
				cancel()
			}
			return nil, ctx.Err()
		case <-tx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			return nil, ctx.Err()
		}
	}
}

// established records the dialog from a 2xx and ACKs it.
func (c *Call) established(res *sip.Response) error {
	s := c.s
	toTag, _ := res.To().Params.Get("tag")
	c.mu.Lock()
	c.remoteTag = toTag
	c.remoteHdr = sip.HeaderClone(res.To())
	if h := res.Contact(); h != nil {
		c.target = *h.Address.Clone()
	}
	rrs := res.GetHeaders("Record-Route")
	c.routes = c.routes[:0]
	for i := len(rrs) - 1; i >= 0; i-- {
		c.routes = append(c.routes, rrs[i].Value())
	}
	if len(res.Body()) > 0 {
		c.remoteSDP = res.Body()
	}
	if h := res.GetHeader("Allow"); h != nil {
		c.peerAllow = h.Value()
	}
	c.remoteCSeq = 0
	c.state = stateAnswered
	c.info.Source = res.Source()
	inviteCSeq := res.CSeq().SeqNo
	c.mu.Unlock()
	s.keyCall(c, dialogKey(c.callID, c.localTag, toTag))

	ack := c.newRequest(sip.ACK)
	ack.CSeq().SeqNo = inviteCSeq
	c.mu.Lock()
	if c.delayedOut && c.ack == nil { // our answer to the 200's offer goes in the ACK
		if ans, err := delayedAnswer(c.localSDP, c.remoteSDP); err != nil {
			c.delayedErr = err
		} else {
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody(ans)
			c.localSDP = ans
		}
	}
	c.localCSeq = inviteCSeq
	c.ack = ack
	c.state = stateConfirmed
	tx := c.inviteTx
	c.mu.Unlock()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := c.route(rctx, ack)
	rcancel()
	if err != nil {
		return err
	}
	if err := s.sendDirect(ack.Clone()); err != nil {
		return err
	}
	if tx != nil {
		tx.OnRetransmission(func(r *sip.Response) {
			if r.IsSuccess() {
				c.reAck()
			}
		})
	}
	se, refresher, err := parseSessionExpires(res)
	if err == nil && se > 0 && !s.cfg.SessionTimer.Disabled {
		c.mu.Lock()
		c.se = se
		c.weRefresh = refresher != "uas"
		c.refresher = refresher
		c.mu.Unlock()
		c.startSessionTimer()
	}
	return nil
}

// reAck resends the ACK for a retransmitted 2xx.
func (c *Call) reAck() {
	c.mu.Lock()
	ack := c.ack
	c.mu.Unlock()
	if ack != nil {
		_ = c.s.sendDirect(ack.Clone())
	}
}
