package esl

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("esl: invalid argument")

func invalid(what, v string) error {
	return fmt.Errorf("%w: %s %q", ErrInvalid, what, clip(v))
}

// maxCommandLine bounds a whole command line.
const maxCommandLine = 8 << 10

// ValidateUUID accepts only the canonical 8-4-4-4-12 hexadecimal form FreeSWITCH uses for
// channel and job UUIDs.
func ValidateUUID(s string) error {
	if len(s) != 36 {
		return invalid("uuid", s)
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return invalid("uuid", s)
			}
		default:
			if !isHex(c) {
				return invalid("uuid", s)
			}
		}
	}
	return nil
}

// ValidateLine checks free text that becomes (part of) one command line or a header value:
// non-empty, bounded, no CR, LF or other control characters (header/command injection).
func ValidateLine(s string) error {
	if s == "" || len(s) > maxCommandLine {
		return invalid("command text", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return invalid("command text (control character)", s)
		}
	}
	return nil
}

// ValidateHeaderValue is ValidateLine that also allows the empty string.
func ValidateHeaderValue(s string) error {
	if s == "" {
		return nil
	}
	return ValidateLine(s)
}

// ValidateHeaderName accepts RFC 7230 token characters only (no ':' or spaces).
func ValidateHeaderName(s string) error {
	if s == "" || len(s) > 128 {
		return invalid("header name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
			return invalid("header name", s)
		}
	}
	return nil
}

// ValidateName accepts identifiers that FreeSWITCH embeds in its own syntax (conference
// rooms and profiles, SIP profile names): 1..128 of [A-Za-z0-9_.-], starting with a letter
// or digit. No '@', ':', ',', spaces or quotes, which would change the meaning of
// "conference:<room>@<profile>" or of an inline dialplan.
func ValidateName(s string) error {
	if s == "" || len(s) > 128 || !isAlnum(s[0]) {
		return invalid("name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '-' || c == '.') {
			return invalid("name", s)
		}
	}
	return nil
}

// ValidateWord accepts one space-free argument of an API command: 1..256 of
// [A-Za-z0-9_.+:@=/-]. Use it for values such as layouts, member ids and hangup causes.
func ValidateWord(s string) error {
	if s == "" || len(s) > 256 {
		return invalid("argument", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '-' || c == '.' || c == '+' || c == ':' || c == '@' || c == '=' || c == '/') {
			return invalid("argument", s)
		}
	}
	return nil
}

// ValidateEventName accepts an event name for the "event" command: upper-case letters,
// digits and '_' (e.g. CHANNEL_PARK, ALL, CUSTOM).
func ValidateEventName(s string) error {
	if s == "" || len(s) > 64 {
		return invalid("event name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return invalid("event name", s)
		}
	}
	return nil
}

// ValidateSubclass accepts a CUSTOM event subclass such as conference::maintenance.
func ValidateSubclass(s string) error {
	if s == "" || len(s) > 128 {
		return invalid("event subclass", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '-' || c == '.' || c == ':') {
			return invalid("event subclass", s)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// ValidatePassword checks an Event Socket password: non-empty, without spaces or control
// characters (a newline would end the auth command and start another).
func ValidatePassword(p string) error {
	if err := ValidateLine(p); err != nil || strings.ContainsAny(p, " \t") {
		return fmt.Errorf("%w: password must be non-empty without spaces or control characters", ErrInvalid)
	}
	return nil
}
