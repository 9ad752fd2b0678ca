// Package room runs nkbridge's embedded rooms on media engine sessions: SFU rooms (publishers
// forward their audio and video, untouched, to the listeners of each; a listener can be
// switched to another publisher without renegotiation), audio conferences (mcu: a 48 kHz
// mixer in which everyone hears everyone else but never themselves, each in their own codec)
// and parking (a session held with silence or a looped announcement). It knows nothing of the
// control API: the signaling adapter (signaling/embedded) maps sessions and events.
package room

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/media"
)

// Classes of rooms.
const (
	ClassSFU = "sfu"
	ClassMCU = "mcu"
)

// Errors.
var (
	ErrNotFound      = errors.New("room: not found")
	ErrExists        = errors.New("room: already exists")
	ErrWrongClass    = errors.New("room: wrong room class")
	ErrNoPublisher   = errors.New("room: unknown publisher")
	ErrClosed        = errors.New("room: manager closed")
	ErrMember        = errors.New("room: session already in a room")
	ErrTooManyRooms  = errors.New("room: too many rooms")
	ErrTooManyMember = errors.New("room: room is full")
)

// Endpoint is what a room needs of a media session (*media.Session implements it).
type Endpoint interface {
	ID() string
	Attach(t media.Tap) error
	CallerFormats() (audio, video []media.Format)
	CallerReady(video bool) bool
	WriteCaller(video bool, h *rtp.Header, payload []byte) error
	RequestKeyframe()
	KeepAlive()
	EchoPosition() (media.Position, bool)
	Done() <-chan struct{}
}

// Event is something that happened in a room: started, destroyed, started_publisher,
// stopped_publisher, started_listener, stopped_listener, talking.
type Event struct {
	Type   string
	RoomID string
	Class  string
	Body   map[string]any
}

// Config configures a Manager.
type Config struct {
	// EmptyGrace is how long a room with nobody in it lives on (default 10 s; <0: forever
	// until destroyed).
	EmptyGrace time.Duration
	// RecordDir is where mcu mixes are recorded (WAV); empty refuses recording.
	RecordDir string
	// RecordMaxBytes and RecordMaxDuration bound one mix recording (defaults
	// media.record_max_bytes, media.record_max_duration); when either is reached the recording
	// stops (not the room) with a "record_stopped" event naming the setting.
	RecordMaxBytes    int64
	RecordMaxDuration time.Duration
	// MaxRooms and MaxMembers bound rooms (default 1000) and sessions per room (default 200).
	MaxRooms, MaxMembers int
	// OnEvent receives room events (from any goroutine; don't block).
	OnEvent func(Event)
	// OnEvicted is called when a member session must stop because of the room: its
	// publisher left (listeners: reason "publisher_stopped") or the room was destroyed
	// ("room_destroyed"). Don't block.
	OnEvicted func(sessionID, reason string)
	Logger    *slog.Logger
}

// Options are a room's settings (media/room/create).
type Options struct {
	AudioCodec, VideoCodec string
	Bitrate                int
	Record                 bool
}

// Manager holds the rooms. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	rooms  map[string]*Room
	member map[string]*Room // session id -> room
	closed bool
	wg     sync.WaitGroup
	gen    atomic.Uint64             // publisher identities for the listeners' rewriters
	pos    map[string]media.Position // where the audio toward a session stands, between modes
}

// savePos records where the audio toward session id stands.
func (m *Manager) savePos(id string, p media.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed && len(m.pos) < 100000 {
		m.pos[id] = p
	}
}

// Position returns (and forgets) where the audio toward session id stood when it last left a
// room or parking, so that the next writer (e.g. the echo) continues the stream.
func (m *Manager) Position(id string) (media.Position, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pos[id]
	delete(m.pos, id)
	return p, ok
}

// Forget drops what the Manager remembers of a session that ended.
func (m *Manager) Forget(id string) {
	m.mu.Lock()
	delete(m.pos, id)
	m.mu.Unlock()
}

// startPos is where a new writer toward ep starts: after the saved position, or the echo's,
// or anywhere.
func (m *Manager) startPos(ep Endpoint, rate uint32) (uint16, uint32) {
	if p, ok := m.Position(ep.ID()); ok {
		return p.Next(rate, time.Now())
	}
	if p, ok := ep.EchoPosition(); ok {
		return p.Next(rate, time.Now())
	}
	return uint16(rand.Uint32()), rand.Uint32()
}

// NewManager returns an empty Manager.
func NewManager(cfg Config) *Manager {
	if cfg.EmptyGrace == 0 {
		cfg.EmptyGrace = defaults.Duration("media.room_empty_grace")
	}
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 1000
	}
	if cfg.RecordMaxBytes <= 0 {
		cfg.RecordMaxBytes = int64(defaults.Int("media.record_max_bytes"))
	}
	if cfg.RecordMaxDuration <= 0 {
		cfg.RecordMaxDuration = defaults.Duration("media.record_max_duration")
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = 200
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: cfg.Logger, rooms: map[string]*Room{}, member: map[string]*Room{}, pos: map[string]media.Position{}}
}

