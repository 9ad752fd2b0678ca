package esl

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Real-looking frames, byte for byte as FreeSWITCH 1.10 writes them (see spec/esl.md).
const (
	frameAuthRequest = "Content-Type: auth/request\n\n"
	frameAccepted    = "Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
	frameBgapiReply  = "Content-Type: command/reply\nReply-Text: +OK Job-UUID: 5d3c7f4a-9b1e-4c2d-8e6f-0a1b2c3d4e5f\nJob-UUID: 5d3c7f4a-9b1e-4c2d-8e6f-0a1b2c3d4e5f\n\n"
	frameRude        = "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
	frameDisconnect  = "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	frameLinger      = "Content-Type: text/disconnect-notice\nControlled-Session-UUID: 2f0c5c4e-1111-4222-8333-944455556666\nContent-Disposition: linger\nChannel-Name: sofia/internal/1000@127.0.0.1\nLinger-Time: 0\nContent-Length: 0\n\n"
)

// bgJobBody is a BACKGROUND_JOB text/event-plain body.
const bgJobBody = "Event-Name: BACKGROUND_JOB\n" +
	"Core-UUID: 0d5ee1b5-b3ae-4c2e-9a05-0a4b4d5f6a71\n" +
	"FreeSWITCH-Hostname: fs1\n" +
	"FreeSWITCH-Switchname: fs1\n" +
	"FreeSWITCH-IPv4: 127.0.0.1\n" +
	"FreeSWITCH-IPv6: %3A%3A1\n" +
	"Event-Date-Local: 2026-11-26%2007%3A37%3A03\n" +
	"Event-Date-GMT: Thu,%2026%20Nov%202026%2007%3A37%3A03%20GMT\n" +
	"Event-Date-Timestamp: 1795678623894968\n" +
	"Event-Calling-File: mod_event_socket.c\n" +
	"Event-Calling-Function: api_exec\n" +
	"Event-Calling-Line-Number: 1572\n" +
	"Event-Sequence: 5123\n" +
	"Job-UUID: 5d3c7f4a-9b1e-4c2d-8e6f-0a1b2c3d4e5f\n" +
	"Job-Command: originate\n" +
	"Job-Command-Arg: %7Borigination_uuid%3D2f0c5c4e-1111-4222-8333-944455556666%7Dsofia/gateway/gw/1000%20%26park()\n" +
	"Content-Length: 41\n\n" +
	"+OK 2f0c5c4e-1111-4222-8333-944455556666\n"

// parkBody is a CHANNEL_PARK text/event-plain body (no event body).
const parkBody = "Event-Name: CHANNEL_PARK\n" +
	"Core-UUID: 0d5ee1b5-b3ae-4c2e-9a05-0a4b4d5f6a71\n" +
	"FreeSWITCH-Hostname: fs1\n" +
	"Event-Date-Local: 2026-11-26%2007%3A37%3A03\n" +
	"Event-Sequence: 5124\n" +
	"Channel-State: CS_EXECUTE\n" +
	"Channel-Name: sofia/nkbridge/park%40127.0.0.1%3A5080\n" +
	"Unique-ID: 2f0c5c4e-1111-4222-8333-944455556666\n" +
	"Answer-State: answered\n" +
	"Caller-Caller-ID-Name: Alice%20%26%20Bob\n" +
	"variable_sip_h_X-NKB-Session: 7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11\n" +
	"variable_odd: a%20b+c%3Ad%25\n" +
	"variable_empty: _undef_\n" +
	"variable_codecs: ARRAY%3A%3APCMU%7C%3APCMA%7C%3Aopus\n" +
	"variable_utf8: caf%C3%A9\n\n"

func eventFrame(ct, body string) string {
	return "Content-Length: " + strconv.Itoa(len(body)) + "\nContent-Type: " + ct + "\n\n" + body
}

