package fsbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/signaling"
)

// ESL is what the backend needs from the Event Socket: api commands and whether a
// connection is up. *esl.Client implements it.
type ESL interface {
	API(ctx context.Context, cmd string) (string, error)
	Connected() bool
}

// RoomEvents receives media/room/* events (conference membership). *signaling.Bus
// implements it.
type RoomEvents interface {
	Publish(ev signaling.Event)
}

// Options configure a Backend.
type Options struct {
	// ESL runs commands on FreeSWITCH (required).
	ESL ESL
	// Dialer makes the SIP legs (required).
	Dialer LegDialer
	// Profile is the conference profile of mcu rooms (default "nkbridge").
	Profile string
	// Context is the dialplan context of nkbridge's calls (default "nkbridge"); only
	// channels in it are candidates for adoption or cleanup after a reconnect.
	Context string
	// Rooms, if set, receives media/room events for conference membership.
	Rooms RoomEvents
	// CreateRooms lets mcu sessions (and updates) name a room that does not exist yet,
	// creating it; by default that answers 2030 room_not_found (create it first with
	// media/room/create, or give no room_id to get a new room).
	CreateRooms bool
	// ChannelTimeout bounds the wait for FreeSWITCH's channel event after the call is
	// answered (default 10 s). It also bounds how long the channel of a stopped mcu
	// session is remembered for its last conference del-member event, which arrives
	// after the session is gone and, without the profile's verbose-events, carries no
	// variable naming the session.
	ChannelTimeout time.Duration
	// CommandTimeout bounds each Event Socket command (default 5 s).
	CommandTimeout time.Duration
	Logger         *slog.Logger
}

// Backend is the FreeSWITCH backend of the session types park, echo, mcu and bridge.
// Feed it the Event Socket's events (HandleEvent) and reconciliations (Reconcile).
type Backend struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	sessions  map[string]*fsSession // by session id (starting and live)
	byChannel map[string]*fsSession // by FreeSWITCH channel uuid
	// departed: channels of stopped mcu sessions, until their del-member (or
	// ChannelTimeout)
	departed map[string]departure
	rooms    map[string]*fsRoom
	// repoll: starts still waiting for their channel after a reconciliation, with the
	// time to give up looking; polling: recheck is running
	repoll  map[*fsSession]time.Time
	settle  time.Time // recheck runs at least until then
	polling bool
	closed  bool
	stop    chan struct{} // closed by Close

	wg sync.WaitGroup
}

// departure is a stopped mcu session's channel, kept for its last del-member.
type departure struct {
	sid   string
	until time.Time
}

// Types are the session types the FreeSWITCH backend serves.
func Types() []string {
	return []string{signaling.TypePark, signaling.TypeEcho, signaling.TypeMCU, signaling.TypeBridge}
}

