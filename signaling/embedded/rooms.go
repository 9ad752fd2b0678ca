package embedded

// Rooms on the embedded engine (enabled with Backend.EnableRooms):
//
//   - publish {offer, room_id?, record?}: a WebRTC sender (audio, video) into an SFU room
//     (created when room_id is absent; 2030 for an unknown one unless CreateMissing). Reply
//     {answer, room_id}. record: true records the publisher's audio (WAV, record_paths in
//     media/session/info).
//   - listen {publisher_id, room_id?}: nkbridge's offer (the publisher's codecs); set_answer
//     completes it. update listen_switch {publisher_id} moves it to another publisher of the
//     room on the same PeerConnection (sequence numbers and timestamps continue). Listeners stop
//     with 2036 when their publisher leaves; their PLIs reach the publisher.
//   - park {offer}: the caller hears silence (or RoomsConfig.ParkFile looped); what it sends
//     is dropped.
//   - mcu {offer, room_id?, record?, audio_codec?, bitrate?}: an audio conference: everyone
//     hears the others (48 kHz mix, 20 ms), never themselves, in their own codec. Mute with
//     update media use_audio false. Talk detection: media/room/talking {session_id, talking}.
//     record: true records the room's mix (8 kHz WAV, record_paths in media/room/info); at
//     media.record_max_bytes or media.record_max_duration it stops with
//     media/room/record_stopped {record_paths, reason}.
//     update mcu_layout is accepted and answers {mcu_layout: "audio_only", video: false}.
//   - update session_type {session_type: echo|park|mcu, room_id?} moves a live echo, park or
//     mcu session between those types without renegotiating; the reply carries room_id for mcu.
//
// Room events (media/room/<type>, obj_id = room id): started, destroyed, started_publisher,
// stopped_publisher (mcu participants count as publishers), started_listener,
// stopped_listener, talking. An empty room is destroyed after RoomsConfig.EmptyGrace;
// media/room/destroy stops its sessions with 2032.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/room"
	"github.com/nkbridge/nkbridge/signaling"
)

// RoomTypes returns the session types served once rooms are enabled (EnableRooms).
func RoomTypes() []string {
	return []string{signaling.TypePublish, signaling.TypeListen, signaling.TypePark, signaling.TypeMCU}
}

func isRoomType(t string) bool {
	switch t {
	case signaling.TypePublish, signaling.TypeListen, signaling.TypePark, signaling.TypeMCU:
		return true
	}
	return false
}

// RoomsConfig configures the embedded rooms.
type RoomsConfig struct {
	// EmptyGrace is how long an empty room lives on (default 10 s).
	EmptyGrace time.Duration
	// CreateMissing makes publish/mcu with an unknown room_id create it (else 2030).
	CreateMissing bool
	// ParkFile is a WAV file looped to parked sessions (default: silence).
	ParkFile string
	// RecordDir is where mcu mixes are recorded (the engine's record folder).
	RecordDir string
	// RecordMaxBytes and RecordMaxDuration bound one mix recording (0: media.record_max_bytes,
	// media.record_max_duration of defaults.yaml); at the bound it stops with a
	// media/room/record_stopped event.
	RecordMaxBytes    int64
	RecordMaxDuration time.Duration
	// OnEvent publishes room events (media/room/<type>, obj_id = room id); usually the
	// core's Bus().Publish. It may also be set later with Rooms.SetEventSink.
	OnEvent func(signaling.Event)
}

// Rooms is the embedded engine's room provider (signaling.RoomProvider) and the state of the
// room session types. Get it with Backend.EnableRooms.
type Rooms struct {
	b    *Backend
	cfg  RoomsConfig
	mgr  *room.Manager
	log  *slog.Logger
	park []int16

	mu   sync.Mutex
	sink func(signaling.Event)
}

