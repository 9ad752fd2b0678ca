package fsbridge_test

import (
	"context"
	"testing"

	"github.com/nkbridge/nkbridge/fsbridge"
	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/signaling"
)

// nullESL answers every command -ERR and is always connected.
type nullESL struct{}

func (nullESL) API(context.Context, string) (string, error) {
	return "", &esl.CommandError{Command: "api", Reply: "-ERR fuzz"}
}
func (nullESL) Connected() bool { return true }

// nullDialer refuses every call.
type nullDialer struct{}

func (nullDialer) Dial(context.Context, fsbridge.LegRequest) (fsbridge.Leg, error) {
	return nil, signaling.Errorf(signaling.CodeFSOpError, "fuzz")
}

type sinkRooms struct{ n int }

func (s *sinkRooms) Publish(signaling.Event) { s.n++ }

// FuzzHandleEvent feeds FreeSWITCH events (json event bodies, as the Event Socket
// delivers them) and reconciliations made from them to the backend: whatever FreeSWITCH
// sends must not crash it.
func FuzzHandleEvent(f *testing.F) {
	f.Add([]byte(`{"Event-Name":"CHANNEL_PARK","Unique-ID":"5d3c9b7e-1c1a-4b1e-9a53-2b6f0f0e8a11","variable_sip_h_X-NKB-Session":"s1"}`))
	f.Add([]byte(`{"Event-Name":"CHANNEL_HANGUP_COMPLETE","Unique-ID":"5d3c9b7e-1c1a-4b1e-9a53-2b6f0f0e8a11","Hangup-Cause":"NORMAL_CLEARING"}`))
	f.Add([]byte(`{"Event-Name":"CUSTOM","Event-Subclass":"conference::maintenance","Action":"add-member","Conference-Name":"r","Conference-Profile-Name":"nkbridge","Member-ID":"1","Unique-ID":"5d3c9b7e-1c1a-4b1e-9a53-2b6f0f0e8a11","variable_sip_h_X-NKB-Session":"s1"}`))
	f.Add([]byte(`{"Event-Name":"CUSTOM","Event-Subclass":"conference::maintenance","Action":"conference-create","Conference-Name":"r","Conference-Profile-Name":"nkbridge"}`))
	f.Add([]byte(`{"Event-Name":"CHANNEL_CREATE","Unique-ID":"not-a-uuid","variable_sip_h_X-NKB-Session":"s1\n"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := esl.ParseJSON(data)
		if err != nil {
			return
		}
		rooms := &sinkRooms{}
		b, err := fsbridge.New(fsbridge.Options{ESL: nullESL{}, Dialer: nullDialer{}, Rooms: rooms})
		if err != nil {
			t.Fatal(err)
		}
		b.HandleEvent(ev)
		b.Reconcile(context.Background(), esl.Reconciliation{Reason: esl.ReasonEventsLost,
			Channels: []esl.Channel{{UUID: ev.UUID(), Context: "nkbridge", Name: ev.Get("Channel-Name"), Application: ev.Get("Application")}}})
		b.Close()
		if b.Sessions() != 0 {
			t.Fatalf("events alone created %d sessions", b.Sessions())
		}
	})
}