// New returns a Backend.
func New(opts Options) (*Backend, error) {
	if opts.ESL == nil || opts.Dialer == nil {
		return nil, errors.New("fsbridge: Options.ESL and Options.Dialer are required")
	}
	if opts.Profile == "" {
		opts.Profile = "nkbridge"
	}
	if opts.Context == "" {
		opts.Context = "nkbridge"
	}
	if err := esl.ValidateName(opts.Profile); err != nil {
		return nil, fmt.Errorf("fsbridge: conference profile: %w", err)
	}
	if opts.ChannelTimeout <= 0 {
		opts.ChannelTimeout = defaults.Duration("freeswitch.channel_timeout")
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = defaults.Duration("freeswitch.command_timeout")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{opts: opts, log: opts.Logger, sessions: map[string]*fsSession{}, byChannel: map[string]*fsSession{},
		departed: map[string]departure{}, rooms: map[string]*fsRoom{}, repoll: map[*fsSession]time.Time{},
		stop: make(chan struct{})}, nil
}

// Sessions returns the number of sessions the backend tracks.
func (b *Backend) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Close waits for pending cleanups (channel kills, BYEs). Sessions still live are left
// to the core, which stops them.
func (b *Backend) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// dialplan condition of testdata/freeswitch/dialplan/nkbridge.xml
var fsSessionID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func validSessionID(id string) error {
	if !fsSessionID.MatchString(id) {
		return signaling.Errorf(signaling.CodeInvalidSessionID, "Invalid session id for the FreeSWITCH backend: %q (letters, digits, '.', '_', '-')", id)
	}
	return nil
}

// StartMedia implements signaling.Backend: it calls FreeSWITCH, waits for the channel
// and moves it to the session type's application.
func (b *Backend) StartMedia(ctx context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	var none signaling.MediaResult
	typ := req.Type
	switch typ {
	case signaling.TypePark, signaling.TypeEcho, signaling.TypeMCU, signaling.TypeBridge:
	default:
		return nil, none, signaling.Errorf(signaling.CodeUnknownSessionType, "Session type %s is not served by the FreeSWITCH backend", typ)
	}
	if err := validSessionID(req.SessionID); err != nil {
		return nil, none, err
	}
	if len(req.Offer) == 0 || req.Offer.SDP() == "" {
		return nil, none, signaling.Errorf(signaling.CodeMissingOffer, "Missing offer: session type %s needs an offer", typ)
	}
	target, err := b.target(typ, req.Options, req.Peer)
	if err != nil {
		return nil, none, err
	}
	if !b.waitConnected(ctx) {
		return nil, none, signaling.Errorf(signaling.CodeFSError, "FreeSWITCH is not connected (waited %s, freeswitch.command_timeout)", b.opts.CommandTimeout)
	}
	s := &fsSession{b: b, id: req.SessionID, token: uuid.NewString(), rep: req.Reporter, found: make(chan struct{}), abort: make(chan struct{}), log: b.log.With("session_id", req.SessionID)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, none, signaling.Errorf(signaling.CodeSessionStop, "Server stopping")
	}
	if _, dup := b.sessions[s.id]; dup {
		b.mu.Unlock()
		return nil, none, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", s.id)
	}
	b.sessions[s.id] = s // the waiter: channel events with our header find it from now on
	b.mu.Unlock()

	fail := func(e error) (signaling.Media, signaling.MediaResult, error) {
		s.log.Info("fsbridge: session start failed", "err", e)
		s.teardown()
		return nil, none, e
	}
	leg, err := b.opts.Dialer.Dial(ctx, LegRequest{SessionID: s.id, Token: s.token, Dest: typ, Offer: req.Offer, OnEnd: s.legEnded})
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.leg = leg
	s.mu.Unlock()

	wait := time.NewTimer(b.opts.ChannelTimeout)
	defer wait.Stop()
	select {
	case <-s.found:
	case <-s.abort:
		s.mu.Lock()
		gone := s.gone
		s.mu.Unlock()
		if gone == nil {
			gone = signaling.Errorf(signaling.CodeFSChannelStop, "FreeSWITCH call ended while starting")
		}
		return fail(gone)
	case <-wait.C:
		return fail(signaling.Errorf(signaling.CodeFSError, "FreeSWITCH reported no channel for the call within %s", b.opts.ChannelTimeout))
	case <-ctx.Done():
		return fail(signaling.Errorf(signaling.CodeSessionStop, "Session start abandoned"))
	}
	s.mu.Lock()
	gone := s.gone
	s.mu.Unlock()
	if gone != nil {
		return fail(gone)
	}
	if err := s.moveTo(ctx, target); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.live = true
	gone = s.gone
	s.mu.Unlock()
	if gone != nil { // hung up while being moved
		return fail(gone)
	}
	s.log.Info("fsbridge: session on FreeSWITCH", "type", typ, "channel", s.channelID(), "room", target.room)
	return s, signaling.MediaResult{Answer: leg.Answer(), RoomID: target.room}, nil
}

// waitConnected reports whether the Event Socket is connected, waiting up to
// CommandTimeout for a reconnection: a start during a short outage goes ahead once the
// client is back instead of failing at once.
func (b *Backend) waitConnected(ctx context.Context) bool {
	if b.opts.ESL.Connected() {
		return true
	}
	deadline := time.NewTimer(b.opts.CommandTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if b.opts.ESL.Connected() {
				return true
			}
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-b.stop:
			return false
		}
	}
}

