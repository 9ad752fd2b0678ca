package vertogw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// Gateway connects a verto.Server to a signaling.Core. Create it with New, pass it to
// verto.New as the CallHandler, then call Attach with the server.
type Gateway struct {
	cfg  Config
	core *signaling.Core
	log  *slog.Logger

	mu      sync.Mutex
	srv     *verto.Server
	perUser map[string]int // calls in the router, by Verto user
	closed  bool
	drain   bool
	wg      sync.WaitGroup // routing goroutines
}

// New returns a Gateway on core; log may be nil. The media of the sessions it starts is reached
// through the core's capabilities (signaling.MediaAs).
func New(cfg Config, core *signaling.Core, log *slog.Logger) (*Gateway, error) {
	if core == nil {
		return nil, errors.New("vertogw: New needs a core")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, core: core, log: log.With("component", "vertogw"), perUser: map[string]int{}}, nil
}

// Attach gives the gateway the Verto server it serves and registers the call types "verto"
// (a Verto user) and "user" (every Verto login of a user rings besides the user's other
// devices) with the core.
func (g *Gateway) Attach(srv *verto.Server) {
	g.mu.Lock()
	g.srv = srv
	g.mu.Unlock()
	g.core.AddResolver(signaling.CallTypeVerto, signaling.ResolverFunc(g.resolveVerto))
	g.core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(g.resolveUser))
}

// Presence reports a Verto login's socket coming and going to the core's presence registry
// (verto.Config.OnPresence), so that other nodes of a cluster find the user.
func (g *Gateway) Presence(user, sessid string, online bool) {
	if online {
		g.core.Presence().Add(signaling.Contact{User: user, Kind: signaling.ContactVerto, ID: sessid})
		return
	}
	g.core.Presence().Remove(signaling.ContactVerto, sessid)
}

// Drain refuses new calls from Verto clients (SYSTEM_SHUTDOWN); calls in progress go on.
func (g *Gateway) Drain() {
	g.mu.Lock()
	g.drain = true
	g.mu.Unlock()
}

func (g *Gateway) draining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.drain || g.closed
}

// Close waits for routing in progress to finish (call it after the Verto server's Close).
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *Gateway) server() *verto.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.srv
}

// ownerKey is the core Owner of everything a Verto session (sessid) starts; resolvers skip it
// so that a user calling their own name does not ring the calling page.
func ownerKey(sessid string) string { return "verto:" + sessid }

// take reserves one call slot of user.
func (g *Gateway) take(user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.perUser[user] >= g.cfg.maxCalls() {
		return false
	}
	g.perUser[user]++
	return true
}

func (g *Gateway) release(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perUser[user]--; g.perUser[user] <= 0 {
		delete(g.perUser, user)
	}
}

// Calls returns the number of Verto calls the gateway has in the router.
func (g *Gateway) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.perUser {
		n += c
	}
	return n
}

// Causes the gateway reports that the verto package has no name for.
var (
	causeServiceUnavailable    = verto.Cause{Code: 63, Name: "SERVICE_UNAVAILABLE"}
	causeServiceNotImplemented = verto.Cause{Code: 79, Name: "SERVICE_NOT_IMPLEMENTED"}
)

// routeCause is the cause a refused destination number gets.
func routeCause(err error) verto.Cause {
	if errors.Is(err, ErrNoDestination) {
		return verto.CauseUnallocatedNumber
	}
	return verto.CauseInvalidNumberFormat
}

// causeOf maps a core error (a call's hangup or a session's stop) to a Verto cause.
func causeOf(err error, callType string) verto.Cause {
	e := signaling.AsError(err)
	if e == nil {
		return verto.CauseNormalClearing
	}
	switch e.Code {
	case signaling.CodeNoDestination, signaling.CodeUserNotFound:
		if callType == signaling.CallTypeUser || callType == signaling.CallTypeVerto {
			return verto.CauseUserNotRegistered
		}
		return verto.CauseNoRouteDestination
	case signaling.CodeCallRejected, signaling.CodeVertoRejected:
		if c, ok := verto.CauseByName(causeNameIn(e.Text)); ok {
			return c
		}
		if c, ok := sipCause(e.Text); ok {
			return c
		}
		return verto.CauseCallRejected
	case signaling.CodeNoAnswer:
		return verto.CauseNoAnswer
	case signaling.CodeAlreadyAnswered:
		return verto.CauseLoseRace
	case signaling.CodeOriginatorCancel:
		return verto.CauseOriginatorCancel
	case signaling.CodeNoMediaserver:
		return causeServiceUnavailable
	case signaling.CodeUnknownSessionType, signaling.CodeNotImplemented:
		return causeServiceNotImplemented
	case signaling.CodeRoomNotFound:
		return verto.CauseNoRouteDestination
	case signaling.CodeMissingOffer, signaling.CodeSIPNoSDP, signaling.CodeInvalidParameters:
		return verto.CauseIncompatibleDestination
	case signaling.CodeTimeout:
		return verto.CauseMediaTimeout
	case signaling.CodeSessionTimeout:
		return verto.CauseRecoveryOnTimerExpire
	case signaling.CodeInternalError, signaling.CodeSIPSendError, signaling.CodeFSError, signaling.CodeFSOpError:
		return verto.CauseNormalTemporaryFailure
	case signaling.CodeInvalidOperation:
		return verto.CauseNormalCircuitCongestion
	case signaling.CodeSessionStop:
		return verto.CauseSystemShutdown
	}
	return verto.CauseNormalClearing
}

