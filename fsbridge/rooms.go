package fsbridge

import (
	"context"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/signaling"
)

// fsRoom is an mcu room: a FreeSWITCH conference in the backend's profile.
type fsRoom struct {
	id       string
	explicit bool              // made by media/room/create: lives until destroyed
	members  map[string]string // session id -> conference member id ("" until FreeSWITCH says)
	created  time.Time
}

// The Backend is a signaling.RoomProvider for class mcu.
var _ signaling.RoomProvider = (*Backend)(nil)

func (b *Backend) publishRoom(typ, room string, body map[string]any) {
	if b.opts.Rooms != nil {
		b.opts.Rooms.Publish(signaling.Event{Class: signaling.ClassMedia, Subclass: signaling.SubclassRoom, Type: typ, ObjID: room, Body: body})
	}
}

// roomKnown reports whether room exists (created, or with nkbridge members).
func (b *Backend) roomKnown(room string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.rooms[room]
	return ok
}

// joinRoom records sid as a member of room, creating the room if needed.
func (b *Backend) joinRoom(room, sid string) {
	b.mu.Lock()
	r := b.rooms[room]
	created := r == nil
	if created {
		r = &fsRoom{id: room, members: map[string]string{}, created: time.Now()}
		b.rooms[room] = r
	}
	if _, ok := r.members[sid]; !ok {
		r.members[sid] = ""
	}
	b.mu.Unlock()
	if created {
		b.publishRoom("started", room, map[string]any{"class": signaling.RoomMCU, "backend": "freeswitch"})
	}
}

// leaveRoom removes sid from room; a room nobody created explicitly goes with its last
// member.
func (b *Backend) leaveRoom(room, sid string) {
	b.mu.Lock()
	r := b.rooms[room]
	if r == nil {
		b.mu.Unlock()
		return
	}
	delete(r.members, sid)
	gone := len(r.members) == 0 && !r.explicit
	if gone {
		delete(b.rooms, room)
	}
	b.mu.Unlock()
	if gone {
		b.publishRoom("destroyed", room, map[string]any{"class": signaling.RoomMCU, "backend": "freeswitch"})
	}
}

// setMember records a conference member id.
func (b *Backend) setMember(room, sid, member string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.rooms[room]; r != nil {
		if cur, ok := r.members[sid]; ok && (member != "" || cur != "") {
			r.members[sid] = member
		}
	}
}

// CreateRoom implements signaling.RoomProvider: an mcu room (a FreeSWITCH conference
// exists once its first member joins).
func (b *Backend) CreateRoom(_ context.Context, class, roomID string, _ map[string]any) (string, error) {
	if class != signaling.RoomMCU {
		return "", signaling.Errorf(signaling.CodeNoMediaserver, "The FreeSWITCH backend has no %s rooms", class)
	}
	if roomID == "" {
		roomID = uuid.NewString()
	} else if esl.ValidateName(roomID) != nil {
		return "", signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: room_id (letters, digits, '.', '_', '-')")
	}
	b.mu.Lock()
	if _, ok := b.rooms[roomID]; ok {
		b.mu.Unlock()
		return "", signaling.Errorf(signaling.CodeRoomAlreadyExists, "Room already exists: %s", roomID)
	}
	b.rooms[roomID] = &fsRoom{id: roomID, explicit: true, members: map[string]string{}, created: time.Now()}
	b.mu.Unlock()
	b.publishRoom("started", roomID, map[string]any{"class": signaling.RoomMCU, "backend": "freeswitch"})
	return roomID, nil
}

// DestroyRoom implements signaling.RoomProvider: member sessions stop with 2032.
func (b *Backend) DestroyRoom(_ context.Context, roomID string) error {
	b.mu.Lock()
	r := b.rooms[roomID]
	if r == nil {
		b.mu.Unlock()
		return signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", roomID)
	}
	delete(b.rooms, roomID)
	var members []*fsSession
	for sid := range r.members {
		if s := b.sessions[sid]; s != nil {
			members = append(members, s)
		}
	}
	b.mu.Unlock()
	for _, s := range members {
		s.mu.Lock()
		live := s.live && !s.stopped
		s.mu.Unlock()
		if live {
			s.rep.Stopped(signaling.Errorf(signaling.CodeRoomDestroyed, "Room destroyed: %s", roomID))
		}
	}
	b.publishRoom("destroyed", roomID, map[string]any{"class": signaling.RoomMCU, "backend": "freeswitch"})
	return nil
}

// Rooms implements signaling.RoomProvider.
func (b *Backend) Rooms() []signaling.RoomSummary {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]signaling.RoomSummary, 0, len(b.rooms))
	for id := range b.rooms {
		out = append(out, signaling.RoomSummary{RoomID: id, Class: signaling.RoomMCU})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RoomID < out[j].RoomID })
	return out
}

// RoomInfo implements signaling.RoomProvider: {class, backend, conference_profile,
// members: {session_id: {member_id}}}.
func (b *Backend) RoomInfo(roomID string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[roomID]
	if r == nil {
		return nil, signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", roomID)
	}
	members := make(map[string]any, len(r.members))
	for sid, m := range r.members {
		members[sid] = map[string]any{"member_id": m}
	}
	return map[string]any{"class": signaling.RoomMCU, "backend": "freeswitch", "conference_profile": b.opts.Profile,
		"members": members, "created": r.created.UTC().Format(time.RFC3339Nano)}, nil
}