// placement is where a session's channel should be.
type placement struct {
	typ  string
	room string // mcu
	peer string // bridge: the other session
}

func (b *Backend) target(typ string, opts map[string]any, peer string) (placement, error) {
	p := placement{typ: typ}
	switch typ {
	case signaling.TypeMCU:
		if v, ok := opts["room_id"]; ok && v != nil {
			r, ok := v.(string)
			if !ok || esl.ValidateName(r) != nil {
				return p, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: room_id (letters, digits, '.', '_', '-')")
			}
			if !b.opts.CreateRooms && !b.roomKnown(r) {
				return p, signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", r)
			}
			p.room = r
		} else {
			p.room = uuid.NewString()
		}
	case signaling.TypeBridge:
		if peer == "" {
			if v, ok := opts["peer"].(string); ok {
				peer = v
			} else if v, ok := opts["peer_id"].(string); ok {
				peer = v
			}
		}
		if peer == "" {
			return p, signaling.MissingField("peer")
		}
		p.peer = peer
	case signaling.TypePark, signaling.TypeEcho:
	default:
		return p, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: session_type %q (park, echo, mcu or bridge)", typ)
	}
	return p, nil
}

// cmdCtx bounds one command.
func (b *Backend) cmdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.CommandTimeout)
}

// fsError maps an Event Socket error to an API error.
func fsError(what string, err error) *signaling.Error {
	var ce *esl.CommandError
	switch {
	case errors.As(err, &ce):
		return signaling.Errorf(signaling.CodeFSOpError, "FreeSWITCH refused %s: %s", what, ce.Reply)
	case errors.Is(err, esl.ErrInvalid):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid parameters for %s: %v", what, err)
	case errors.Is(err, esl.ErrNotConnected):
		return signaling.Errorf(signaling.CodeFSError, "FreeSWITCH is not connected (%s)", what)
	case errors.Is(err, context.DeadlineExceeded):
		return signaling.Errorf(signaling.CodeFSError, "FreeSWITCH did not answer %s in time", what)
	case errors.Is(err, context.Canceled):
		return signaling.Errorf(signaling.CodeSessionStop, "Request abandoned during %s", what)
	}
	return signaling.Errorf(signaling.CodeFSError, "FreeSWITCH error during %s: %v", what, err)
}

// background runs f on a goroutine Close waits for.
func (b *Backend) background(f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// kill hangs a channel up on FreeSWITCH (best effort).
func (b *Backend) kill(channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommandTimeout)
	defer cancel()
	if err := esl.UUIDKill(ctx, b.opts.ESL, channel, "NORMAL_CLEARING"); err != nil {
		var ce *esl.CommandError
		if !errors.As(err, &ce) { // -ERR No such channel: already gone
			b.log.Warn("fsbridge: uuid_kill failed", "channel", channel, "err", err)
		}
	}
}

// ---- events ------------------------------------------------------------------------

