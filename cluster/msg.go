package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nkbridge/nkbridge/signaling"
)

// version is the protocol version of every message and record this package writes.
const version = 1

// Message kinds (the last token of a node subject).
const (
	kindInvite   = "invite"   // caller's node -> callee's node (request)
	kindProgress = "progress" // callee's node -> caller's node (accepted: request)
	kindHangup   = "hangup"   // caller's node -> callee's node
)

// Progress events of a forwarded invitation.
const (
	progRinging  = "ringing"
	progAccepted = "accepted"
	progRejected = "rejected"
	progHangup   = "hangup"
)

// maxMessage bounds what the decoder accepts (an offer's SDP is a few kB).
const maxMessage = 1 << 20

// message is every message between nodes.
type message struct {
	V      int    `json:"v"`
	Kind   string `json:"kind"`
	From   string `json:"from"`
	CallID string `json:"call_id"`

	// invite
	Type     string         `json:"type,omitempty"`
	Callee   string         `json:"callee,omitempty"`
	Offer    signaling.Desc `json:"offer,omitempty"`
	Caller   callerInfo     `json:"caller,omitzero"`
	Data     map[string]any `json:"data,omitempty"`
	RingTime int64          `json:"ring_ms,omitempty"`

	// progress, hangup
	Event  string         `json:"event,omitempty"`
	Answer signaling.Desc `json:"answer,omitempty"`
	Code   int            `json:"code,omitempty"`
	Reason string         `json:"reason,omitempty"`
}

type callerInfo struct {
	Name string `json:"name,omitempty"`
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
}

// reply answers a request.
type reply struct {
	V     int    `json:"v"`
	OK    bool   `json:"ok"`
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of JSON values travel: this cannot happen.
		panic(fmt.Sprintf("cluster: encode: %v", err))
	}
	return b
}

func errReply(err error) []byte {
	e := signaling.AsError(err)
	return encode(reply{V: version, Code: e.Code, Error: e.Text})
}

var okReply = encode(reply{V: version, OK: true})

// decodeMessage decodes and checks a message of kind (the subject's last token).
func decodeMessage(data []byte, kind string) (message, error) {
	var m message
	if len(data) > maxMessage {
		return m, errors.New("message too big")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("not a message: %w", err)
	}
	if dec.More() {
		return m, errors.New("trailing data")
	}
	if m.V != version {
		return m, fmt.Errorf("version %d, want %d", m.V, version)
	}
	if m.Kind != kind {
		return m, fmt.Errorf("kind %q on a %q subject", m.Kind, kind)
	}
	if !validToken(m.From) {
		return m, fmt.Errorf("bad sender %q", m.From)
	}
	if !signaling.ValidID(m.CallID) {
		return m, errors.New("bad call_id")
	}
	switch kind {
	case kindInvite:
		if m.Callee == "" || m.Type == "" {
			return m, errors.New("invite without type or callee")
		}
		if m.RingTime <= 0 || m.RingTime > 24*3600*1000 {
			return m, errors.New("invite with a bad ring time")
		}
	case kindProgress:
		switch m.Event {
		case progRinging, progAccepted, progRejected, progHangup:
		default:
			return m, fmt.Errorf("unknown progress %q", m.Event)
		}
	case kindHangup:
	default:
		return m, fmt.Errorf("unknown kind %q", kind)
	}
	return m, nil
}

// decodeReply decodes a request's answer: nil for ok, else the error it carries.
func decodeReply(data []byte) error {
	var r reply
	if err := json.Unmarshal(data, &r); err != nil || r.V != version {
		return signaling.Errorf(signaling.CodeClusterUnavailable, "Cluster: bad answer from another node")
	}
	if r.OK {
		return nil
	}
	if r.Code == 0 {
		r.Code = signaling.CodeUnknown
	}
	return &signaling.Error{Code: r.Code, Text: r.Error}
}

// msgError is the error a progress or hangup message carries.
func (m message) err(def int) *signaling.Error {
	if m.Code == 0 {
		return signaling.Err(def)
	}
	if m.Reason == "" {
		return signaling.Err(m.Code)
	}
	return &signaling.Error{Code: m.Code, Text: m.Reason}
}
