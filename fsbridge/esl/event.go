package esl

import (
	"errors"
	"fmt"
	"strings"
)

// Event parsing errors.
var (
	ErrBadEvent = errors.New("esl: malformed event")
)

// Format is an event serialisation format for the "event" command.
type Format string

// Event formats supported by the parser.
const (
	FormatPlain Format = "plain"
	FormatJSON  Format = "json"
)

// arraySep joins array header values as FreeSWITCH does ("ARRAY::a|:b").
const (
	arrayPrefix = "ARRAY::"
	arraySep    = "|:"
)

// Event is one FreeSWITCH event. Header values are decoded (plain events are
// percent-decoded, "_undef_" becomes ""); array headers keep FreeSWITCH's
// "ARRAY::v1|:v2" form in both formats (use Array to split them). Body is the event body
// (for BACKGROUND_JOB: the command output) without the inner Content-Length header.
type Event struct {
	Headers Headers
	Body    string
}

// Get returns a header value (case-insensitive name).
func (e *Event) Get(name string) string { return e.Headers.Get(name) }

// Name returns Event-Name.
func (e *Event) Name() string { return e.Headers.Get("Event-Name") }

// Subclass returns Event-Subclass (CUSTOM events).
func (e *Event) Subclass() string { return e.Headers.Get("Event-Subclass") }

// UUID returns Unique-ID, the channel the event is about.
func (e *Event) UUID() string { return e.Headers.Get("Unique-ID") }

// Var returns the channel variable name (header "variable_<name>").
func (e *Event) Var(name string) string { return e.Headers.Get("variable_" + name) }

// Array returns the values of an array header, or a one-element slice for a plain value,
// or nil when the header is absent.
func (e *Event) Array(name string) []string {
	v, ok := e.Headers.Lookup(name)
	if !ok {
		return nil
	}
	return SplitArray(v)
}

// SplitArray splits FreeSWITCH's "ARRAY::v1|:v2" form; other values yield themselves.
func SplitArray(v string) []string {
	if !strings.HasPrefix(v, arrayPrefix) {
		return []string{v}
	}
	return strings.Split(v[len(arrayPrefix):], arraySep)
}

// ParsePlain parses the body of a text/event-plain frame: a block of "Name: value" lines
// with percent-encoded values, then either an empty line (or the end) or, when the event has
// a body, "Content-Length: M", an empty line and M bytes. The Event shares one copy of
// the input; only values containing escapes allocate.
func ParsePlain(b []byte) (*Event, error) {
	s := string(b)
	// Count lines up to the end of the header block for a single allocation.
	end := strings.Index(s, "\n\n")
	head := s
	rest := ""
	hasBlank := false
	if end >= 0 {
		head, rest = s[:end+1], s[end+2:]
		hasBlank = true
	}
	head = strings.TrimSuffix(head, "\n")
	if head == "" {
		return nil, fmt.Errorf("%w: no headers", ErrBadEvent)
	}
	n := strings.Count(head, "\n") + 1
	ev := &Event{Headers: make(Headers, 0, n)}
	bodyLen := -1
	for len(head) > 0 {
		var line string
		if i := strings.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			line, head = head, ""
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.IndexByte(line, ':') <= 0 {
			return nil, fmt.Errorf("%w: header line %q", ErrBadEvent, clip(line))
		}
		name, value := splitHeader(line)
		if name == "" {
			return nil, fmt.Errorf("%w: empty header name", ErrBadEvent)
		}
		if strings.EqualFold(name, "Content-Length") && len(head) == 0 {
			l, err := parseLength(value)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadEvent, err)
			}
			bodyLen = l
			continue
		}
		ev.Headers = append(ev.Headers, Header{Name: name, Value: decodeValue(value)})
	}
	if len(ev.Headers) == 0 {
		return nil, fmt.Errorf("%w: no headers", ErrBadEvent)
	}
	if bodyLen >= 0 {
		if !hasBlank && bodyLen > 0 {
			return nil, fmt.Errorf("%w: missing body", ErrBadEvent)
		}
		if len(rest) < bodyLen {
			return nil, fmt.Errorf("%w: body shorter than Content-Length", ErrBadEvent)
		}
		ev.Body = rest[:bodyLen]
	}
	return ev, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// decodeValue undoes FreeSWITCH's switch_url_encode with url.PathUnescape semantics ('+'
// stays '+'). Malformed escapes, which FreeSWITCH never produces, are kept verbatim rather
// than failing the whole event. "_undef_" (FreeSWITCH's spelling of an empty value) is "".
func decodeValue(v string) string {
	if v == "_undef_" {
		return ""
	}
	i := strings.IndexByte(v, '%')
	if i < 0 {
		return v
	}
	out := make([]byte, 0, len(v))
	out = append(out, v[:i]...)
	for ; i < len(v); i++ {
		c := v[i]
		if c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			out = append(out, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// DecodeValue exposes the plain-event value decoding (for callers parsing other
// serialised FreeSWITCH data, e.g. the outbound connect reply).
func DecodeValue(v string) string { return decodeValue(v) }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
