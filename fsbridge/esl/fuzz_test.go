package esl

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	for _, s := range []string{frameAuthRequest, frameAccepted, frameBgapiReply, frameRude, frameDisconnect, frameLinger,
		eventFrame("text/event-plain", bgJobBody), eventFrame("text/event-plain", parkBody),
		"Content-Type: api/response\nContent-Length: 3\n\n+OK", "\r\n\r\nX: y\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		r.MaxHeaderBytes = 64 << 10
		for i := 0; i < 100; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			// Re-serialise and re-read: the frame must survive unchanged.
			var b []byte
			for _, h := range fr.Headers {
				b = append(b, h.Name+": "+h.Value+"\n"...)
			}
			b = append(b, '\n')
			b = append(b, fr.Body...)
			again, err := NewReader(bytes.NewReader(b)).ReadFrame()
			if err != nil {
				t.Fatalf("re-read %q: %v", b, err)
			}
			if !reflect.DeepEqual(again.Headers, fr.Headers) || !bytes.Equal(again.Body, fr.Body) {
				t.Fatalf("round trip changed frame: %+v vs %+v", fr, again)
			}
			if cl, ok := fr.Headers.Lookup("Content-Length"); ok {
				if n, err := parseLength(cl); err != nil || n != len(fr.Body) {
					t.Fatalf("body %d bytes, Content-Length %q", len(fr.Body), cl)
				}
			} else if len(fr.Body) != 0 {
				t.Fatal("body without Content-Length")
			}
		}
	})
}

func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{bgJobBody, parkBody, "Event-Name: HEARTBEAT\n\n", "Event-Name: X\nContent-Length: 0\n\n",
		"Event-Name: CUSTOM\nEvent-Subclass: conference::maintenance\nAction: add-member\nMember-ID: 7\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParsePlain(data)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("unexpected error type %v", err)
			}
			return
		}
		for _, h := range ev.Headers {
			if h.Name == "" || strings.ContainsAny(h.Name, ":\n") {
				t.Fatalf("bad name %q", h.Name)
			}
		}
		// Encoding the decoded event and parsing it again gives the same event.
		again, err := ParsePlain(encodePlain(ev))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(ev)) {
			t.Fatalf("round trip: %+v vs %+v", ev, again)
		}
	})
}

// normalize trims names the way the parser does (a re-encoded name can lose surrounding
// spaces and '\r' only).
func normalize(ev *Event) *Event {
	out := &Event{Body: ev.Body}
	for _, h := range ev.Headers {
		out.Headers = append(out.Headers, Header{strings.TrimSpace(h.Name), h.Value})
	}
	return out
}

// refParseJSON is the reference for ParseJSON, built on encoding/json's tokenizer.
func refParseJSON(b []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	scalar := func(t json.Token) (string, bool) {
		switch v := t.(type) {
		case string:
			return v, true
		case json.Number:
			return v.String(), true
		case bool:
			return strconv.FormatBool(v), true
		case nil:
			return "", true
		}
		return "", false
	}
	bad := errors.New("bad")
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		return nil, bad
	}
	ev := &Event{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := kt.(string)
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var val string
		if d, ok := t.(json.Delim); ok {
			if d != '[' {
				return nil, bad
			}
			parts := []string{}
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, ok := scalar(t)
				if !ok {
					return nil, bad
				}
				parts = append(parts, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			val = "ARRAY::" + strings.Join(parts, "|:")
		} else if val, ok = scalar(t); !ok {
			return nil, bad
		}
		switch {
		case key == "_body":
			ev.Body = val
		case strings.EqualFold(key, "Content-Length"):
		default:
			ev.Headers = append(ev.Headers, Header{key, val})
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad
	}
	return ev, nil
}

// FuzzParseJSON checks the hand-written scanner against encoding/json.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{"Event-Name":"BACKGROUND_JOB","Job-UUID":"5d3c7f4a-9b1e-4c2d-8e6f-0a1b2c3d4e5f","Job-Command":"status","Content-Length":"4","_body":"+OK\n"}`,
		`{"Event-Name":"CHANNEL_PARK","Unique-ID":"2f0c5c4e-1111-4222-8333-944455556666","variable_sip_h_X-NKB-Session":"abc","variable_codecs":["PCMU","PCMA"]}`,
		`{"Event-Subclass":"conference::maintenance","Event-Name":"CUSTOM","Action":"start-talking","Member-ID":"3"}`,
		`{}`, `{"a":1,"b":true,"c":null}`, `{"e":"\ud83d\ude00 \ud800 \u00e9\/"}`, " {\"a\" : [ ] } ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseJSON(data)
		ref, rerr := refParseJSON(data)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("ParseJSON err %v, encoding/json err %v", err, rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("unexpected error type %v", err)
			}
			return
		}
		if ev.Body != ref.Body || len(ev.Headers) != len(ref.Headers) {
			t.Fatalf("differs from encoding/json: %+v vs %+v", ev, ref)
		}
		for i := range ev.Headers {
			if ev.Headers[i] != ref.Headers[i] {
				t.Fatalf("header %d: %q vs encoding/json %q", i, ev.Headers[i], ref.Headers[i])
			}
		}
	})
}

func BenchmarkParsePlain(b *testing.B) {
	data := []byte(parkBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParsePlain(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseJSON(b *testing.B) {
	data := []byte(`{"Event-Name":"CHANNEL_PARK","Core-UUID":"0d5ee1b5-b3ae-4c2e-9a05-0a4b4d5f6a71","Unique-ID":"2f0c5c4e-1111-4222-8333-944455556666","Channel-Name":"sofia/nkbridge/park@127.0.0.1:5080","variable_sip_h_X-NKB-Session":"7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11","variable_codecs":["PCMU","PCMA"]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFrame(b *testing.B) {
	one := eventFrame("text/event-plain", parkBody)
	stream := strings.Repeat(one, 1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	r := NewReader(strings.NewReader(""))
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			r = NewReader(strings.NewReader(stream))
		}
		if _, err := r.ReadFrame(); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
