package signaling

import (
	"context"
	"sort"
)

// Room classes (media/room/create {class}).
const (
	RoomSFU = "sfu"
	RoomMCU = "mcu"
)

// RoomSummary is one entry of media/room/list.
type RoomSummary struct {
	RoomID string `json:"room_id"`
	Class  string `json:"class"`
}

// RoomProvider manages rooms (media/room/*) for a backend that has them
// (SFU rooms and audio conferences). Sessions join rooms through the
// backend's own StartMedia (publish, listen, mcu with a room_id).
type RoomProvider interface {
	// CreateRoom creates a room of class with the given id ("" = choose one)
	// and options (audio_codec, video_codec, bitrate, ...); it answers 2031
	// room_already_exists for a taken id, and returns the room id.
	CreateRoom(ctx context.Context, class, roomID string, opts map[string]any) (string, error)
	// DestroyRoom destroys a room; its member sessions stop with 2032
	// room_destroyed (through their MediaReporter). 2030 if unknown.
	DestroyRoom(ctx context.Context, roomID string) error
	// Rooms lists the provider's rooms.
	Rooms() []RoomSummary
	// RoomInfo describes a room ({class, backend, audio_codec, ...,
	// publishers, listeners}); 2030 room_not_found if unknown.
	RoomInfo(roomID string) (map[string]any, error)
}

type roomEntry struct {
	name    string
	p       RoomProvider
	classes map[string]bool
}

// RegisterRooms adds backend name's room provider for the given classes.
func (r *Backends) RegisterRooms(name string, p RoomProvider, classes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := roomEntry{name: name, p: p, classes: make(map[string]bool, len(classes))}
	for _, c := range classes {
		e.classes[c] = true
	}
	for i := range r.rooms {
		if r.rooms[i].name == name {
			r.rooms[i] = e
			return
		}
	}
	r.rooms = append(r.rooms, e)
}

func (r *Backends) roomProviders() []roomEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]roomEntry(nil), r.rooms...)
}

// CreateRoom creates a room with the provider for class (or the one named
// by backend).
func (c *Core) CreateRoom(ctx context.Context, class, backend, roomID string, opts map[string]any) (string, error) {
	if class == "" {
		return "", MissingField("class")
	}
	if class != RoomSFU && class != RoomMCU {
		return "", Errorf(CodeInvalidParameters, "Invalid room class: %s (want sfu or mcu)", class)
	}
	if roomID != "" && !ValidID(roomID) {
		return "", InvalidField("room_id")
	}
	if roomID != "" {
		if _, err := c.RoomInfo(roomID); err == nil {
			return "", Errorf(CodeRoomAlreadyExists, "Room already exists: %s", roomID)
		}
	}
	for _, e := range c.backends.roomProviders() {
		if (backend == "" || backend == e.name) && e.classes[class] {
			id, err := e.p.CreateRoom(ctx, class, roomID, opts)
			if err == nil {
				c.log.Info("room created", "room_id", id, "class", class, "backend", e.name)
			}
			return id, err
		}
	}
	if backend != "" {
		return "", Errorf(CodeNoMediaserver, "Backend %s has no %s rooms", backend, class)
	}
	return "", Errorf(CodeNoMediaserver, "No media server for %s rooms", class)
}

// DestroyRoom destroys a room wherever it is.
func (c *Core) DestroyRoom(ctx context.Context, roomID string) error {
	if roomID == "" {
		return MissingField("room_id")
	}
	for _, e := range c.backends.roomProviders() {
		if _, err := e.p.RoomInfo(roomID); err == nil {
			return e.p.DestroyRoom(ctx, roomID)
		}
	}
	return Errorf(CodeRoomNotFound, "Room not found: %s", roomID)
}

// ListRooms lists every provider's rooms, sorted by id.
func (c *Core) ListRooms() []RoomSummary {
	out := []RoomSummary{}
	for _, e := range c.backends.roomProviders() {
		out = append(out, e.p.Rooms()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RoomID < out[j].RoomID })
	return out
}

// RoomInfo describes a room.
func (c *Core) RoomInfo(roomID string) (map[string]any, error) {
	if roomID == "" {
		return nil, MissingField("room_id")
	}
	for _, e := range c.backends.roomProviders() {
		if info, err := e.p.RoomInfo(roomID); err == nil {
			if info == nil {
				info = map[string]any{}
			}
			if _, ok := info["backend"]; !ok {
				info["backend"] = e.name
			}
			return info, nil
		}
	}
	return nil, Errorf(CodeRoomNotFound, "Room not found: %s", roomID)
}
