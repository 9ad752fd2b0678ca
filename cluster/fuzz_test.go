package cluster

import (
	"testing"
)

// FuzzDecodeMessage: whatever arrives on a node subject is decoded without a panic; what is
// accepted is a message of this version, of the subject's kind, with a valid sender and call id.
func FuzzDecodeMessage(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"kind":"invite","from":"n1","call_id":"c1","type":"user","callee":"bob","offer":{"sdp":"v=0"},"caller":{"user":"alice"},"ring_ms":30000}`,
		`{"v":1,"kind":"progress","from":"n2","call_id":"c1","event":"accepted","answer":{"sdp":"v=0"}}`,
		`{"v":1,"kind":"progress","from":"n2","call_id":"c1","event":"hangup","code":2021,"reason":"busy"}`,
		`{"v":1,"kind":"hangup","from":"n1","call_id":"c1","code":1013}`,
		`{"v":2,"kind":"hangup","from":"n1","call_id":"c1"}`,
		`{"v":1,"kind":"invite","from":"n1.x","call_id":"c1"}`,
		`{"v":1,"kind":"progress","from":"n1","call_id":"","event":"ringing"}`,
		`{"v":1} {"v":1}`,
		`null`, `[]`, `{"v":"1"}`, "\xff\xfe", ``,
	} {
		for _, kind := range []string{kindInvite, kindProgress, kindHangup, "other"} {
			f.Add([]byte(seed), kind)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		m, err := decodeMessage(data, kind)
		if err != nil {
			return
		}
		if m.V != version || m.Kind != kind || !validToken(m.From) || m.CallID == "" {
			t.Fatalf("accepted %q on %q: %+v", data, kind, m)
		}
		_ = m.err(1013)
		_ = decodeReply(data)
	})
}

// A node drops malformed and foreign messages, answering requests with an error, and goes on
// serving.
func TestBadMessagesDropped(t *testing.T) {
	ns := startNATS(t)
	n1 := newNode(t, ns, "n1")
	nc := n1.node.nc
	for _, tc := range []struct{ subject, data string }{
		{"nkb.v1.node.n1.invite", `{"v":1,"kind":"invite","from":"n9","call_id":"c1"}`},
		{"nkb.v1.node.n1.invite", `{"v":7,"kind":"invite","from":"n9","call_id":"c1","type":"user","callee":"bob","ring_ms":1}`},
		{"nkb.v1.node.n1.progress", `garbage`},
		{"nkb.v1.node.n1.whatever", `{"v":1,"kind":"whatever","from":"n9","call_id":"c1"}`},
	} {
		r, err := nc.Request(tc.subject, []byte(tc.data), 2e9)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.subject, tc.data, err)
		}
		if decodeReply(r.Data) == nil {
			t.Fatalf("%s %s: accepted", tc.subject, tc.data)
		}
	}
	// Still serving: an invite for a user nobody is gives a clean refusal... after ringing no one.
	r, err := nc.Request("nkb.v1.node.n1.invite", []byte(`{"v":1,"kind":"invite","from":"n9","call_id":"c2","type":"user","callee":"nobody","ring_ms":1000}`), 2e9)
	if err != nil || decodeReply(r.Data) != nil {
		t.Fatalf("good invite after bad ones: %v %s", err, r.Data)
	}
}
