package sipgw

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
)

// HandleInvite routes an inbound call (sip.CallHandler). It runs in its own
// goroutine for the whole life of the call.
func (g *Gateway) HandleInvite(call *sip.Call) {
	info := call.Info()
	g.mu.Lock()
	switch {
	case g.closed || g.srv == nil:
		g.mu.Unlock()
		_ = call.Reject(503, "Service Unavailable")
		return
	case g.draining:
		g.mu.Unlock()
		_ = call.Reject(503, "Service Unavailable (draining)")
		return
	case g.inbound >= g.cfg.MaxInbound:
		g.mu.Unlock()
		_ = call.Reject(503, "Service Unavailable (too many calls)")
		return
	}
	g.inbound++
	g.sources[call.ID()] = info.Source
	g.wg.Add(1)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inbound--
		delete(g.sources, call.ID())
		g.mu.Unlock()
		g.wg.Done()
	}()

	if old := call.Replaces(); old != nil {
		g.replaceDialog(call, old, g.log.With("sip_call", call.ID(), "sip_call_id", info.CallID, "from", info.From))
		return
	}
	user := requestUser(info)
	rt, err := g.router.Route(user)
	if err != nil {
		g.log.Info("inbound SIP call: no route", "sip_call_id", info.CallID, "user", user, "from", info.Source, "err", err)
		_ = call.Reject(404, "Not Found")
		return
	}
	offer := call.RemoteSDP()
	if len(offer) == 0 && call.DelayedOffer() {
		offer = placeholderOffer(info.Source)
	}
	if len(offer) == 0 {
		_ = call.Reject(488, "Not Acceptable Here (an SDP offer is required)")
		return
	}
	owner := ownerPrefix + call.ID()
	log := g.log.With("sip_call", call.ID(), "sip_call_id", info.CallID, "from", info.From, "to", user)
	desc := signaling.Desc{"sdp": string(offer), "sdp_type": "rtp"}
	if n := displayName(info.CallerName); n != "" { // asserted identity from trunks, else From
		desc["caller_name"] = n
	}
	if isUserName(info.CallerID) {
		desc["caller_id"] = info.CallerID
	}
	if rt.SessionType != "" {
		g.inboundSession(call, rt, desc, owner, log)
		return
	}
	g.inboundCall(call, rt, desc, owner, log)
}

// placeholderOffer stands in for the offer of a delayed-offer INVITE (one without SDP): every
// codec the media engine speaks, at the caller's address on the discard port 9. The media's
// answer to it becomes our offer in the 200; the caller's answer in the ACK then reaches the
// media as a re-offer (legEvents.Reoffer) and sets its real address and codec.
func placeholderOffer(source string) []byte {
	ip := "127.0.0.1"
	if ap, err := netip.ParseAddrPort(source); err == nil {
		ip = ap.Addr().Unmap().String()
	}
	family := "IP4"
	if strings.Contains(ip, ":") {
		family = "IP6"
	}
	return []byte("v=0\r\n" +
		"o=- 1 1 IN " + family + " " + ip + "\r\n" +
		"s=-\r\n" +
		"c=IN " + family + " " + ip + "\r\n" +
		"t=0 0\r\n" +
		"m=audio 9 RTP/AVP 0 8 111 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n")
}

// requestUser is the user part of the Request-URI (the dialled number), else
// of the To URI; for a trunk call, what the trunk's destinations map it to.
func requestUser(info sip.CallInfo) string {
	if info.Destination != "" {
		return info.Destination
	}
	if u, _ := uriUserHost(info.RequestURI); u != "" {
		return u
	}
	return info.ToUser
}

