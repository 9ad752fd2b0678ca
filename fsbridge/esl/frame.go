package esl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits applied by Reader.
const (
	// MaxContentLength is FreeSWITCH's own limit for a frame body (MAX_CONTENT_LENGTH).
	MaxContentLength = 16 << 20
	// DefaultMaxHeaderBytes bounds one header block. Outbound "connect" replies carry all
	// channel variables in headers, so this is generous.
	DefaultMaxHeaderBytes = 1 << 20
	// maxLine bounds one header line.
	maxLine = 64 << 10
)

// Frame errors.
var (
	ErrHeaderTooLarge = errors.New("esl: header block too large")
	ErrBadHeader      = errors.New("esl: malformed header line")
	ErrBadLength      = errors.New("esl: invalid Content-Length")
	ErrBodyTooLarge   = errors.New("esl: Content-Length exceeds 16 MiB")
)

// Header is one "Name: value" line with the name exactly as received.
type Header struct {
	Name  string
	Value string
}

// Headers keeps headers in wire order. Lookups are case-insensitive, as in FreeSWITCH.
type Headers []Header

// Lookup returns the value of the first header called name (case-insensitive).
func (h Headers) Lookup(name string) (string, bool) {
	for i := range h {
		if len(h[i].Name) == len(name) && strings.EqualFold(h[i].Name, name) {
			return h[i].Value, true
		}
	}
	return "", false
}

// Get returns the value of the first header called name, or "".
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Frame is one ESL message: a header block and an optional body of Content-Length bytes.
type Frame struct {
	Headers Headers
	Body    []byte
}

// ContentType returns the frame's Content-Type header.
func (f *Frame) ContentType() string { return f.Headers.Get("Content-Type") }

// ReplyText returns the frame's Reply-Text header (command/reply frames).
func (f *Frame) ReplyText() string { return f.Headers.Get("Reply-Text") }

// Reader reads ESL frames from a byte stream. It is not safe for concurrent use.
type Reader struct {
	br             *bufio.Reader
	MaxHeaderBytes int
	buf            []byte
}

// NewReader returns a Reader on r with default limits.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), MaxHeaderBytes: DefaultMaxHeaderBytes}
}

// readLine returns one line without its terminator and any trailing '\r'. The slice is valid
// until the next read.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Long line: accumulate up to maxLine.
		long := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			if len(long) > maxLine {
				return nil, ErrHeaderTooLarge
			}
			line, err = r.br.ReadSlice('\n')
			long = append(long, line...)
		}
		if len(long) > maxLine {
			return nil, ErrHeaderTooLarge
		}
		line = long
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	for len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

// ReadFrame reads the next frame. Leading blank lines are skipped (as FreeSWITCH does).
// io.EOF is returned only at a clean frame boundary.
func (r *Reader) ReadFrame() (*Frame, error) {
	buf := r.buf[:0]
	n := 0
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) == 0 {
			if n == 0 {
				continue // leading blank lines
			}
			break
		}
		if c := bytes.IndexByte(line, ':'); c <= 0 || len(bytes.TrimSpace(line[:c])) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrBadHeader, truncate(line))
		}
		if len(buf)+len(line)+1 > r.MaxHeaderBytes {
			return nil, ErrHeaderTooLarge
		}
		buf = append(buf, line...)
		buf = append(buf, '\n')
		n++
	}
	if cap(buf) <= 64<<10 {
		r.buf = buf // reuse modest buffers only
	}
	f := &Frame{Headers: parseHeaderBlock(string(buf), n, false)}
	if cl, ok := f.Headers.Lookup("Content-Length"); ok {
		size, err := parseLength(cl)
		if err != nil {
			return nil, err
		}
		if size > 0 {
			f.Body = make([]byte, size)
			if _, err := io.ReadFull(r.br, f.Body); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
	}
	return f, nil
}

func parseLength(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 10 {
		return 0, ErrBadLength
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, ErrBadLength
	}
	if n > MaxContentLength {
		return 0, ErrBodyTooLarge
	}
	return n, nil
}

// parseHeaderBlock splits a block of n "Name: value\n" lines (already validated to contain a
// colon) into Headers that share the block's memory. With decode, values are percent-decoded
// and "_undef_" becomes "".
func parseHeaderBlock(block string, n int, decode bool) Headers {
	hs := make(Headers, 0, n)
	for len(block) > 0 {
		i := strings.IndexByte(block, '\n')
		var line string
		if i < 0 {
			line, block = block, ""
		} else {
			line, block = block[:i], block[i+1:]
		}
		name, value := splitHeader(line)
		if decode {
			value = decodeValue(value)
		}
		hs = append(hs, Header{Name: name, Value: value})
	}
	return hs
}

// splitHeader splits "Name: value" at the first colon and skips spaces after it, like esl.c.
func splitHeader(line string) (string, string) {
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return strings.TrimSpace(line), ""
	}
	name := strings.TrimSpace(line[:i])
	v := line[i+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	return name, v
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// AppendCommand appends one command in wire format: the command line, the headers, a
// Content-Length header when body is non-empty, the blank line and the body. It does not
// validate; callers use the validating helpers (see validate.go).
func AppendCommand(dst []byte, line string, hs Headers, body []byte) []byte {
	dst = append(dst, line...)
	dst = append(dst, '\n')
	for _, h := range hs {
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, '\n')
	}
	if len(body) > 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	return append(dst, body...)
}