// EnableRooms adds publish, listen, park and mcu to the Backend (register the Backend for
// RoomTypes too, and the returned Rooms with Backends.RegisterRooms for sfu and mcu). Call it
// once, before serving; Rooms.Close (or Backend.Close) destroys every room.
func (b *Backend) EnableRooms(cfg RoomsConfig) (*Rooms, error) {
	r := &Rooms{b: b, cfg: cfg, log: b.log.With("component", "rooms"), sink: cfg.OnEvent}
	if cfg.ParkFile != "" {
		pcm, err := room.LoadWAV(cfg.ParkFile)
		if err != nil {
			return nil, fmt.Errorf("park file: %w", err)
		}
		r.park = pcm
	}
	r.mgr = room.NewManager(room.Config{EmptyGrace: cfg.EmptyGrace, RecordDir: cfg.RecordDir, Logger: r.log,
		RecordMaxBytes: cfg.RecordMaxBytes, RecordMaxDuration: cfg.RecordMaxDuration,
		OnEvent: r.onEvent, OnEvicted: r.onEvicted})
	b.mu.Lock()
	b.rooms = r
	b.mu.Unlock()
	return r, nil
}

// Rooms returns the Backend's rooms (nil until EnableRooms).
func (b *Backend) Rooms() *Rooms { return b.roomsOrNil() }

// SetEventSink sets where room events go.
func (r *Rooms) SetEventSink(f func(signaling.Event)) {
	r.mu.Lock()
	r.sink = f
	r.mu.Unlock()
}

// Manager returns the room manager (for tests and the SIP/Verto glue).
func (r *Rooms) Manager() *room.Manager { return r.mgr }

// Close destroys every room.
func (r *Rooms) Close() { r.mgr.Close() }

func (r *Rooms) onEvent(ev room.Event) {
	r.mu.Lock()
	sink := r.sink
	r.mu.Unlock()
	if sink != nil {
		sink(signaling.Event{Class: signaling.ClassMedia, Subclass: signaling.SubclassRoom, Type: ev.Type, ObjID: ev.RoomID, Body: ev.Body})
	}
}

func (r *Rooms) onEvicted(sessionID, reason string) {
	m, ok := r.b.mediaAny(sessionID)
	if !ok {
		return
	}
	var e *signaling.Error
	if reason == "publisher_stopped" {
		e = signaling.Errorf(signaling.CodePublisherStopped, "Publisher stopped")
	} else {
		e = signaling.Errorf(signaling.CodeRoomDestroyed, "Room destroyed")
	}
	m.reportStop(e)
}

// mediaAny finds a live or starting Media.
func (b *Backend) mediaAny(id string) (*Media, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.sessions[id]
	return m, ok
}

func (b *Backend) roomsOrNil() *Rooms {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rooms
}

// reportStop stops the session with e (once).
func (m *Media) reportStop(e *signaling.Error) {
	m.mu.Lock()
	if m.reported || m.stopped || m.sess == nil {
		m.mu.Unlock()
		return
	}
	m.reported = true
	m.mu.Unlock()
	if m.rep != nil {
		m.rep.Stopped(e)
	}
}

// ---- signaling.RoomProvider ----

func roomErr(err error, roomID string) error {
	switch {
	case errors.Is(err, room.ErrNotFound):
		return signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s (create it first with media/room/create, or set media.rooms_create_missing)", roomID)
	case errors.Is(err, room.ErrExists):
		return signaling.Errorf(signaling.CodeRoomAlreadyExists, "Room already exists: %s", roomID)
	case errors.Is(err, room.ErrWrongClass):
		return signaling.Errorf(signaling.CodeInvalidOperation, "Wrong room class: %v", strings.TrimPrefix(err.Error(), "room: "))
	case errors.Is(err, room.ErrNoPublisher):
		return signaling.Errorf(signaling.CodeUnknownPublisher, "Unknown publisher")
	case errors.Is(err, room.ErrClosed):
		return signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is shutting down")
	case errors.Is(err, room.ErrTooManyRooms), errors.Is(err, room.ErrTooManyMember):
		return signaling.Errorf(signaling.CodeNoMediaserver, "%s", strings.TrimPrefix(err.Error(), "room: "))
	case errors.Is(err, room.ErrMember):
		return signaling.Errorf(signaling.CodeInvalidOperation, "Session is already in a room")
	}
	return startError(err)
}