// HandleEvent takes one Event Socket event (esl.ClientOptions.OnEvent).
func (b *Backend) HandleEvent(ev *esl.Event) {
	switch ev.Name() {
	case "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_EXECUTE":
		switch ev.Get("Channel-State") {
		case "CS_HANGUP", "CS_REPORTING", "CS_DESTROY":
			return // a channel on its way out is nobody's new channel
		}
		if sid := ev.Var("sip_h_" + SessionHeader); sid != "" {
			b.adopt(sid, ev.Var("sip_h_"+LegHeader), ev.UUID())
		}
	case "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE":
		cause := ev.Get("Hangup-Cause")
		if cause == "" {
			cause = ev.Var("hangup_cause")
		}
		b.channelGone(ev.UUID(), fmt.Sprintf("FreeSWITCH channel stopped: %s", orDefault(cause, "unknown cause")))
	case "CUSTOM":
		if ev.Subclass() == "conference::maintenance" {
			b.conferenceEvent(ev)
		}
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// adopt links channel to the starting session sid whose leg carried token (first
// channel event wins). The token tells a new call from an old one of a reused session id.
func (b *Backend) adopt(sid, token, channel string) bool {
	if esl.ValidateUUID(channel) != nil {
		return false
	}
	b.mu.Lock()
	s := b.sessions[sid]
	if s == nil || token != s.token {
		b.mu.Unlock()
		return false
	}
	s.mu.Lock()
	ok := s.channel == "" || s.channel == channel
	first := s.channel == ""
	if first {
		s.channel = channel
		b.byChannel[channel] = s
	}
	s.mu.Unlock()
	b.mu.Unlock()
	if first {
		close(s.found)
	}
	return ok
}

// channelGone handles the end of a channel: a live session stops with 2302, a starting
// one fails.
func (b *Backend) channelGone(channel, text string) {
	b.mu.Lock()
	s := b.byChannel[channel]
	b.mu.Unlock()
	if s == nil {
		return
	}
	s.channelEnded(signaling.Errorf(signaling.CodeFSChannelStop, "%s", text))
}

func (b *Backend) conferenceEvent(ev *esl.Event) {
	action := ev.Get("Action")
	room := ev.Get("Conference-Name")
	pub := func(typ string, body map[string]any) {
		if b.opts.Rooms != nil && room != "" {
			b.opts.Rooms.Publish(signaling.Event{Class: signaling.ClassMedia, Subclass: signaling.SubclassRoom, Type: typ, ObjID: room, Body: body})
		}
	}
	// Rooms start and end with nkbridge's own bookkeeping (rooms.go), not with the
	// conference-create/destroy of FreeSWITCH, which only knows rooms with members.
	if ev.Get("Conference-Profile-Name") != b.opts.Profile {
		return
	}
	// The member's session: the channel's, or, for the del-member of a session already
	// stopped, the one the channel belonged to (FreeSWITCH sends it after nkbridge killed
	// the channel). The channel's own header is there only with verbose-events.
	b.mu.Lock()
	s := b.byChannel[ev.UUID()]
	var sid string
	if s != nil {
		sid = s.id
	} else if d, ok := b.departed[ev.UUID()]; ok && time.Now().Before(d.until) {
		sid = d.sid
		if action == "del-member" {
			delete(b.departed, ev.UUID())
		}
	}
	b.mu.Unlock()
	if sid == "" {
		sid = ev.Var("sip_h_" + SessionHeader)
	}
	if sid == "" {
		return
	}
	member := ev.Get("Member-ID")
	var info map[string]any
	switch action {
	case "add-member":
		info = map[string]any{"event": "room_joined", "room_id": room, "member_id": member}
		pub("started_member", map[string]any{"session_id": sid, "member_id": member})
		b.setMember(room, sid, member)
	case "del-member":
		info = map[string]any{"event": "room_left", "room_id": room, "member_id": member}
		pub("stopped_member", map[string]any{"session_id": sid, "member_id": member})
	case "start-talking", "stop-talking":
		talking := action == "start-talking"
		info = map[string]any{"event": "talking", "room_id": room, "member_id": member, "talking": talking}
		pub("talking", map[string]any{"session_id": sid, "member_id": member, "talking": talking})
	default:
		return
	}
	if s == nil {
		return
	}
	s.mu.Lock()
	switch action {
	case "add-member":
		s.member = member
	case "del-member":
		if s.member == member {
			s.member = ""
		}
	}
	report := !s.stopped // a starting session's subscribers already listen
	s.mu.Unlock()
	if report && s.rep != nil {
		s.rep.Event("info", map[string]any{"info": info})
	}
}

// ---- reconciliation ------------------------------------------------------------------

// Reconcile compares FreeSWITCH's channels with the backend's sessions after a
// (re)connection or lost events (esl.ClientOptions.Reconcile): a session whose channel
// is gone stops (2302); an nkbridge channel nobody tracks is adopted by its starting
// session or killed; a live session whose channel left its application is moved back.
//
// "show channels" reads FreeSWITCH's channels table, which its SQL queue writes from the
// channel events: it lags the channels by up to a few hundred milliseconds. So nothing
// is decided on the table alone: a channel missing from it is confirmed gone with
// uuid_exists before its session stops, a channel listed out of place is checked with
// its current_application variable before it is moved, and starts still waiting for
// their channel are looked for again (recheck) until they find it or time out. For the
// same reason the whole comparison is repeated for settleTime after each reconciliation:
// a channel hung up a moment ago is still in the table.
func (b *Backend) Reconcile(ctx context.Context, r esl.Reconciliation) {
	b.lookFor(b.compare(ctx, r.Channels, r.Reason))
}

// compare is one comparison of the channels table with the sessions; it returns the
// starts still waiting for their channel.
func (b *Backend) compare(ctx context.Context, chans []esl.Channel, reason string) []*fsSession {
	live := make(map[string]esl.Channel, len(chans))
	for _, c := range chans {
		live[c.UUID] = c
	}
	b.adoptChannels(ctx, chans)
	// Our sessions: stop those whose channel vanished, put the others back in place.
	b.mu.Lock()
	var sessions []*fsSession
	for _, s := range b.sessions {
		sessions = append(sessions, s)
	}
	b.mu.Unlock()
	var waiting []*fsSession
	for _, s := range sessions {
		s.mu.Lock()
		ch, isLive, want, stopped := s.channel, s.live && !s.stopped, s.place, s.stopped
		moving, gen := s.moving, s.gen
		s.mu.Unlock()
		if ch == "" {
			if !stopped {
				waiting = append(waiting, s)
			}
			continue
		}
		c, ok := live[ch]
		if !ok {
			exists, err := b.channelExists(ctx, ch)
			switch {
			case err != nil:
				s.log.Warn("fsbridge: reconcile: cannot tell whether the channel exists; session kept", "channel", ch, "err", err)
			case exists:
				s.log.Debug("fsbridge: reconcile: channel not in show channels yet", "channel", ch)
			default:
				s.log.Warn("fsbridge: reconcile: channel gone", "channel", ch, "reason", reason)
				b.channelGone(ch, "FreeSWITCH channel gone (found after "+reason+")")
			}
			continue
		}
		if !isLive || moving > 0 || placedAs(c, want, b.opts.Profile) {
			continue
		}
		// The row may predate the last move: ask the channel what it runs now.
		cur, err := b.currentApplication(ctx, ch)
		if err != nil {
			s.log.Warn("fsbridge: reconcile: cannot read the channel's application", "channel", ch, "err", err)
			continue
		}
		if placedAs(cur, want, b.opts.Profile) {
			continue
		}
		s.mu.Lock()
		unchanged := s.gen == gen && s.moving == 0 && !s.stopped
		s.mu.Unlock()
		if !unchanged { // moved meanwhile: the new place is what nkbridge wants
			continue
		}
		s.log.Warn("fsbridge: reconcile: channel out of place; moving it back", "channel", ch, "application", cur.Application, "want", want.typ)
		if err := s.moveTo(ctx, want); err != nil {
			s.log.Warn("fsbridge: reconcile: move failed", "err", err)
		}
	}
	return waiting
}

// adoptChannels looks at the channels nkbridge does not track: one of an nkbridge call
// (by its session header) is adopted by the start waiting for it, or killed.
func (b *Backend) adoptChannels(ctx context.Context, chans []esl.Channel) {
	for _, c := range chans {
		b.mu.Lock()
		_, known := b.byChannel[c.UUID]
		b.mu.Unlock()
		if known || !b.ours(c) {
			continue
		}
		cctx, cancel := b.cmdCtx(ctx)
		sid, ok, err := esl.UUIDGetVar(cctx, b.opts.ESL, c.UUID, "sip_h_"+SessionHeader)
		var token string
		if err == nil && ok {
			token, _, err = esl.UUIDGetVar(cctx, b.opts.ESL, c.UUID, "sip_h_"+LegHeader)
		}
		cancel()
		if err != nil || !ok {
			continue // gone meanwhile (the table lags hangups too), or not nkbridge's
		}
		if b.adopt(sid, token, c.UUID) {
			b.log.Info("fsbridge: reconcile: channel adopted", "channel", c.UUID, "session_id", sid)
			continue
		}
		b.log.Warn("fsbridge: reconcile: killing a channel of no live session", "channel", c.UUID, "session_id", sid)
		b.kill(c.UUID)
	}
}

// channelExists asks FreeSWITCH (uuid_exists) whether a channel exists.
func (b *Backend) channelExists(ctx context.Context, ch string) (bool, error) {
	cctx, cancel := b.cmdCtx(ctx)
	defer cancel()
	return esl.UUIDExists(cctx, b.opts.ESL, ch)
}

// currentApplication reads what a channel runs from its variables current_application
// and current_application_data, which FreeSWITCH sets as each application starts.
func (b *Backend) currentApplication(ctx context.Context, ch string) (esl.Channel, error) {
	cctx, cancel := b.cmdCtx(ctx)
	defer cancel()
	app, _, err := esl.UUIDGetVar(cctx, b.opts.ESL, ch, "current_application")
	if err != nil {
		return esl.Channel{}, err
	}
	data, _, err := esl.UUIDGetVar(cctx, b.opts.ESL, ch, "current_application_data")
	if err != nil {
		return esl.Channel{}, err
	}
	return esl.Channel{UUID: ch, Application: app, ApplicationData: data}, nil
}

// repollInterval is how often recheck reads "show channels" again; settleTime is how
// long after a reconciliation it does so even with no start waiting, for the channels
// too new for the table at that moment (FreeSWITCH 1.10.12: up to 197 ms).
const (
	repollInterval = 100 * time.Millisecond
	settleTime     = time.Second
)

// lookFor has recheck read "show channels" again after a reconciliation: for settleTime,
// to compare again what the table showed too late (new channels to adopt or kill, and
// channels hung up meanwhile), and for the starts still waiting for their channel
// (their events were lost with the connection) each until its ChannelTimeout.
func (b *Backend) lookFor(waiting []*fsSession) {
	now := time.Now()
	until := now.Add(b.opts.ChannelTimeout)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, s := range waiting {
		if b.sessions[s.id] == s {
			b.repoll[s] = until
		}
	}
	if t := now.Add(settleTime); t.After(b.settle) {
		b.settle = t
	}
	if b.polling {
		return
	}
	b.polling = true
	b.background(b.recheck)
}

// recheck reads "show channels" every repollInterval: until the settle time is over it
// compares the table with the sessions again, then it only adopts channels, until no
// start in repoll is left waiting (found, failed or timed out). It stops early when the
// Event Socket is down (the next connection reconciles again) or the backend closes.
func (b *Backend) recheck() {
	t := time.NewTicker(repollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
		case <-t.C:
		}
		now := time.Now()
		b.mu.Lock()
		down := b.closed || !b.opts.ESL.Connected()
		for s, until := range b.repoll {
			s.mu.Lock()
			done := s.channel != "" || s.stopped
			s.mu.Unlock()
			if done || now.After(until) || down {
				delete(b.repoll, s)
			}
		}
		settling := now.Before(b.settle)
		if down || len(b.repoll) == 0 && !settling {
			b.polling = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := b.cmdCtx(context.Background())
		chans, err := esl.ShowChannels(ctx, b.opts.ESL)
		cancel()
		if err != nil {
			b.log.Warn("fsbridge: reconcile: show channels again", "err", err)
			continue
		}
		if !settling {
			b.adoptChannels(context.Background(), chans)
			continue
		}
		waiting := b.compare(context.Background(), chans, "recheck")
		b.mu.Lock()
		for _, s := range waiting {
			if _, ok := b.repoll[s]; !ok && b.sessions[s.id] == s {
				b.repoll[s] = now.Add(b.opts.ChannelTimeout)
			}
		}
		b.mu.Unlock()
	}
}

// ours reports whether a channel may be an nkbridge call (its context or its profile).
func (b *Backend) ours(c esl.Channel) bool {
	return c.Context == b.opts.Context || strings.HasPrefix(c.Name, "sofia/nkbridge/")
}

// placedAs reports whether c runs what p asks for.
func placedAs(c esl.Channel, p placement, profile string) bool {
	switch p.typ {
	case signaling.TypePark:
		return c.Application == "park"
	case signaling.TypeEcho:
		return c.Application == "echo"
	case signaling.TypeMCU:
		return c.Application == "conference" && c.ApplicationData == p.room+"@"+profile
	}
	return true // bridges: FreeSWITCH shows no application for a bridged channel
}
