package fakefs

import (
	"strconv"
	"strings"
	"time"
)

// Header is one event header in FreeSWITCH's order. A value of the form "ARRAY::a|:b" is an
// array header (serialised as a JSON array in json events).
type Header struct {
	Name  string
	Value string
}

// Event is an event as the fake's core holds it before serialisation.
type Event struct {
	Name     string // Event-Name, e.g. CHANNEL_PARK or CUSTOM
	Subclass string // Event-Subclass for CUSTOM events
	Headers  []Header
	Body     string
}

// Get returns the first header called name (exact match).
func (e *Event) Get(name string) string {
	for _, h := range e.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// urlUnsafe is SWITCH_URL_UNSAFE from switch_utils.h.
const urlUnsafe = "\r\n #%&+:;<=>?@[\\]^`{|}\""

const upperHex = "0123456789ABCDEF"

// URLEncode reproduces switch_url_encode (double_encode off): bytes < 0x20 or > 0x7E and
// the unsafe set become %XX (upper-case), except a '%' already followed by two upper-case
// hex digits, which is left alone.
func URLEncode(v string) string {
	need := false
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c > '~' || strings.IndexByte(urlUnsafe, c) >= 0 {
			need = true
			break
		}
	}
	if !need {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 16)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '%' && i+2 < len(v) && strings.IndexByte(upperHex, v[i+1]) >= 0 && strings.IndexByte(upperHex, v[i+2]) >= 0 {
			b.WriteByte(c)
			continue
		}
		if c < ' ' || c > '~' || strings.IndexByte(urlUnsafe, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// SerializePlain reproduces switch_event_serialize(event, encode=TRUE): "Name: value\n" with
// encoded values ("_undef_" for empty), then "Content-Length: n\n\n<body>" or a lone "\n".
func SerializePlain(e *Event) []byte {
	var b strings.Builder
	for _, h := range e.Headers {
		v := URLEncode(h.Value)
		if v == "" {
			v = "_undef_"
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	if e.Body != "" {
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.Itoa(len(e.Body)))
		b.WriteString("\n\n")
		b.WriteString(e.Body)
	} else {
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// SerializeJSON reproduces switch_event_serialize_json (cJSON, unformatted): every header a
// string, array headers as arrays, and for a body "Content-Length" then "_body".
func SerializeJSON(e *Event) []byte {
	b := make([]byte, 0, 1024)
	b = append(b, '{')
	first := true
	member := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = cjsonString(b, name)
		b = append(b, ':')
	}
	for _, h := range e.Headers {
		member(h.Name)
		if strings.HasPrefix(h.Value, "ARRAY::") {
			b = append(b, '[')
			for i, v := range strings.Split(h.Value[len("ARRAY::"):], "|:") {
				if i > 0 {
					b = append(b, ',')
				}
				b = cjsonString(b, v)
			}
			b = append(b, ']')
			continue
		}
		b = cjsonString(b, h.Value)
	}
	if e.Body != "" {
		member("Content-Length")
		b = cjsonString(b, strconv.Itoa(len(e.Body)))
		member("_body")
		b = cjsonString(b, e.Body)
	}
	return append(b, '}')
}

// cjsonString escapes like cJSON's print_string_ptr: \" \\ \b \f \n \r \t, other bytes
// below 0x20 as \u00xx, everything else (including UTF-8 and '/') verbatim.
func cjsonString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}

// baseHeaders are the headers every fired event carries, in FreeSWITCH's order.
func (s *Server) baseHeaders(name, subclass, file, function string, line int) []Header {
	now := time.Now()
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	hs := make([]Header, 0, 64)
	if subclass != "" {
		hs = append(hs, Header{"Event-Subclass", subclass})
	}
	hs = append(hs,
		Header{"Event-Name", name},
		Header{"Core-UUID", s.coreUUID},
		Header{"FreeSWITCH-Hostname", s.opts.Hostname},
		Header{"FreeSWITCH-Switchname", s.opts.Hostname},
		Header{"FreeSWITCH-IPv4", "127.0.0.1"},
		Header{"FreeSWITCH-IPv6", "::1"},
		Header{"Event-Date-Local", now.Format("2006-01-02 15:04:05")},
		Header{"Event-Date-GMT", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")},
		Header{"Event-Date-Timestamp", strconv.FormatInt(now.UnixMicro(), 10)},
		Header{"Event-Calling-File", file},
		Header{"Event-Calling-Function", function},
		Header{"Event-Calling-Line-Number", strconv.Itoa(line)},
		Header{"Event-Sequence", strconv.FormatUint(seq, 10)},
	)
	return hs
}
