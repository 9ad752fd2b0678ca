package sip

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestParseIdentity(t *testing.T) {
	for _, c := range []struct {
		in, user, display string
		ok                bool
	}{
		{`"Carrier Alice" <sip:+15551230000@carrier.example;user=phone>, <tel:+15551230000>`, "+15551230000", "Carrier Alice", true},
		{`<tel:+15551230000;phone-context=example.com>`, "+15551230000", "", true},
		{`Bob <sips:bob@example.com>`, "bob", "Bob", true},
		{`sip:carol@example.com;party=calling;privacy=off`, "carol", "", true},
		{`<sip:example.com>`, "", "", false},                        // no user
		{`<mailto:x@example.com>`, "", "", false},                   // not sip/tel
		{`"Eve <sip:eve@x>`, "", "", false},                         // unbalanced quote
		{`<sip:a<b>@x>`, "", "", false},                             // bad user
		{`"Mallory\r\nX: y" <sip:m@x>`, "m", "", true},              // bad display dropped
		{`<sip:` + string(make([]byte, 80)) + `@x>`, "", "", false}, // NULs, too long
		{`<sip:+1555`, "", "", false},
	} {
		u, d, ok := parseIdentity(c.in)
		if u != c.user || d != c.display || ok != c.ok {
			t.Errorf("parseIdentity(%q) = %q, %q, %v; want %q, %q, %v", c.in, u, d, ok, c.user, c.display, c.ok)
		}
	}
}

// An asserted identity is believed only from a trunk.
func TestCallerIdentityOnlyFromTrunks(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "echo", Host: "127.0.0.1"})
	req.AppendHeader(&sip.FromHeader{DisplayName: "Phone", Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1"}})
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", `"Boss" <sip:boss@127.0.0.1>`))
	if id, name := callerIdentity(req, false); id != "alice" || name != "Phone" {
		t.Fatalf("non-trunk: %q %q, want From's identity", id, name)
	}
	if id, name := callerIdentity(req, true); id != "boss" || name != "Boss" {
		t.Fatalf("trunk: %q %q, want the asserted identity", id, name)
	}
	req.AppendHeader(sip.NewHeader("Privacy", "header; id"))
	if id, name := callerIdentity(req, true); id != "anonymous" || name != "Anonymous" {
		t.Fatalf("trunk with Privacy: id: %q %q", id, name)
	}
}

func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{`"A" <sip:+1555@h;user=phone>, <tel:+1555>`, `<tel:+1;x=y>`, `sip:u@h;party=calling`, `<sip:@>`, `"" <>`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		u, d, ok := parseIdentity(v)
		if ok && (!validCallerID(u) || !validDisplay(d)) {
			t.Fatalf("parseIdentity(%q) = %q, %q accepted", v, u, d)
		}
		if !ok && (u != "" || d != "") {
			t.Fatalf("parseIdentity(%q) returned %q, %q with !ok", v, u, d)
		}
	})
}

// A carrier's call with P-Asserted-Identity reaches the handler with that caller id and
// name; with Privacy: id it is anonymous.
func TestSIPpInboundAssertedIdentity(t *testing.T) {
	sippPath(t)
	for _, c := range []struct{ privacy, id, name string }{{"none", "+15551230000", "Carrier Alice"}, {"id", "anonymous", "Anonymous"}} {
		rec := newRecorder(answerAfterRinging)
		s := startServer(t, trunkConfig(), rec)
		r := startSIPp(t, "uac_pai.xml", s.target("udp"), "-s", "echo", "-key", "privacy", c.privacy)
		call := rec.waitCall(t, r)
		r.wait(t)
		rec.waitEnd(t)
		if info := call.Info(); info.CallerID != c.id || info.CallerName != c.name || info.FromUser != "alice" {
			t.Fatalf("privacy %s: call info %+v", c.privacy, info)
		}
	}
}

// A call through a trunk with from_user, assert_identity and privacy id carries them (SIPp
// checks the From user, P-Asserted-Identity and Privacy).
func TestSIPpOutboundTrunkIdentity(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	r := startSIPpPort(t, "uas_identity.xml", port)
	host := fmt.Sprintf("127.0.0.1:%d", port)
	s, _ := startTrunkServer(t, Trunk{Name: "carrier", Host: host, FromUser: "pbx-account", AssertIdentity: true, Privacy: "id"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: "sip:+15550100@" + host, Caller: "alice", FromUser: "alice",
		FromDisplay: "Alice Agent", Offer: []byte(testSDP)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
}
