package verto

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// JSON-RPC error codes used on the Verto wire (verto.md §1.5).
const (
	CodeParseError     = -32700 // the frame is not JSON (JSON-RPC 2.0 §5.1)
	CodeInvalidRequest = -32600 // not a JSON-RPC 2.0 request object
	CodeMethodNotFound = -32601 // unknown method
	CodeInvalidParams  = -32602 // params are not an object where one is required
	CodeAuthRequired   = -32000 // not logged in yet
	CodeAuthFailure    = -32001 // credentials rejected / session in use
	CodeCallError      = -32002 // a verto.* call handler failed
	CodeRateLimited    = -32003 // too many requests on this connection
)

// rpcError is a JSON-RPC error object. mod_verto puts extra members (callID, cause, causeCode)
// next to code and message, so extra fields are flattened into the object.
type rpcError struct {
	Code    int
	Message string
	Extra   map[string]any
}

func (e *rpcError) Error() string { return strconv.Itoa(e.Code) + " " + e.Message }

func (e *rpcError) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	m["code"] = e.Code
	m["message"] = e.Message
	return json.Marshal(m)
}

func newError(code int, msg string) *rpcError { return &rpcError{Code: code, Message: msg} }

// callError builds a -32002 error that names the call, as mod_verto's handlers do.
func callError(callID, msg string) *rpcError {
	e := &rpcError{Code: CodeCallError, Message: msg}
	if callID != "" {
		e.Extra = map[string]any{"callID": callID}
	}
	return e
}

// rawMessage is one decoded JSON-RPC element. Field matching is case-insensitive (like cJSON's
// GetObjectItem); every member is kept raw so a wrongly typed member never fails the decode.
type rawMessage struct {
	JSONRPC json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// msgKind says what an incoming element is.
type msgKind int

const (
	kindInvalid  msgKind = iota // answer with err
	kindRequest                 // a request (or notification) to dispatch
	kindResponse                // a reply to one of our requests: never answered
)

// incoming is one classified JSON-RPC element.
type incoming struct {
	kind   msgKind
	id     json.RawMessage // always valid JSON: a number, a string or null
	method string
	params json.RawMessage // nil when absent
	isErr  bool            // a response carrying error
	err    *rpcError       // for kindInvalid
}

var nullID = json.RawMessage("null")

// maxBatch caps the number of elements of a batch frame.
const maxBatch = 16

// decodeFrame splits a text frame into classified JSON-RPC elements. A nil slice with a non-nil
// error means the whole frame must be answered with that error (id null).
func decodeFrame(data []byte) (msgs []incoming, batch bool, ferr *rpcError) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || !json.Valid(data) {
		return nil, false, newError(CodeParseError, "Parse error")
	}
	if data[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			return nil, false, newError(CodeParseError, "Parse error")
		}
		if len(elems) == 0 {
			return nil, false, newError(CodeInvalidRequest, "Invalid Request")
		}
		if len(elems) > maxBatch {
			return nil, false, newError(CodeInvalidRequest, "Invalid Request: batch too large")
		}
		msgs = make([]incoming, 0, len(elems))
		for _, e := range elems {
			msgs = append(msgs, classify(e))
		}
		return msgs, true, nil
	}
	return []incoming{classify(data)}, false, nil
}

// validID reports whether raw is an id JSON-RPC allows: a number, a string or null.
func validID(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case '"', 'n':
		return true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

func classify(raw json.RawMessage) incoming {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return incoming{kind: kindInvalid, id: nullID, err: newError(CodeInvalidRequest, "Invalid Request")}
	}
	var m rawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return incoming{kind: kindInvalid, id: nullID, err: newError(CodeInvalidRequest, "Invalid Request")}
	}
	in := incoming{id: nullID}
	if m.ID != nil && !isNull(m.ID) {
		if !validID(m.ID) {
			in.kind, in.err = kindInvalid, newError(CodeInvalidRequest, "Invalid Request: bad id")
			return in
		}
		in.id = compact(m.ID)
	}
	var version string
	if json.Unmarshal(m.JSONRPC, &version) != nil || version != "2.0" {
		in.kind, in.err = kindInvalid, newError(CodeInvalidRequest, "Invalid Request: jsonrpc must be \"2.0\"")
		return in
	}
	if m.Method == nil {
		// No method: a reply to one of our requests (result or error) is dropped silently
		// (verto.md §1.3); anything else is not a valid message.
		if m.Result != nil || m.Error != nil {
			in.kind, in.isErr = kindResponse, m.Error != nil
			return in
		}
		in.kind, in.err = kindInvalid, newError(CodeInvalidRequest, "Invalid Request: no method")
		return in
	}
	if json.Unmarshal(m.Method, &in.method) != nil || in.method == "" {
		in.kind, in.err = kindInvalid, newError(CodeInvalidRequest, "Invalid Request: method must be a string")
		return in
	}
	in.kind = kindRequest
	if m.Params != nil && !isNull(m.Params) {
		in.params = m.Params
	}
	return in
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return nullID
	}
	return b.Bytes()
}

// object is a JSON object read loosely, as mod_verto reads it: keys match without regard to case
// and a member of the wrong type counts as absent.
type object map[string]json.RawMessage

// parseObject decodes raw as a JSON object; ok is false when raw is absent or not an object.
func parseObject(raw json.RawMessage) (object, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var o object
	if json.Unmarshal(raw, &o) != nil {
		return nil, false
	}
	if o == nil {
		o = object{}
	}
	return o, true
}

func (o object) get(key string) (json.RawMessage, bool) {
	if v, ok := o[key]; ok {
		return v, true
	}
	for k, v := range o {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// has reports whether key is present with any value.
func (o object) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// str returns the member as a string, or "" when absent or not a JSON string.
func (o object) str(key string) string {
	v, ok := o.get(key)
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// isString reports whether the member is present and a JSON string.
func (o object) isString(key string) bool {
	v, ok := o.get(key)
	if !ok {
		return false
	}
	var s string
	return json.Unmarshal(v, &s) == nil
}

// obj returns the member as an object (ok false when absent or not an object).
func (o object) obj(key string) (object, bool) {
	v, ok := o.get(key)
	if !ok {
		return nil, false
	}
	return parseObject(v)
}

// boolean returns the member as a bool; only JSON true/false count.
func (o object) boolean(key string) (val, ok bool) {
	v, found := o.get(key)
	if !found {
		return false, false
	}
	if json.Unmarshal(v, &val) != nil {
		return false, false
	}
	return val, true
}

// integer returns the member as an int from a JSON number or a numeric string.
func (o object) integer(key string) (int, bool) {
	v, found := o.get(key)
	if !found {
		return 0, false
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		if i, err := strconv.Atoi(n.String()); err == nil {
			return i, true
		}
		return 0, false
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if i, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return i, true
		}
	}
	return 0, false
}

// stringMap returns the members of an object whose values are strings, numbers or booleans as
// strings (like loginParams / userVariables); other values are skipped.
func (o object) stringMap(key string, maxEntries int) map[string]string {
	sub, ok := o.obj(key)
	if !ok || len(sub) == 0 {
		return nil
	}
	out := make(map[string]string, len(sub))
	for k, v := range sub {
		if len(out) >= maxEntries {
			break
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
			continue
		}
		var b bool
		if json.Unmarshal(v, &b) == nil {
			out[k] = strconv.FormatBool(b)
			continue
		}
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			out[k] = n.String()
		}
	}
	return out
}

// outResponse is a reply we send.
type outResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// outRequest is a request we send (server → client).
type outRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      int64  `json:"id"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}
