package peers

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func FuzzParseSIPpStats(f *testing.F) {
	f.Add("StartTime;CurrentCall;SuccessfulCall(C)\n1;2;3\n")
	f.Add("a;b\n\"x;y\n")
	f.Add(";;;\n;;;;;;\n")
	f.Fuzz(func(t *testing.T, in string) {
		st, err := ParseSIPpStats(strings.NewReader(in))
		if err == nil && st.Raw == nil {
			t.Fatal("no error and no columns")
		}
	})
}

func FuzzNetstring(f *testing.F) {
	f.Add([]byte(`{"command":"dial","params":"sip:a@127.0.0.1","token":"1"}`), []byte("5:hello,"))
	f.Add([]byte(""), []byte("0:,"))
	f.Add([]byte(","), []byte("99999999999:x,"))
	f.Fuzz(func(t *testing.T, payload, raw []byte) {
		var buf bytes.Buffer
		if err := writeNetstring(&buf, payload); err != nil {
			t.Fatal(err)
		}
		got, err := readNetstring(bufio.NewReader(&buf))
		if len(payload) <= maxNetstring && (err != nil || !bytes.Equal(got, payload)) {
			t.Fatalf("round trip of %q: %q, %v", payload, got, err)
		}
		// Arbitrary input: an error or a payload, never a panic or a huge allocation.
		if p, err := readNetstring(bufio.NewReader(bytes.NewReader(raw))); err == nil && len(p) > len(raw) {
			t.Fatalf("payload longer than input")
		}
	})
}

func FuzzFixWAVLength(f *testing.F) {
	wav := []byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00\x01\x02\x03\x04")
	f.Add(wav)
	f.Add([]byte("RIFF....WAVEdata\xff\xff\xff\xff"))
	f.Add([]byte("RIFF....WAVEjunk\xff\xff\xff\x7f"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := fixWAVLength(in)
		if len(out) != len(in) {
			t.Fatalf("length changed: %d -> %d", len(in), len(out))
		}
	})
}
