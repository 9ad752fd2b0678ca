package nkclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// parseFrame never panics; what it accepts has the fields its kind needs
// and what it refuses is a *ProtocolError with a bounded frame excerpt.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"result":"ok","tid":1,"data":{"session_id":"x"}}`,
		`{"result":"error","data":{"code":1047,"error":"Missing field: type"},"tid":2}`,
		`{"ack":3}`,
		`{"class":"core","cmd":"ping","data":{"time":1},"tid":1000}`,
		`{"class":"core","cmd":"event","data":{"class":"media","subclass":"call","type":"hangup","obj_id":"c"},"tid":"s1"}`,
		`{"class":"media","subclass":"call","cmd":"invite","data":{"call_id":"c"},"tid":7}`,
		`{"class":"core","cmd":"ping"}`, `{"result":"ok","tid":"x"}`, `{"ack":1.5}`, `{"ack":null}`,
		`[1]`, ``, `{`, `{"foo":1}`, ` {"result":"ok","tid":9} `, "{\"result\":\"ok\",\"tid\":1}\x00",
		`{"result":"ok","tid":99999999999999999999}`, `{"class":"core","cmd":"ping","tid":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, kind, tid, err := parseFrame(b)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Reason == "" || len(pe.Frame) > 80+len("…") {
				t.Fatalf("error %v for %q", err, b)
			}
			return
		}
		switch kind {
		case kindRequest:
			if fr.Class == nil || fr.Cmd == nil || len(fr.TID) == 0 || !json.Valid(fr.TID) {
				t.Fatalf("request without class, cmd or tid: %q", b)
			}
		case kindReply:
			if fr.Result == nil || strings.TrimSpace(string(fr.TID)) == "" {
				t.Fatalf("reply without result or tid: %q", b)
			}
		case kindAck:
			if len(fr.Ack) == 0 {
				t.Fatalf("ack without tid: %q", b)
			}
		default:
			t.Fatalf("kind %d for %q", kind, b)
		}
		_ = tid
	})
}
