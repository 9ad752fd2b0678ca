package wsapi_test

import (
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// Call records on the bus (core/cdr/record, docs/CDR.md) hold every call's parties: only
// admins receive them, whatever a user subscribes to.
func TestCDREventsOnlyForAdmins(t *testing.T) {
	env := startServer(t, wsapi.Config{Admins: []string{"admin"}}, signaling.Options{})
	adm := dial(t, env.url)
	adm.Login("admin", "")
	a := dial(t, env.url)
	a.Login("alice", "")
	for _, c := range []*client{adm, a} {
		c.OK("core", "event", "subscribe", msg{"class": "core", "subclass": signaling.SubclassCDR})
	}
	env.core.Bus().Publish(signaling.Event{Class: signaling.ClassCore, Subclass: signaling.SubclassCDR, Type: "record", ObjID: "call-1",
		Body: map[string]any{"call_id": "call-1", "callee": "bob"}})
	if d := adm.Event("core", signaling.SubclassCDR, "record", "call-1"); d == nil {
		t.Fatal("admin got no record")
	}
	if a.Has(apitest.IsEvent("core", signaling.SubclassCDR, "record", "call-1"), 300*time.Millisecond) {
		t.Fatal("a non-admin user received another call's record")
	}
}
