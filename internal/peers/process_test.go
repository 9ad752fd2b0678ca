package peers

import (
	"bytes"
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
)

func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                          "plain",
		"\x1b[31mwarn: x\x1b[;m":         "warn: x",
		"a\rb":                           "a b",
		"\x1b[":                          "",
		"end \x1b[0;1m":                  "end ",
		"\x1b[31maccount: codec\x1b[;m!": "account: codec!",
	} {
		if got := stripANSI(in); got != want {
			t.Errorf("stripANSI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFixWAVLength(t *testing.T) {
	var buf bytes.Buffer
	if err := audiotest.EncodeWAV(&buf, []int16{1, -2, 3, -4}, 8000); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	copy(b[40:44], []byte{0, 0, 0, 0}) // a recorder that has not patched its header yet
	if s, _, _ := audiotest.DecodeWAV(b); len(s) != 0 {
		t.Fatalf("premise: unpatched WAV decodes to %d samples", len(s))
	}
	s, rate, err := audiotest.DecodeWAV(fixWAVLength(b))
	if err != nil || rate != 8000 || len(s) != 4 || s[3] != -4 {
		t.Fatalf("fixed WAV: %v %d %v", s, rate, err)
	}
}
