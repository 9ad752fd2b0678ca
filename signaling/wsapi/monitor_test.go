package wsapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// core/monitor is for operators: an admin subscribed to it learns of every session and call
// that starts (whoever owns it) and of front ends' directory changes; a user subscribed to
// the same gets nothing. core/monitor/list answers admins with a front end's snapshot and
// refuses others with a text naming the setting.
func TestMonitorOnlyForAdmins(t *testing.T) {
	env := startServer(t, wsapi.Config{Admins: []string{"root"}}, signaling.Options{})
	adm := dial(t, env.url)
	adm.Login("root", "")
	a := dial(t, env.url)
	a.Login("alice", "")
	for _, c := range []*client{adm, a} {
		c.OK("core", "event", "subscribe", msg{"class": "core", "subclass": signaling.SubclassMonitor})
	}
	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	ev := adm.Event("core", signaling.SubclassMonitor, signaling.MonitorSessionStarted, sid)
	if b := body(ev); b["type"] != "p2p" || b["user"] != "alice" || b["session_id"] != sid {
		t.Fatalf("session_started = %v", ev)
	}
	callID := a.OK("media", "call", "start", msg{"type": "user", "callee": "nobody", "session_id": sid})["call_id"].(string)
	ev = adm.Event("core", signaling.SubclassMonitor, signaling.MonitorCallStarted, callID)
	if b := body(ev); b["callee"] != "nobody" || b["user"] != "alice" || b["type"] != "user" || b["session_id"] != sid {
		t.Fatalf("call_started = %v", ev)
	}
	env.core.PublishMonitor(signaling.MonitorRegistration, "bob", map[string]any{"aor": "bob", "change": "added"})
	adm.Event("core", signaling.SubclassMonitor, signaling.MonitorRegistration, "bob")
	if a.Has(func(m apitest.Msg) bool {
		d, _ := m["data"].(map[string]any)
		return m["cmd"] == "event" && d["subclass"] == signaling.SubclassMonitor
	}, 300*time.Millisecond) {
		t.Fatal("a user received monitor events")
	}
	// A user may not send monitor events to admins either.
	a.Fail(signaling.CodeInvalidOperation, "core", "event", "send", msg{"class": "core", "subclass": signaling.SubclassMonitor, "type": "registration", "obj_id": "x"})
	a.Fail(signaling.CodeInvalidOperation, "core", "event", "send", msg{"class": "core", "subclass": signaling.SubclassMonitor, "type": "registration"})

	// Listing: refused to users naming the setting; nothing registered; a lister's snapshot.
	if txt := a.Fail(signaling.CodeInvalidOperation, "core", "monitor", "list", msg{"what": "registrations"}); !strings.Contains(txt, "users[].admin") {
		t.Errorf("refusal %q does not name the setting", txt)
	}
	adm.Fail(signaling.CodeMissingField, "core", "monitor", "list", msg{})
	if txt := adm.Fail(signaling.CodeInvalidParameters, "core", "monitor", "list", msg{"what": "registrations"}); !strings.Contains(txt, "sip.enabled") {
		t.Errorf("unknown list %q does not say what enables it", txt)
	}
	env.core.AddLister("registrations", func() []map[string]any { return []map[string]any{{"aor": "bob"}} })
	r := adm.Req("core", "monitor", "list", msg{"what": "registrations"})
	if l, _ := r["data"].([]any); r["result"] != "ok" || len(l) != 1 || l[0].(map[string]any)["aor"] != "bob" {
		t.Fatalf("list = %v", r)
	}
	adm.Fail(signaling.CodeInvalidParameters, "core", "monitor", "list", msg{"what": "nope"})
}
