package peers

import "testing"

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