func roomOptions(opts map[string]any) (room.Options, error) {
	var o room.Options
	for _, k := range []string{"audio_codec", "video_codec"} {
		v, ok := opts[k]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok || len(s) > 32 {
			return o, signaling.InvalidField(k)
		}
		s = strings.ToLower(s)
		if k == "audio_codec" {
			if s != "" && s != "opus" && s != "pcmu" && s != "pcma" {
				return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: audio_codec (want opus, pcmu or pcma)")
			}
			o.AudioCodec = s
		} else {
			o.VideoCodec = s
		}
	}
	if v, ok := opts["bitrate"]; ok && v != nil {
		f, ok := number(v)
		if !ok || f < 0 || f > 100_000_000 {
			return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: bitrate (want bits/s from 0 to 100000000)")
		}
		o.Bitrate = int(f)
	}
	if v, ok := opts["record"]; ok && v != nil {
		b, ok := v.(bool)
		if !ok {
			return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: record (want true or false)")
		}
		o.Record = b
	}
	return o, nil
}

// CreateRoom implements signaling.RoomProvider.
func (r *Rooms) CreateRoom(_ context.Context, class, roomID string, opts map[string]any) (string, error) {
	o, err := roomOptions(opts)
	if err != nil {
		return "", err
	}
	if o.Record && r.cfg.RecordDir == "" {
		return "", signaling.Errorf(signaling.CodeNotImplemented, "Recording is not configured (media.record_dir)")
	}
	if o.Record && class != room.ClassMCU {
		return "", signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: record (sfu rooms record per publisher: publish with record: true)")
	}
	id, err := r.mgr.Create(class, roomID, o)
	if err != nil {
		return "", roomErr(err, roomID)
	}
	return id, nil
}

// DestroyRoom implements signaling.RoomProvider.
func (r *Rooms) DestroyRoom(_ context.Context, roomID string) error {
	if err := r.mgr.Destroy(roomID); err != nil {
		return roomErr(err, roomID)
	}
	return nil
}

// Rooms implements signaling.RoomProvider.
func (r *Rooms) Rooms() []signaling.RoomSummary {
	var out []signaling.RoomSummary
	for _, s := range r.mgr.List() {
		out = append(out, signaling.RoomSummary{RoomID: s.ID, Class: s.Class})
	}
	return out
}

// RoomInfo implements signaling.RoomProvider.
func (r *Rooms) RoomInfo(roomID string) (map[string]any, error) {
	rm, ok := r.mgr.Get(roomID)
	if !ok {
		return nil, signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", roomID)
	}
	info := rm.Info()
	info["backend"] = Name
	r.b.mu.Lock()
	for _, k := range []string{"publishers", "listeners"} {
		members, _ := info[k].(map[string]any)
		for id, v := range members {
			if m, ok := v.(map[string]any); ok {
				if u := r.b.users[id]; u != "" {
					m["user"] = u
				}
			}
		}
	}
	r.b.mu.Unlock()
	return info, nil
}

// ---- room session types ----

func stringOpt(opts map[string]any, k string) (string, error) {
	v, ok := opts[k]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", signaling.InvalidField(k)
	}
	if s != "" && !signaling.ValidID(s) {
		return "", signaling.InvalidField(k)
	}
	return s, nil
}