// inboundSession answers the call with a session of an extension's type.
func (g *Gateway) inboundSession(call *sip.Call, rt Route, offer signaling.Desc, owner string, log *slog.Logger) {
	info := call.Info()
	opts := map[string]any{}
	if rt.RoomID != "" {
		opts["room_id"] = rt.RoomID
	}
	if rt.Bot != "" {
		opts["bot"] = rt.Bot
	}
	ctx, cancel := context.WithTimeout(g.ctx, 15*time.Second)
	res, err := g.core.StartSession(ctx, signaling.SessionRequest{
		Type: rt.SessionType, Offer: offer, Owner: owner, User: info.AuthUser, Options: opts,
	})
	cancel()
	if err != nil {
		e := signaling.AsError(err)
		code, reason := sipStatus(e)
		log.Info("inbound SIP call: session refused", "type", rt.SessionType, "err", fmtErr(e), "sip", code)
		_ = call.Reject(code, reason+": "+oneLine(e.Text))
		return
	}
	sid := res.SessionID
	log = log.With("session_id", sid)
	stopped := g.watchStop(sid)
	defer stopped.cancel()
	call.SetEvents(&legEvents{g: g, sessionID: sid, side: signaling.SideCaller})
	answer := res.Answer.SDP()
	if answer == "" {
		_ = call.Reject(488, "Not Acceptable Here (no answer from the media)")
		_ = g.core.StopSession(sid, signaling.Err(signaling.CodeSIPNoSDP))
		return
	}
	if err := call.Answer([]byte(answer)); err != nil {
		log.Info("inbound SIP call: answer failed", "err", err)
		_ = g.core.StopSession(sid, sipEndError(call.End()))
		return
	}
	log.Info("inbound SIP call answered", "type", rt.SessionType)
	stopDTMF := g.watchDTMF(call, sid, signaling.SideCaller)
	defer stopDTMF()
	select {
	case <-call.Done():
		_ = g.core.StopSession(sid, sipEndError(call.End()))
	case <-stopped.done:
		hangup(call)
	case <-g.ctx.Done():
		hangup(call)
		_ = g.core.StopSession(sid, signaling.Errorf(signaling.CodeSessionStop, "SIP gateway stopping"))
	}
	log.Info("inbound SIP call ended")
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// stopWatch tells when a session stops.
type stopWatch struct {
	done   chan struct{}
	cancel func()
}

func (g *Gateway) watchStop(sid string) stopWatch {
	sink := &stopSink{done: make(chan struct{})}
	sub := signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: signaling.EventStop, ObjID: sid}
	bus := g.core.Bus()
	bus.Subscribe(sink, sub)
	// The session may have stopped before the subscription.
	if _, ok := g.core.LookupSession(sid); !ok {
		sink.Deliver(signaling.Event{})
	}
	return stopWatch{done: sink.done, cancel: func() { bus.Unsubscribe(sink, sub) }}
}

// stopSink closes done on its first event.
type stopSink struct {
	once sync.Once
	done chan struct{}
}

func (s *stopSink) Deliver(signaling.Event) { s.once.Do(func() { close(s.done) }) }

// inObserver turns the core's call progress into channel messages for the
// goroutine that owns the SIP call.
type inObserver struct {
	ringing  chan signaling.Desc
	answered chan signaling.Desc
	hangup   chan *signaling.Error
}

func newInObserver() *inObserver {
	return &inObserver{ringing: make(chan signaling.Desc, 1), answered: make(chan signaling.Desc, 1), hangup: make(chan *signaling.Error, 1)}
}

func (o *inObserver) CallRinging(_ string, answer signaling.Desc) {
	select {
	case o.ringing <- answer:
	default:
		if len(answer) > 0 { // keep an early answer rather than a bare ringing
			select {
			case <-o.ringing:
			default:
			}
			select {
			case o.ringing <- answer:
			default:
			}
		}
	}
}

func (o *inObserver) CallAnswered(_ string, answer signaling.Desc) {
	select {
	case o.answered <- answer:
	default:
	}
}

func (o *inObserver) CallHangup(_ string, err *signaling.Error) {
	select {
	case o.hangup <- err:
	default:
	}
}

