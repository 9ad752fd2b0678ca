package esl

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseJSON parses the body of a text/event-json frame: one JSON object whose values are
// strings (array headers are arrays of strings), with the event body under "_body". The
// "Content-Length" member that accompanies "_body" is not kept as a header. Header order
// is preserved; numbers, booleans and null are accepted as text. Nested objects are
// rejected (FreeSWITCH never sends them).
//
// It is a small single-pass scanner for this flat shape: the input is copied to a string
// once and unescaped values share it; only values with escapes allocate. String decoding
// matches encoding/json (invalid UTF-8 and lone surrogates become U+FFFD); the fuzz target
// checks it against encoding/json.
func ParseJSON(b []byte) (*Event, error) {
	p := jsonScanner{s: string(b)}
	ev := &Event{Headers: make(Headers, 0, 64)}
	if err := p.object(ev); err != nil {
		return nil, fmt.Errorf("%w: json at offset %d: %v", ErrBadEvent, p.i, err)
	}
	return ev, nil
}

type jsonScanner struct {
	s string
	i int
}

var errJSONSyntax = errors.New("syntax error")

func (p *jsonScanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScanner) next(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScanner) object(ev *Event) error {
	if !p.next('{') {
		return errors.New("not a JSON object")
	}
	if !p.next('}') {
		for {
			p.ws()
			key, err := p.str()
			if err != nil {
				return err
			}
			if !p.next(':') {
				return errJSONSyntax
			}
			val, err := p.value()
			if err != nil {
				return err
			}
			switch {
			case key == "_body":
				ev.Body = val
			case strings.EqualFold(key, "Content-Length"):
				// framing information for _body only
			default:
				ev.Headers = append(ev.Headers, Header{Name: key, Value: val})
			}
			if p.next(',') {
				continue
			}
			if p.next('}') {
				break
			}
			return errJSONSyntax
		}
	}
	p.ws()
	if p.i != len(p.s) {
		return errors.New("trailing data after object")
	}
	return nil
}

// value reads a scalar or an array of scalars (joined in the ARRAY:: form).
func (p *jsonScanner) value() (string, error) {
	p.ws()
	if !p.next('[') {
		return p.scalar()
	}
	if p.next(']') {
		return arrayPrefix, nil
	}
	var sb strings.Builder
	sb.WriteString(arrayPrefix)
	for first := true; ; first = false {
		p.ws()
		v, err := p.scalar()
		if err != nil {
			return "", err
		}
		if !first {
			sb.WriteString(arraySep)
		}
		sb.WriteString(v)
		if p.next(',') {
			continue
		}
		if p.next(']') {
			return sb.String(), nil
		}
		return "", errJSONSyntax
	}
}

func (p *jsonScanner) scalar() (string, error) {
	if p.i >= len(p.s) {
		return "", errJSONSyntax
	}
	switch c := p.s[p.i]; {
	case c == '"':
		return p.str()
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		if _, err := p.lit("null"); err != nil {
			return "", err
		}
		return "", nil
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == '{' || c == '[':
		return "", errors.New("nested value")
	}
	return "", errJSONSyntax
}

func (p *jsonScanner) lit(w string) (string, error) {
	if !strings.HasPrefix(p.s[p.i:], w) {
		return "", errJSONSyntax
	}
	p.i += len(w)
	return w, nil
}

func (p *jsonScanner) digits() int {
	n := 0
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// number validates the JSON number grammar and returns its text (like json.Number).
func (p *jsonScanner) number() (string, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if p.digits() == 0 {
		return "", errJSONSyntax
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return "", errJSONSyntax
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return "", errJSONSyntax
		}
	}
	return p.s[start:p.i], nil
}

// str reads a JSON string. Without escapes or invalid UTF-8 it returns a substring.
func (p *jsonScanner) str() (string, error) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", errJSONSyntax
	}
	p.i++
	start := p.i
	simple := true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			raw := p.s[start:p.i]
			p.i++
			if simple && utf8.ValidString(raw) {
				return raw, nil
			}
			return unquote(raw)
		case c == '\\':
			simple = false
			p.i += 2
		case c < 0x20:
			return "", errors.New("control character in string")
		default:
			p.i++
		}
	}
	return "", errors.New("unterminated string")
}

// unquote decodes the inside of a JSON string the way encoding/json does.
func unquote(raw string) (string, error) {
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			r, size := utf8.DecodeRuneInString(raw[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, raw[i:i+size]...)
			}
			i += size
			continue
		}
		if i+1 >= len(raw) {
			return "", errJSONSyntax
		}
		switch e := raw[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				return "", errors.New("bad \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if strings.HasPrefix(raw[i:], "\\u") {
					if r2, ok := hex4(raw[i+2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							b = utf8.AppendRune(b, d)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return "", errors.New("bad escape")
		}
		i += 2
	}
	return string(b), nil
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}