// Room is one SFU room or audio conference.
type Room struct {
	m     *Manager
	id    string
	class string
	opts  Options

	mu        sync.Mutex
	destroyed bool
	empty     *time.Timer
	// sfu
	pubs  map[string]*publisher
	lists map[string]*listener
	// mcu
	mix *mixRoom
	// sfu: the keep-alive loop of receive-only listeners
	stopKA chan struct{}
}

func (m *Manager) emit(r *Room, typ string, body map[string]any) {
	if m.cfg.OnEvent == nil {
		return
	}
	if body == nil {
		body = map[string]any{}
	}
	body["room_id"] = r.id
	body["class"] = r.class
	m.cfg.OnEvent(Event{Type: typ, RoomID: r.id, Class: r.class, Body: body})
}

func newID() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 16)
	for i := range b {
		b[i] = hex[rand.IntN(16)]
	}
	return "room-" + string(b)
}

// Create creates a room (id "" = choose one) and returns its id.
func (m *Manager) Create(class, id string, o Options) (string, error) {
	r, err := m.create(class, id, o)
	if err != nil {
		return "", err
	}
	m.touchEmpty(r)
	return r.id, nil
}

func (m *Manager) create(class, id string, o Options) (*Room, error) {
	if class != ClassSFU && class != ClassMCU {
		return nil, fmt.Errorf("%w: %q", ErrWrongClass, class)
	}
	if o.Record && m.cfg.RecordDir == "" {
		return nil, errors.New("room: recording is not configured")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if id == "" {
		id = newID()
	}
	if _, ok := m.rooms[id]; ok {
		return nil, ErrExists
	}
	if len(m.rooms) >= m.cfg.MaxRooms {
		return nil, ErrTooManyRooms
	}
	r := &Room{m: m, id: id, class: class, opts: o, pubs: map[string]*publisher{}, lists: map[string]*listener{}}
	if class == ClassMCU {
		mr, err := newMixRoom(r)
		if err != nil {
			return nil, err
		}
		r.mix = mr
	} else {
		r.stopKA = make(chan struct{})
		m.wg.Add(1)
		go r.keepListenersAlive()
	}
	m.rooms[id] = r
	m.log.Info("room started", "room_id", id, "class", class)
	m.emit(r, "started", nil)
	return r, nil
}

// getOrCreate returns room id of class, creating it when id is "" (or create is set).
func (m *Manager) getOrCreate(class, id string, create bool, o Options) (*Room, error) {
	if id != "" {
		m.mu.Lock()
		r, ok := m.rooms[id]
		m.mu.Unlock()
		if ok {
			if r.class != class {
				return nil, fmt.Errorf("%w: room %s is %s", ErrWrongClass, id, r.class)
			}
			return r, nil
		}
		if !create {
			return nil, ErrNotFound
		}
	}
	r, err := m.create(class, id, o)
	if errors.Is(err, ErrExists) {
		return m.getOrCreate(class, id, false, o)
	}
	return r, err
}

// Get returns a room.
func (m *Manager) Get(id string) (*Room, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[id]
	return r, ok
}

// Summary is one room of List.
type Summary struct{ ID, Class string }

// List returns the rooms, sorted by id.
func (m *Manager) List() []Summary {
	m.mu.Lock()
	out := make([]Summary, 0, len(m.rooms))
	for _, r := range m.rooms {
		out = append(out, Summary{ID: r.id, Class: r.class})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RoomOf returns the room a session is in.
func (m *Manager) RoomOf(sessionID string) (*Room, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.member[sessionID]
	return r, ok
}

func (m *Manager) addMember(r *Room, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.member[id]; ok {
		return ErrMember
	}
	if m.rooms[r.id] != r {
		return ErrNotFound
	}
	n := 0
	for _, x := range m.member {
		if x == r {
			n++
		}
	}
	if n >= m.cfg.MaxMembers {
		return ErrTooManyMember
	}
	m.member[id] = r
	return nil
}

func (m *Manager) dropMember(r *Room, id string) {
	m.mu.Lock()
	if m.member[id] == r {
		delete(m.member, id)
	}
	m.mu.Unlock()
	m.touchEmpty(r)
}

// touchEmpty arms the empty-room timer when r has no members.
func (m *Manager) touchEmpty(r *Room) {
	if m.cfg.EmptyGrace < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.destroyed || len(r.pubs)+len(r.lists) > 0 || (r.mix != nil && r.mix.count() > 0) {
		if r.empty != nil {
			r.empty.Stop()
			r.empty = nil
		}
		return
	}
	if r.empty != nil {
		r.empty.Stop()
	}
	r.empty = time.AfterFunc(m.cfg.EmptyGrace, func() {
		r.mu.Lock()
		empty := !r.destroyed && len(r.pubs)+len(r.lists) == 0 && (r.mix == nil || r.mix.count() == 0)
		r.mu.Unlock()
		if empty {
			m.log.Info("room empty: destroyed", "room_id", r.id)
			_ = m.Destroy(r.id)
		}
	})
}

// Destroy destroys a room: every member is evicted (OnEvicted "room_destroyed").
func (m *Manager) Destroy(id string) error {
	m.mu.Lock()
	r, ok := m.rooms[id]
	if ok {
		delete(m.rooms, id)
	}
	var members []string
	for sid, x := range m.member {
		if x == r {
			members = append(members, sid)
			delete(m.member, sid)
		}
	}
	m.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	r.mu.Lock()
	r.destroyed = true
	if r.stopKA != nil {
		close(r.stopKA)
	}
	if r.empty != nil {
		r.empty.Stop()
	}
	pubs, lists := r.pubs, r.lists
	r.pubs, r.lists = map[string]*publisher{}, map[string]*listener{}
	r.mu.Unlock()
	for _, p := range pubs {
		p.detach()
		m.emit(r, "stopped_publisher", map[string]any{"session_id": p.id})
	}
	for _, l := range lists {
		m.emit(r, "stopped_listener", map[string]any{"session_id": l.id, "publisher_id": l.publisherID()})
	}
	if r.mix != nil {
		for _, pid := range r.mix.close() {
			m.emit(r, "stopped_publisher", map[string]any{"session_id": pid})
		}
	}
	if m.cfg.OnEvicted != nil {
		for _, sid := range members {
			m.cfg.OnEvicted(sid, "room_destroyed")
		}
	}
	m.log.Info("room destroyed", "room_id", id)
	m.emit(r, "destroyed", nil)
	return nil
}

// Leave removes a session from its room (whatever its role); it is a no-op when it is in
// none. Listeners of a leaving publisher are evicted ("publisher_stopped").
func (m *Manager) Leave(sessionID string) {
	r, ok := m.RoomOf(sessionID)
	if !ok {
		return
	}
	r.leave(sessionID)
	m.dropMember(r, sessionID)
}

// Close destroys every room.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	ids := make([]string, 0, len(m.rooms))
	for id := range m.rooms {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		_ = m.Destroy(id)
	}
	m.wg.Wait()
}

// ID returns the room's id.
func (r *Room) ID() string { return r.id }

// Class returns sfu or mcu.
func (r *Room) Class() string { return r.class }

// Info describes the room: class, options, publishers {id: {}}, listeners {id: {peer}}.
func (r *Room) Info() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	pubs := map[string]any{}
	lists := map[string]any{}
	for id := range r.pubs {
		pubs[id] = map[string]any{}
	}
	for id, l := range r.lists {
		lists[id] = map[string]any{"peer": l.publisherID()}
	}
	if r.mix != nil {
		for id, talking := range r.mix.members() {
			pubs[id] = map[string]any{"talking": talking}
		}
	}
	out := map[string]any{"class": r.class, "audio_codec": r.opts.AudioCodec, "video_codec": r.opts.VideoCodec,
		"bitrate": r.opts.Bitrate, "publishers": pubs, "listeners": lists}
	if r.mix != nil {
		out["mix_rate"] = 48000
		out["record_paths"] = r.mix.recordPaths()
	}
	return out
}

func (r *Room) leave(id string) {
	r.mu.Lock()
	p, isPub := r.pubs[id]
	l, isList := r.lists[id]
	delete(r.pubs, id)
	delete(r.lists, id)
	var orphans []*listener
	if isPub {
		for lid, x := range r.lists {
			if x.publisherID() == id {
				orphans = append(orphans, x)
				delete(r.lists, lid)
			}
		}
	}
	r.mu.Unlock()
	m := r.m
	if isPub {
		p.detach()
		m.emit(r, "stopped_publisher", map[string]any{"session_id": id})
		for _, o := range orphans {
			m.emit(r, "stopped_listener", map[string]any{"session_id": o.id, "publisher_id": id})
			m.dropMember(r, o.id)
			if m.cfg.OnEvicted != nil {
				m.cfg.OnEvicted(o.id, "publisher_stopped")
			}
		}
	}
	if isList {
		pid := l.publisherID()
		l.detach()
		m.emit(r, "stopped_listener", map[string]any{"session_id": id, "publisher_id": pid})
	}
	if r.mix != nil && r.mix.remove(id, m) {
		m.emit(r, "stopped_publisher", map[string]any{"session_id": id})
	}
}

// keepListenersAlive marks every listener alive every few seconds: listeners only receive, so
// the media timeout must not stop them while their publisher is silent (a dead listener is
// still caught by ICE).
func (r *Room) keepListenersAlive() {
	defer r.m.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stopKA:
			return
		case <-t.C:
		}
		r.mu.Lock()
		eps := make([]Endpoint, 0, len(r.lists))
		for _, l := range r.lists {
			if l.ep != nil {
				eps = append(eps, l.ep)
			}
		}
		r.mu.Unlock()
		for _, ep := range eps {
			ep.KeepAlive()
		}
	}
}
