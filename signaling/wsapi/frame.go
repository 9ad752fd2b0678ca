package wsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/nkbridge/nkbridge/signaling"
)

// Kinds of incoming frames.
const (
	kindRequest = iota + 1
	kindResponse
	kindAck
)

// maxTidLen bounds the size of a client tid.
const maxTidLen = 128

// frame is one decoded incoming message.
type frame struct {
	kind     int
	class    string
	subclass string
	cmd      string
	data     json.RawMessage // an object or nil
	tid      json.RawMessage // the raw scalar, echoed back
	result   string          // "ok" / "error" for responses
	srvTid   int64           // for responses and acks: the server's tid
}

type rawFrame struct {
	Class    json.RawMessage `json:"class"`
	Subclass json.RawMessage `json:"subclass"`
	Cmd      json.RawMessage `json:"cmd"`
	Data     json.RawMessage `json:"data"`
	Tid      json.RawMessage `json:"tid"`
	Result   json.RawMessage `json:"result"`
	Ack      json.RawMessage `json:"ack"`
}

// frameError is a decode failure: with a tid the client gets an error reply,
// without one the connection is closed with Text as the close reason.
type frameError struct {
	tid json.RawMessage
	err *signaling.Error
}

func (e *frameError) Error() string { return e.err.Error() }

// decodeFrame parses and validates one text frame. It never panics.
func decodeFrame(b []byte) (frame, *frameError) {
	var r rawFrame
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return frame{}, &frameError{err: signaling.Errorf(signaling.CodeSyntaxError, "Syntax error: a frame must be a JSON object")}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return frame{}, &frameError{err: signaling.Errorf(signaling.CodeSyntaxError, "Syntax error: %s", jsonErrText(err))}
	}
	if present(r.Ack) && !present(r.Class) && !present(r.Result) {
		n, ok := intTid(r.Ack)
		if !ok {
			return frame{}, &frameError{err: signaling.Errorf(signaling.CodeSyntaxError, "Syntax error: ack must carry a server tid")}
		}
		return frame{kind: kindAck, srvTid: n}, nil
	}
	if !present(r.Tid) {
		return frame{}, &frameError{err: signaling.Errorf(signaling.CodeSyntaxError, "Syntax error: missing tid")}
	}
	if !scalar(r.Tid) || len(r.Tid) > maxTidLen {
		return frame{}, &frameError{err: signaling.Errorf(signaling.CodeSyntaxError, "Syntax error: tid must be a JSON scalar of at most %d bytes", maxTidLen)}
	}
	tid := append(json.RawMessage(nil), r.Tid...)
	fail := func(code int, format string, args ...any) (frame, *frameError) {
		return frame{}, &frameError{tid: tid, err: signaling.Errorf(code, format, args...)}
	}
	if present(r.Result) && !present(r.Class) && !present(r.Cmd) {
		var res string
		if json.Unmarshal(r.Result, &res) != nil || (res != "ok" && res != "error") {
			return fail(signaling.CodeSyntaxError, "Syntax error: result must be \"ok\" or \"error\"")
		}
		n, ok := intTid(r.Tid)
		if !ok {
			return fail(signaling.CodeSyntaxError, "Syntax error: a response must carry a server tid")
		}
		if present(r.Data) && !object(r.Data) && !isArray(r.Data) {
			return fail(signaling.CodeSyntaxError, "Syntax error: data must be an object or array")
		}
		return frame{kind: kindResponse, result: res, srvTid: n, data: nonNull(r.Data), tid: tid}, nil
	}
	if !present(r.Class) && !present(r.Cmd) {
		return fail(signaling.CodeSyntaxError, "Syntax error: not a request, response or ack")
	}
	f := frame{kind: kindRequest, tid: tid, subclass: "core"}
	var ok bool
	if f.class, ok = str(r.Class); !ok || f.class == "" {
		if !present(r.Class) {
			return fail(signaling.CodeMissingField, "Missing field: class")
		}
		return fail(signaling.CodeSyntaxError, "Syntax error: class must be a non-empty string")
	}
	if f.cmd, ok = str(r.Cmd); !ok || f.cmd == "" {
		if !present(r.Cmd) {
			return fail(signaling.CodeMissingField, "Missing field: cmd")
		}
		return fail(signaling.CodeSyntaxError, "Syntax error: cmd must be a non-empty string")
	}
	if present(r.Subclass) {
		if f.subclass, ok = str(r.Subclass); !ok || f.subclass == "" {
			return fail(signaling.CodeSyntaxError, "Syntax error: subclass must be a non-empty string")
		}
	}
	if present(r.Data) {
		if !object(r.Data) {
			return fail(signaling.CodeSyntaxError, "Syntax error: data must be an object")
		}
		f.data = r.Data
	}
	return f, nil
}

func present(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }

func nonNull(r json.RawMessage) json.RawMessage {
	if !present(r) {
		return nil
	}
	return r
}

func object(r json.RawMessage) bool  { return len(r) > 0 && r[0] == '{' }
func isArray(r json.RawMessage) bool { return len(r) > 0 && r[0] == '[' }
func scalar(r json.RawMessage) bool {
	return len(r) > 0 && r[0] != '{' && r[0] != '[' && string(r) != "null"
}

func str(r json.RawMessage) (string, bool) {
	if len(r) < 2 || r[0] != '"' {
		return "", false
	}
	if plain(r[1 : len(r)-1]) {
		return string(r[1 : len(r)-1]), true
	}
	var s string
	if json.Unmarshal(r, &s) != nil {
		return "", false
	}
	return s, true
}

func intTid(r json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(r), 10, 64)
	return n, err == nil
}

func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return "invalid JSON"
}

// decodeData unmarshals request data into v; wrong types give 1048 naming
// the field. A nil data leaves v untouched.
func decodeData(data json.RawMessage, v any) *signaling.Error {
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: %s (want %s)", te.Field, te.Type.String())
		}
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid parameters: %s", err.Error())
	}
	return nil
}

// rawData returns the data as a generic map (nil for none).
func rawData(data json.RawMessage) map[string]any {
	if len(data) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

// Outgoing frames.

type outRequest struct {
	Class    string `json:"class"`
	Subclass string `json:"subclass,omitempty"`
	Cmd      string `json:"cmd"`
	Data     any    `json:"data,omitempty"`
	Tid      int64  `json:"tid"`
}

type outResponse struct {
	Result string          `json:"result"`
	Data   any             `json:"data,omitempty"`
	Tid    json.RawMessage `json:"tid"`
}

type outAck struct {
	Ack json.RawMessage `json:"ack"`
}

type errorData struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

// plain reports whether the inside of a JSON string needs no unescaping.
func plain(b []byte) bool {
	for _, ch := range b {
		if ch == '\\' || ch == '"' || ch < 0x20 || ch >= 0x80 {
			return false
		}
	}
	return true
}