func TestReadFrames(t *testing.T) {
	stream := "\n" + frameAuthRequest + frameAccepted + "Content-Type: api/response\nContent-Length: 3\n\n+OK" +
		eventFrame("text/event-plain", bgJobBody) + frameBgapiReply + frameLinger + frameDisconnect
	r := NewReader(strings.NewReader(stream))
	want := []struct{ ct, body string }{
		{"auth/request", ""},
		{"command/reply", ""},
		{"api/response", "+OK"},
		{"text/event-plain", bgJobBody},
		{"command/reply", ""},
		{"text/disconnect-notice", ""},
		{"text/disconnect-notice", "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"},
	}
	for i, w := range want {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.ContentType() != w.ct || string(f.Body) != w.body {
			t.Fatalf("frame %d: got %q body %q, want %q body %q", i, f.ContentType(), f.Body, w.ct, w.body)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestReadFrameCaseAndCRLF(t *testing.T) {
	r := NewReader(strings.NewReader("content-type: api/response\r\nCONTENT-LENGTH: 2\r\n\r\nok"))
	f, err := r.ReadFrame()
	if err != nil || f.Headers.Get("Content-Type") != "api/response" || string(f.Body) != "ok" {
		t.Fatalf("got %+v %v", f, err)
	}
	// Raw header names are kept (no textproto canonicalisation).
	if f.Headers[0].Name != "content-type" {
		t.Fatalf("name canonicalised: %q", f.Headers[0].Name)
	}
}

func TestReadFrameErrors(t *testing.T) {
	cases := map[string]struct {
		in   string
		want error
	}{
		"too large":   {"Content-Length: 16777217\n\n", ErrBodyTooLarge},
		"negative":    {"Content-Length: -1\n\n", ErrBadLength},
		"garbage len": {"Content-Length: 1x\n\n", ErrBadLength},
		"no colon":    {"hello\n\n", ErrBadHeader},
		"short body":  {"Content-Length: 10\n\nabc", io.ErrUnexpectedEOF},
		"cut headers": {"Content-Type: x\n", io.ErrUnexpectedEOF},
	}
	for name, c := range cases {
		_, err := NewReader(strings.NewReader(c.in)).ReadFrame()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
	big := "X: " + strings.Repeat("a", 2000) + "\n"
	r := NewReader(strings.NewReader(strings.Repeat(big, 10) + "\n"))
	r.MaxHeaderBytes = 4096
	if _, err := r.ReadFrame(); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("header limit: %v", err)
	}
	if _, err := NewReader(strings.NewReader("X: " + strings.Repeat("a", 70<<10) + "\n\n")).ReadFrame(); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("line limit: %v", err)
	}
}

func TestParsePlain(t *testing.T) {
	ev, err := ParsePlain([]byte(parkBody))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"Event-Name":                   "CHANNEL_PARK",
		"channel-name":                 "sofia/nkbridge/park@127.0.0.1:5080",
		"Caller-Caller-ID-Name":        "Alice & Bob",
		"variable_sip_h_X-NKB-Session": "7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11",
		"variable_odd":                 "a b+c:d%",
		"variable_empty":               "",
		"variable_utf8":                "café",
	}
	for k, v := range checks {
		if got := ev.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := ev.Array("variable_codecs"); strings.Join(got, ",") != "PCMU,PCMA,opus" {
		t.Errorf("array = %q", got)
	}
	if ev.Body != "" || ev.UUID() != "2f0c5c4e-1111-4222-8333-944455556666" || ev.Var("sip_h_X-NKB-Session") == "" {
		t.Errorf("body %q uuid %q", ev.Body, ev.UUID())
	}

	bg, err := ParsePlain([]byte(bgJobBody))
	if err != nil {
		t.Fatal(err)
	}
	if bg.Body != "+OK 2f0c5c4e-1111-4222-8333-944455556666\n" {
		t.Fatalf("bg body %q", bg.Body)
	}
	if bg.Get("Job-Command-Arg") != "{origination_uuid=2f0c5c4e-1111-4222-8333-944455556666}sofia/gateway/gw/1000 &park()" {
		t.Fatalf("arg %q", bg.Get("Job-Command-Arg"))
	}
	if _, ok := bg.Headers.Lookup("Content-Length"); ok {
		t.Fatal("inner Content-Length kept as header")
	}
}

func TestParsePlainErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"\n\n",
		"Event-Name: X\nno colon here\n\n",
		"Event-Name: X\nContent-Length: 10\n\nshort",
		"Event-Name: X\nContent-Length: zz\n\n",
	} {
		if _, err := ParsePlain([]byte(in)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%q: err %v", in, err)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		"a+b":        "a+b", // PathUnescape, not QueryUnescape
		"a%20b":      "a b",
		"%2f%2F":     "//",
		"100%":       "100%",
		"%zz":        "%zz",
		"%4":         "%4",
		"_undef_":    "",
		"x_undef_":   "x_undef_",
		"%0D%0Aevil": "\r\nevil",
	} {
		if got := decodeValue(in); got != want {
			t.Errorf("decode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseJSON(t *testing.T) {
	body := `{"Event-Name":"CHANNEL_PARK","Unique-ID":"2f0c5c4e-1111-4222-8333-944455556666","variable_odd":"a b+c:d%25","variable_codecs":["PCMU","PCMA"],"Content-Length":"4","_body":"hi\n!"}`
	ev, err := ParseJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name() != "CHANNEL_PARK" || ev.Var("odd") != "a b+c:d%25" || ev.Body != "hi\n!" {
		t.Fatalf("event %+v", ev)
	}
	if got := ev.Array("variable_codecs"); len(got) != 2 || got[1] != "PCMA" {
		t.Fatalf("array %q", got)
	}
	if _, ok := ev.Headers.Lookup("Content-Length"); ok {
		t.Fatal("Content-Length kept")
	}
	if ev.Headers[0].Name != "Event-Name" || ev.Headers[3].Name != "variable_codecs" {
		t.Fatal("order not kept")
	}
	for _, bad := range []string{``, `[]`, `{"a":{"b":"c"}}`, `{"a":"b"} x`, `{"a":[{"x":1}]}`, `{"a":"b"`} {
		if _, err := ParseJSON([]byte(bad)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

func TestAppendCommand(t *testing.T) {
	got := AppendCommand(nil, "sendmsg 2f0c5c4e-1111-4222-8333-944455556666", Headers{{"call-command", "execute"}}, []byte("x y"))
	want := "sendmsg 2f0c5c4e-1111-4222-8333-944455556666\ncall-command: execute\nContent-Length: 3\n\nx y"
	if string(got) != want {
		t.Fatalf("got %q", got)
	}
	if got := AppendCommand(nil, "api status", nil, nil); string(got) != "api status\n\n" {
		t.Fatalf("got %q", got)
	}
}

func TestValidators(t *testing.T) {
	if ValidateUUID("2f0c5c4e-1111-4222-8333-944455556666") != nil {
		t.Fatal("good uuid rejected")
	}
	for _, bad := range []string{"", "2f0c5c4e-1111-4222-8333-94445555666", "2f0c5c4e-1111-4222-8333-944455556666\n", "2f0c5c4e 1111-4222-8333-944455556666", "2f0c5c4e-1111-4222-8333-94445555666g"} {
		if ValidateUUID(bad) == nil {
			t.Errorf("uuid %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "a\nb", "a\rb", "a\x00", "a\x7f"} {
		if ValidateLine(bad) == nil {
			t.Errorf("line %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "room@evil", "a b", "a,b", "a:b", ".x", "a\n", strings.Repeat("a", 129)} {
		if ValidateName(bad) == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "a b", "a,b", "a\nb", "a;b", "a'b"} {
		if ValidateWord(bad) == nil {
			t.Errorf("word %q accepted", bad)
		}
	}
	if ValidateHeaderName("a:b") == nil || ValidateHeaderName("call-command") != nil {
		t.Fatal("header name validation")
	}
	if ValidateEventName("channel_park") == nil || ValidateSubclass("conference::maintenance") != nil {
		t.Fatal("event name validation")
	}
}

// encodeTest is a full (double-encoding) variant of switch_url_encode used to check that
// decoding inverts encoding.
func encodeTest(v string) string {
	if v == "" {
		return "_undef_"
	}
	const unsafe = "\r\n #%&+:;<=>?@[\\]^`{|}\""
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' || c > '~' || strings.IndexByte(unsafe, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func encodePlain(ev *Event) []byte {
	var b bytes.Buffer
	for _, h := range ev.Headers {
		b.WriteString(h.Name + ": " + encodeTest(h.Value) + "\n")
	}
	if ev.Body != "" {
		b.WriteString("Content-Length: " + strconv.Itoa(len(ev.Body)) + "\n\n" + ev.Body)
	} else {
		b.WriteString("\n")
	}
	return b.Bytes()
}