// sipCause maps a SIP rejection kept in a text ("486 Busy Here") to its Q.850 cause, as
// FreeSWITCH does (RFC 3398 §7.2.4.1).
func sipCause(text string) (verto.Cause, bool) {
	if len(text) < 3 {
		return verto.Cause{}, false
	}
	switch text[:3] {
	case "486", "600":
		return verto.CauseUserBusy, true
	case "404", "604":
		return verto.CauseUnallocatedNumber, true
	case "480":
		return verto.CauseNoUserResponse, true
	case "408":
		return verto.CauseNoAnswer, true
	case "403", "603":
		return verto.CauseCallRejected, true
	case "488", "606":
		return verto.CauseIncompatibleDestination, true
	case "503":
		return verto.CauseNormalCircuitCongestion, true
	}
	return verto.Cause{}, false
}

// causeNameIn finds a cause name in a text like "Verto bye: USER_BUSY".
func causeNameIn(text string) string {
	for i := len(text) - 1; i >= 0; i-- {
		if text[i] == ' ' {
			return text[i+1:]
		}
	}
	return text
}

// byeError is the core error for a Verto-side hangup: 2130 verto_bye with the cause.
func byeError(c verto.Cause) *signaling.Error {
	return signaling.Errorf(signaling.CodeVertoBye, "Verto bye: %s", c.Name)
}

// rejectError is the core error for a Verto client declining: 2131 verto_rejected.
func rejectError(c verto.Cause) *signaling.Error {
	return signaling.Errorf(signaling.CodeVertoRejected, "Verto rejected: %s", c.Name)
}

// dtmfQueue serialises one call's DTMF sends (each blocks while the digits play) and bounds
// how many may wait.
type dtmfQueue struct {
	mu      sync.Mutex
	pending int
	wg      *sync.WaitGroup
	turn    chan struct{}
}

func newDTMFQueue(wg *sync.WaitGroup) *dtmfQueue {
	q := &dtmfQueue{wg: wg, turn: make(chan struct{}, 1)}
	q.turn <- struct{}{}
	return q
}

const maxPendingDTMF = 8

// run runs f after the earlier sends, or drops it when too many are waiting.
func (q *dtmfQueue) run(ctx context.Context, f func(ctx context.Context)) bool {
	q.mu.Lock()
	if q.pending >= maxPendingDTMF {
		q.mu.Unlock()
		return false
	}
	q.pending++
	q.mu.Unlock()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer func() {
			q.mu.Lock()
			q.pending--
			q.mu.Unlock()
		}()
		select {
		case <-q.turn:
		case <-ctx.Done():
			return
		}
		defer func() { q.turn <- struct{}{} }()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		f(sctx)
	}()
	return true
}

// sendDTMF carries a Verto client's digits toward side to of session sid: RFC 4733 through
// the media, or, for a session whose media cannot send DTMF (p2p), a media/session/info
// {info: {dtmf}} event.
func (g *Gateway) sendDTMF(ctx context.Context, sid string, to signaling.Side, digits string, log *slog.Logger) {
	m, err := signaling.MediaAs[signaling.DTMFSender](g.core, sid)
	if err == nil {
		err = m.SendDTMF(ctx, to, digits, 0)
		if err == nil {
			log.Debug("verto dtmf sent as RFC 4733", "session_id", sid, "digits", digits)
			return
		}
	}
	if e := signaling.AsError(err); e == nil || e.Code != signaling.CodeNotImplemented {
		log.Info("verto dtmf not sent", "session_id", sid, "err", err)
		return
	}
	g.publishDTMF(sid, digits)
}

// publishDTMF tells the subscribers of session sid about a Verto client's digits.
func (g *Gateway) publishDTMF(sid, digits string) {
	g.core.Bus().Publish(signaling.Event{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: signaling.EventInfo, ObjID: sid,
		Body: map[string]any{"info": map[string]any{"dtmf": digits, "source": "verto"}}})
}

// setHold holds or resumes session sid (signaling.Holder): while held the session's caller
// audio does not reach the other side and no media timeout runs. Sessions without media (p2p)
// ignore it.
func (g *Gateway) setHold(ctx context.Context, sid string, held bool, log *slog.Logger) {
	h, err := signaling.MediaAs[signaling.Holder](g.core, sid)
	if err == nil {
		err = h.Hold(ctx, held)
	}
	if err != nil {
		if e := signaling.AsError(err); e == nil || e.Code != signaling.CodeNotImplemented {
			log.Info("verto hold not applied", "session_id", sid, "held", held, "err", errText(err))
			return
		}
		log.Debug("verto hold not applied", "session_id", sid, "held", held, "err", errText(err))
		return
	}
	log.Info("verto hold", "session_id", sid, "held", held)
}

func errText(err error) string {
	if e := signaling.AsError(err); e != nil {
		return fmt.Sprintf("%d %s", e.Code, e.Text)
	}
	return ""
}