// inboundCall bridges the call through a proxy session to whoever the router
// finds.
func (g *Gateway) inboundCall(call *sip.Call, rt Route, offer signaling.Desc, owner string, log *slog.Logger) {
	info := call.Info()
	far := g.farSide(rt)
	ctx, cancel := context.WithTimeout(g.ctx, 15*time.Second)
	res, err := g.core.StartSession(ctx, signaling.SessionRequest{
		Type: signaling.TypeProxy, Offer: offer, Owner: owner, User: info.AuthUser,
		Options: map[string]any{"proxy_type": far},
	})
	cancel()
	if err != nil {
		e := signaling.AsError(err)
		code, reason := sipStatus(e)
		log.Info("inbound SIP call: session refused", "err", fmtErr(e), "sip", code)
		_ = call.Reject(code, reason)
		return
	}
	sid := res.SessionID
	obs := newInObserver()
	leg := newSIPLeg(g, call, info.AuthUser, "", sid, signaling.SideCaller, obs, log)
	defer g.untrackLeg(call, leg) // a call never answered, or ended
	call.SetEvents(&legEvents{g: g, sessionID: sid, side: signaling.SideCaller, leg: leg})
	caller := signaling.CallerInfo{Name: offer.String("caller_name"), ID: offer.String("caller_id"), User: info.AuthUser, Owner: owner}
	data := map[string]any{"sip_from": info.From, "sip_call_id": info.CallID}
	if info.Trunk != "" {
		data["sip_trunk"] = info.Trunk // for call records
	}
	ctx, cancel = context.WithTimeout(g.ctx, 15*time.Second)
	callID, err := g.core.StartCall(ctx, signaling.CallRequest{
		Type: rt.CallType, Callee: rt.Callee, SessionID: sid, Offer: res.Offer,
		Caller: caller, RingTime: g.cfg.RingTime, Observer: legObserver{inObserver: obs, leg: leg}, Data: data,
	})
	cancel()
	if err != nil {
		e := signaling.AsError(err)
		code, reason := sipStatus(e)
		_ = g.core.StopSession(sid, e)
		log.Info("inbound SIP call: call refused", "err", fmtErr(e), "sip", code)
		_ = call.Reject(code, reason)
		return
	}
	log = log.With("call_id", callID, "session_id", sid)
	leg.mu.Lock()
	leg.callID, leg.log = callID, log
	leg.mu.Unlock()
	var earlySDP string
	for {
		select {
		case a := <-obs.ringing:
			if sdp := a.SDP(); sdp != "" && a.SDPType() == "rtp" && earlySDP == "" {
				earlySDP = sdp
				_ = call.Progress([]byte(sdp))
			} else {
				_ = call.Ringing(nil)
			}
		case a := <-obs.answered:
			sdp := a.SDP()
			if sdp == "" {
				sdp = earlySDP
			}
			if sdp == "" {
				log.Info("inbound SIP call: answered without SDP")
				_ = g.core.HangupCall(callID, signaling.Err(signaling.CodeSIPNoSDP))
				continue
			}
			if err := call.Answer([]byte(sdp)); err != nil {
				_ = g.core.HangupCall(callID, sipEndError(call.End()))
				continue
			}
			log.Debug("SIP offer and answer", "offer", string(call.RemoteSDP()), "answer", sdp)
			log.Info("inbound SIP call answered")
			g.serveLeg(leg) // until the leg ends, through transfers
			return
		case e := <-obs.hangup:
			code, reason := sipStatus(e)
			log.Info("inbound SIP call not answered", "err", fmtErr(e), "sip", code)
			if call.Reject(code, reason) != nil {
				hangup(call)
			}
			_ = g.core.StopSession(sid, e)
			return
		case <-call.Done():
			e := sipEndError(call.End())
			_ = g.core.HangupCall(callID, e)
			_ = g.core.StopSession(sid, e)
			log.Info("inbound SIP call ended", "answered", false)
			return
		case <-g.ctx.Done():
			e := signaling.Errorf(signaling.CodeSessionStop, "SIP gateway stopping")
			_ = g.core.HangupCall(callID, e)
			_ = g.core.StopSession(sid, e)
			_ = call.Reject(503, "Service Unavailable")
			return
		}
	}
}

// farSide is the kind of the far side of an inbound call's proxy session.
func (g *Gateway) farSide(rt Route) string {
	switch {
	case rt.CallType == signaling.CallTypeSIP:
		return "rtp"
	case rt.CallType != signaling.CallTypeUser || g.cfg.UserFarSide == "webrtc":
		return "webrtc"
	case g.cfg.UserFarSide == "rtp":
		return "rtp"
	}
	srv := g.server()
	if srv == nil {
		return "webrtc"
	}
	for _, b := range srv.Registrar().Lookup(rt.Callee) {
		if b.Transport != "ws" && b.Transport != "wss" {
			return "rtp"
		}
	}
	return "webrtc"
}