// startRoomMedia starts publish, listen, park and mcu sessions.
func (b *Backend) startRoomMedia(ctx context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	rs := b.roomsOrNil()
	if rs == nil {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNoMediaserver, "The embedded media engine has no rooms configured (session type %s)", req.Type)
	}
	if len(req.Answer) > 0 {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: answer (session type %s makes its own)", req.Type)
	}
	roomID, err := stringOpt(req.Options, "room_id")
	if err != nil {
		return nil, signaling.MediaResult{}, err
	}
	var callerKind media.Kind
	var initial media.MediaOptions
	if req.Type != signaling.TypeListen {
		if len(req.Offer) == 0 || req.Offer.SDP() == "" {
			return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeMissingOffer, "Missing offer: session type %s needs an offer with an sdp", req.Type)
		}
		if callerKind, err = kindOf(req.Offer.SDPType(), "offer.sdp_type"); err != nil {
			return nil, signaling.MediaResult{}, err
		}
		if initial, err = mediaOptions(req.Offer); err != nil {
			return nil, signaling.MediaResult{}, err
		}
		initial.Record = nil
	} else {
		if len(req.Offer) > 0 {
			return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeDuplicatedOffer, "Duplicated offer: listen sessions get nkbridge's offer")
		}
		callerKind = media.KindWebRTC
	}
	ro, err := roomOptions(req.Options)
	if err != nil {
		return nil, signaling.MediaResult{}, err
	}
	record := ro.Record
	ro.Record = false
	if record && b.eng != nil && rs.cfg.RecordDir == "" {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNotImplemented, "Recording is not configured (media.record_dir)")
	}
	if req.Type == signaling.TypePublish && callerKind != media.KindWebRTC {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: offer.sdp_type (publish takes a WebRTC offer)")
	}
	m := &Media{b: b, id: req.SessionID, typ: req.Type, rep: req.Reporter, callerKind: callerKind,
		log: b.log.With("session_id", req.SessionID, "type", req.Type)}
	m.room.cur = req.Type
	opts := media.SessionOptions{ID: req.SessionID, Media: initial, OnStop: m.engineStopped, OnDTMF: m.dtmfReceived}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is shutting down")
	}
	if _, dup := b.sessions[req.SessionID]; dup {
		b.mu.Unlock()
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", req.SessionID)
	}
	b.sessions[req.SessionID] = m
	if req.User != "" {
		b.users[req.SessionID] = req.User
	}
	b.mu.Unlock()

	var (
		sess *media.Session
		res  signaling.MediaResult
	)
	fail := func(err error) (signaling.Media, signaling.MediaResult, error) {
		if sess != nil {
			rs.mgr.Leave(req.SessionID)
			sess.Close()
		}
		b.forget(m)
		m.log.Info("embedded: room media start failed", "err", err)
		return nil, signaling.MediaResult{}, err
	}
	offer := media.Description{Kind: callerKind, SDP: req.Offer.SDP()}
	switch req.Type {
	case signaling.TypePublish:
		var rm *room.Room
		rm, _, err = rs.mgr.Publish(ctx, roomID, rs.cfg.CreateMissing, ro, req.SessionID, func(t media.Tap) (room.Endpoint, error) {
			s, ans, err := b.eng.StartPublish(ctx, offer, opts, t)
			if err != nil {
				return nil, err
			}
			sess = s
			res.Answer = descOf(ans, nil)
			return s, nil
		})
		if err != nil {
			return fail(roomErr(err, roomID))
		}
		res.RoomID = rm.ID()
		if record {
			on := true
			if err := sess.Update(media.MediaOptions{Record: &on}); err != nil {
				return fail(signaling.Errorf(signaling.CodeInternalError, "Recording failed: %v", err))
			}
		}
	case signaling.TypeListen:
		pid, err := stringOpt(req.Options, "publisher_id")
		if err != nil {
			return fail(err)
		}
		if pid == "" {
			return fail(signaling.MissingField("publisher_id"))
		}
		var rm *room.Room
		rm, _, err = rs.mgr.Listen(ctx, roomID, pid, req.SessionID, func(audio, video []media.Format, t media.Tap) (room.Endpoint, error) {
			s, off, err := b.eng.StartListen(ctx, audio, video, opts, t)
			if err != nil {
				return nil, err
			}
			sess = s
			res.Offer = descOf(off, nil)
			return s, nil
		})
		if err != nil {
			return fail(roomErr(err, roomID))
		}
		m.room.publisher = pid
		res.RoomID = rm.ID()
	case signaling.TypePark, signaling.TypeMCU:
		s, ans, err := b.eng.StartEcho(ctx, offer, opts)
		if err != nil {
			return fail(startError(err))
		}
		sess = s
		res.Answer = descOf(ans, nil)
		if req.Type == signaling.TypePark {
			pk, err := rs.mgr.Park(s, rs.park)
			if err != nil {
				return fail(startError(err))
			}
			m.room.parked = pk
		} else {
			rm, err := rs.mgr.JoinMCU(roomID, rs.cfg.CreateMissing, ro, s, record)
			if err != nil {
				return fail(roomErr(err, roomID))
			}
			res.RoomID = rm.ID()
			m.room.roomID = rm.ID()
		}
	}
	if res.RoomID != "" {
		m.room.roomID = res.RoomID
	}
	m.mu.Lock()
	m.sess = sess
	stoppedEarly := m.stopInfo
	m.mu.Unlock()
	if stoppedEarly != nil {
		m.engineStopped(*stoppedEarly)
	}
	m.log.Debug("embedded: room media started", "room_id", res.RoomID)
	return m, res, nil
}

