package stream

import (
	"testing"
)

// FuzzParseApp: any message from an application decodes or fails cleanly, never panics, and
// audio comes back whole samples.
func FuzzParseApp(f *testing.F) {
	for _, s := range []string{`{"event":"clear"}`, `{"event":"mark","name":"a"}`, `{"event":"hangup"}`,
		`{"event":"media","media":{"payload":"//8A"}}`, `{"event":"mark","mark":{"name":"x"}}`, `{"event":"media"}`,
		`not json`, `{"event":1}`, "\x00\x01\x02\x03"} {
		f.Add(false, []byte(s), false)
		f.Add(true, []byte(s), true)
		f.Add(false, []byte(s), true)
	}
	f.Fuzz(func(t *testing.T, twilio bool, data []byte, binary bool) {
		framing := FramingNkbridge
		if twilio {
			framing = FramingTwilio
		}
		m, err := parseApp(framing, binary, data)
		if err != nil {
			return
		}
		switch m.kind {
		case "audio":
			if !twilio && len(m.pcm)*2 != len(data) {
				t.Fatalf("%d samples from %d bytes", len(m.pcm), len(data))
			}
		case "mark":
			if m.name == "" || len(m.name) > maxMarkName {
				t.Fatalf("mark name %q", m.name)
			}
		case "clear", "hangup", "ignore":
		default:
			t.Fatalf("kind %q", m.kind)
		}
	})
}
