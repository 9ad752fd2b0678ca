package wsapi_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// fakeRooms is a test RoomProvider standing in for the media engine's rooms.
type fakeRooms struct {
	mu    sync.Mutex
	rooms map[string]string // id -> class
	n     int
}

func (f *fakeRooms) CreateRoom(_ context.Context, class, id string, _ map[string]any) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		f.n++
		id = "room-" + string(rune('0'+f.n))
	}
	if _, ok := f.rooms[id]; ok {
		return "", signaling.Errorf(signaling.CodeRoomAlreadyExists, "Room already exists: %s", id)
	}
	f.rooms[id] = class
	return id, nil
}

func (f *fakeRooms) DestroyRoom(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rooms[id]; !ok {
		return signaling.Err(signaling.CodeRoomNotFound)
	}
	delete(f.rooms, id)
	return nil
}

func (f *fakeRooms) Rooms() []signaling.RoomSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []signaling.RoomSummary
	for id, c := range f.rooms {
		out = append(out, signaling.RoomSummary{RoomID: id, Class: c})
	}
	return out
}

func (f *fakeRooms) RoomInfo(id string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.rooms[id]
	if !ok {
		return nil, signaling.Err(signaling.CodeRoomNotFound)
	}
	return map[string]any{"class": c, "publishers": map[string]any{}}, nil
}

// media/room/* reach the registered room provider.
func TestRooms(t *testing.T) {
	bs := signaling.NewBackends()
	bs.RegisterRooms("media", &fakeRooms{rooms: map[string]string{}}, signaling.RoomSFU, signaling.RoomMCU)
	env := startServer(t, wsapi.Config{}, signaling.Options{Backends: bs})
	c := dial(t, env.url)
	c.Login("u", "")
	id := c.OK("media", "room", "create", msg{"class": "sfu"})["room_id"].(string)
	c.OK("media", "room", "create", msg{"class": "mcu", "room_id": "conf1", "bitrate": 64000})
	c.Fail(signaling.CodeRoomAlreadyExists, "media", "room", "create", msg{"class": "mcu", "room_id": "conf1"})
	c.Fail(signaling.CodeMissingField, "media", "room", "create", msg{})
	c.Fail(signaling.CodeInvalidParameters, "media", "room", "create", msg{"class": "huge"})
	c.Fail(signaling.CodeNoMediaserver, "media", "room", "create", msg{"class": "sfu", "backend": "freeswitch"})
	r := c.Req("media", "room", "list", nil)
	want := []any{map[string]any{"room_id": "conf1", "class": "mcu"}, map[string]any{"room_id": id, "class": "sfu"}}
	if !reflect.DeepEqual(r["data"], want) {
		t.Fatalf("list = %v", r["data"])
	}
	if info := c.OK("media", "room", "info", msg{"room_id": "conf1"}); info["class"] != "mcu" || info["backend"] != "media" {
		t.Fatalf("info = %v", info)
	}
	c.OK("media", "room", "destroy", msg{"room_id": "conf1"})
	c.Fail(signaling.CodeRoomNotFound, "media", "room", "destroy", msg{"room_id": "conf1"})
	c.Fail(signaling.CodeRoomNotFound, "media", "room", "info", msg{"room_id": "conf1"})
	c.Fail(signaling.CodeUnknownCommand, "media", "room", "explode", nil)
}