// roomState is a Media's place in the rooms (guarded by Media.mu).
type roomState struct {
	cur       string // current type: publish, listen, park, mcu, echo
	roomID    string
	publisher string // listen
	parked    *room.Parked
}

// leaveRoom takes a stopping session out of its room or parking.
func (m *Media) leaveRoom() {
	m.exitRoom()
	if rs := m.b.roomsOrNil(); rs != nil {
		rs.mgr.Forget(m.id)
	}
}

// exitRoom takes the session out of its room or parking (type change or stop).
func (m *Media) exitRoom() {
	rs := m.b.roomsOrNil()
	m.mu.Lock()
	pk := m.room.parked
	m.room.parked = nil
	m.room.roomID = ""
	m.mu.Unlock()
	if pk != nil {
		pk.Stop()
	}
	if rs != nil {
		rs.mgr.Leave(m.id)
	}
}

// setListenAnswer completes a listen session.
func (m *Media) setListenAnswer(ctx context.Context, answer signaling.Desc) (signaling.Desc, error) {
	if answer.SDP() == "" {
		return nil, signaling.MissingField("answer.sdp")
	}
	kind, err := kindOf(answer.SDPType(), "answer.sdp_type")
	if err != nil {
		return nil, err
	}
	if err := m.Session().SetListenAnswer(ctx, media.Description{Kind: kind, SDP: answer.SDP()}); err != nil {
		if errors.Is(err, media.ErrState) {
			return nil, signaling.Errorf(signaling.CodeAnswerAlreadySet, "Answer already set for session %s", m.id)
		}
		return nil, sdpError(err, "answer")
	}
	return nil, nil
}

// updateRoom handles the update kinds other than media: listen_switch, session_type and
// mcu_layout.
func (m *Media) updateRoom(_ context.Context, kind string, opts map[string]any) (map[string]any, error) {
	rs := m.b.roomsOrNil()
	m.mu.Lock()
	cur := m.room.cur
	m.mu.Unlock()
	if cur == "" {
		cur = m.typ
	}
	switch kind {
	case signaling.UpdateListenSwitch:
		if cur != signaling.TypeListen || rs == nil {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "listen_switch is for listen sessions (this one is %s)", cur)
		}
		pid, err := stringOpt(opts, "publisher_id")
		if err != nil {
			return nil, err
		}
		if pid == "" {
			return nil, signaling.MissingField("publisher_id")
		}
		if err := rs.mgr.Switch(m.id, pid); err != nil {
			return nil, roomErr(err, "")
		}
		m.mu.Lock()
		m.room.publisher = pid
		m.mu.Unlock()
		return map[string]any{"publisher_id": pid}, nil
	case signaling.UpdateMCULayout:
		if cur != signaling.TypeMCU {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "mcu_layout is for mcu sessions (this one is %s)", cur)
		}
		if v, ok := opts["mcu_layout"]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: mcu_layout (want a string)")
			}
		}
		// Accepted, and answered plainly: there is no video to lay out.
		return map[string]any{"mcu_layout": "audio_only", "video": false,
			"info": "the embedded mcu mixes audio only: there are no video layouts"}, nil
	case signaling.UpdateSessionType:
		return m.switchType(rs, cur, opts)
	}
	return nil, signaling.Errorf(signaling.CodeNotImplemented, "Update %s is not supported for %s sessions on the embedded media engine", kind, cur)
}

// switchType moves a live echo/park/mcu session to another of those types, without
// renegotiating.
func (m *Media) switchType(rs *Rooms, cur string, opts map[string]any) (map[string]any, error) {
	to, _ := opts["session_type"].(string)
	if to == "" {
		return nil, signaling.MissingField("session_type")
	}
	movable := func(t string) bool {
		return t == signaling.TypeEcho || t == signaling.TypePark || t == signaling.TypeMCU
	}
	if !movable(to) {
		if signaling.KnownSessionType(to) {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Cannot move a session to type %s (echo, park and mcu are possible)", to)
		}
		return nil, signaling.Errorf(signaling.CodeUnknownSessionType, "Unknown session type: %s", to)
	}
	if !movable(cur) {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "A %s session cannot change type (echo, park and mcu can)", cur)
	}
	if to != signaling.TypeEcho && rs == nil {
		return nil, signaling.Errorf(signaling.CodeNoMediaserver, "The embedded media engine has no rooms configured")
	}
	roomID, err := stringOpt(opts, "room_id")
	if err != nil {
		return nil, err
	}
	ro, err := roomOptions(opts)
	if err != nil {
		return nil, err
	}
	record := ro.Record
	ro.Record = false
	sess := m.Session()
	m.mu.Lock()
	oldRoom := m.room.roomID
	m.mu.Unlock()
	if to == signaling.TypeMCU && roomID != "" {
		// Check before leaving: a bad room keeps the session where it is.
		if r, ok := rs.mgr.Get(roomID); ok && r.Class() != room.ClassMCU {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Room %s is not an mcu room", roomID)
		} else if !ok && !rs.cfg.CreateMissing {
			return nil, signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s (create it first with media/room/create, or set media.rooms_create_missing)", roomID)
		}
	}
	m.exitRoom()
	out := map[string]any{}
	switch to {
	case signaling.TypeEcho:
		if err := m.echoAgain(rs, sess); err != nil {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Cannot switch to echo: %v", err)
		}
	case signaling.TypePark:
		pk, err := rs.mgr.Park(sess, rs.park)
		if err != nil {
			return nil, startError(err)
		}
		m.mu.Lock()
		m.room.parked = pk
		m.mu.Unlock()
	case signaling.TypeMCU:
		rm, err := rs.mgr.JoinMCU(roomID, rs.cfg.CreateMissing, ro, sess, record)
		if err != nil {
			m.restore(rs, cur, oldRoom)
			return nil, roomErr(err, roomID)
		}
		m.mu.Lock()
		m.room.roomID = rm.ID()
		m.mu.Unlock()
		out["room_id"] = rm.ID()
	}
	m.mu.Lock()
	m.room.cur = to
	m.mu.Unlock()
	m.log.Info("embedded: session type changed", "from", cur, "to", to, "room_id", out["room_id"])
	return out, nil
}

// restore puts a session back where it was after a failed type change.
func (m *Media) restore(rs *Rooms, cur, oldRoom string) {
	sess := m.Session()
	switch cur {
	case signaling.TypeEcho:
		_ = m.echoAgain(rs, sess)
	case signaling.TypeMCU:
		if rm, err := rs.mgr.JoinMCU(oldRoom, true, room.Options{}, sess, false); err == nil {
			m.mu.Lock()
			m.room.roomID = rm.ID()
			m.mu.Unlock()
			return
		}
		fallthrough
	default:
		if pk, err := rs.mgr.Park(sess, rs.park); err == nil {
			m.mu.Lock()
			m.room.parked = pk
			m.mu.Unlock()
		}
	}
}

// echoAgain makes the session an echo again, continuing the audio stream it was hearing.
func (m *Media) echoAgain(rs *Rooms, sess *media.Session) error {
	if rs != nil {
		if pos, ok := rs.mgr.Position(m.id); ok {
			return sess.Echo(&pos)
		}
	}
	return sess.Echo(nil)
}
