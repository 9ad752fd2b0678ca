package signaling

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes of the control API (docs/API.md §9).
const (
	CodeInternalError        = 1001
	CodeTimeout              = 1005
	CodeNotImplemented       = 1006
	CodeRegisteredDown       = 1012
	CodeUserStop             = 1013
	CodeUnauthorized         = 1030
	CodeNotAuthenticated     = 1031
	CodeAlreadyAuthenticated = 1032
	CodeUserNotFound         = 1033
	CodeDuplicatedSessionID  = 1034
	CodeInvalidSessionID     = 1035
	CodeUnknownCommand       = 1041
	CodeUnknownClass         = 1042
	CodeInvalidOperation     = 1045
	CodeSyntaxError          = 1046
	CodeMissingField         = 1047
	CodeInvalidParameters    = 1048
	CodeSessionTimeout       = 1060
	CodeSessionStop          = 1061
	CodeSessionNotFound      = 1062

	CodeNoMediaserver      = 2001
	CodeUnknownSessionType = 2002
	CodeMissingOffer       = 2010
	CodeDuplicatedOffer    = 2011
	CodeDuplicatedAnswer   = 2014
	CodeAnswerNotSet       = 2015
	CodeAnswerAlreadySet   = 2016
	CodeCallNotFound       = 2020
	CodeCallRejected       = 2021
	CodeNoDestination      = 2022
	CodeNoAnswer           = 2023
	CodeAlreadyAnswered    = 2024
	CodeOriginatorCancel   = 2025
	CodePeerHangup         = 2026
	CodeRoomNotFound       = 2030
	CodeRoomAlreadyExists  = 2031
	CodeRoomDestroyed      = 2032
	CodeUnknownPublisher   = 2034
	CodePublisherStopped   = 2036
	CodeNodeLost           = 2040 // cluster: the node holding the session, call leg or user died
	CodeClusterUnavailable = 2041 // cluster: NATS unreachable, or the other node did not answer

	CodeSIPBye        = 2110
	CodeSIPCancel     = 2111
	CodeSIPNoSDP      = 2112
	CodeSIPSendError  = 2113
	CodeVertoBye      = 2130
	CodeVertoRejected = 2131
	CodeFSError       = 2300
	CodeFSOpError     = 2301
	CodeFSChannelStop = 2302
	CodeUnknown       = 9999
)

// CodeName returns the symbolic name of a code ("session_timeout"), or "" for
// a code this package does not know.
func CodeName(code int) string {
	switch code {
	case CodeInternalError:
		return "internal_error"
	case CodeTimeout:
		return "timeout"
	case CodeNotImplemented:
		return "not_implemented"
	case CodeRegisteredDown:
		return "registered_down"
	case CodeUserStop:
		return "user_stop"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeNotAuthenticated:
		return "not_authenticated"
	case CodeAlreadyAuthenticated:
		return "already_authenticated"
	case CodeUserNotFound:
		return "user_not_found"
	case CodeDuplicatedSessionID:
		return "duplicated_session_id"
	case CodeInvalidSessionID:
		return "invalid_session_id"
	case CodeUnknownCommand:
		return "unknown_command"
	case CodeUnknownClass:
		return "unknown_class"
	case CodeInvalidOperation:
		return "invalid_operation"
	case CodeSyntaxError:
		return "syntax_error"
	case CodeMissingField:
		return "missing_field"
	case CodeInvalidParameters:
		return "invalid_parameters"
	case CodeSessionTimeout:
		return "session_timeout"
	case CodeSessionStop:
		return "session_stop"
	case CodeSessionNotFound:
		return "session_not_found"
	case CodeNoMediaserver:
		return "no_mediaserver"
	case CodeUnknownSessionType:
		return "unknown_session_type"
	case CodeMissingOffer:
		return "missing_offer"
	case CodeDuplicatedOffer:
		return "duplicated_offer"
	case CodeDuplicatedAnswer:
		return "duplicated_answer"
	case CodeAnswerNotSet:
		return "answer_not_set"
	case CodeAnswerAlreadySet:
		return "answer_already_set"
	case CodeCallNotFound:
		return "call_not_found"
	case CodeCallRejected:
		return "call_rejected"
	case CodeNoDestination:
		return "no_destination"
	case CodeNoAnswer:
		return "no_answer"
	case CodeAlreadyAnswered:
		return "already_answered"
	case CodeOriginatorCancel:
		return "originator_cancel"
	case CodePeerHangup:
		return "peer_hangup"
	case CodeRoomNotFound:
		return "room_not_found"
	case CodeRoomAlreadyExists:
		return "room_already_exists"
	case CodeRoomDestroyed:
		return "room_destroyed"
	case CodeUnknownPublisher:
		return "unknown_publisher"
	case CodePublisherStopped:
		return "publisher_stopped"
	case CodeNodeLost:
		return "node_lost"
	case CodeClusterUnavailable:
		return "cluster_unavailable"
	case CodeSIPBye:
		return "sip_bye"
	case CodeSIPCancel:
		return "sip_cancel"
	case CodeSIPNoSDP:
		return "sip_no_sdp"
	case CodeSIPSendError:
		return "sip_send_error"
	case CodeVertoBye:
		return "verto_bye"
	case CodeVertoRejected:
		return "verto_rejected"
	case CodeFSError:
		return "fs_error"
	case CodeFSOpError:
		return "fs_op_error"
	case CodeFSChannelStop:
		return "fs_channel_stop"
	}
	return ""
}

// Error is an API error: a numeric code and a human-readable text saying what
// was wrong. It travels as {"code":N,"error":"text"} in replies and as
// {"code":N,"reason":"text"} in stop/hangup events.
type Error struct {
	Code int
	Text string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Text) }

// Err returns an Error with the code's default text ("Session timeout").
func Err(code int) *Error {
	return &Error{Code: code, Text: defaultText(code)}
}

// Errorf returns an Error with a formatted text.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}

// MissingField is the 1047 error for a missing request field.
func MissingField(name string) *Error {
	return Errorf(CodeMissingField, "Missing field: %s", name)
}

// InvalidField is the 1048 error for a field with a wrong type or value.
func InvalidField(name string) *Error {
	return Errorf(CodeInvalidParameters, "Invalid field: %s", name)
}

// AsError converts any error to an *Error; an error that is not one becomes
// code 9999 with its text. nil stays nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeUnknown, Text: err.Error()}
}

// ReasonError builds the error a client gave for a stop or hangup: a known
// non-zero code keeps its code (and the given text, or the default one); a
// text without a code is 9999 with that text; nothing at all is def.
func ReasonError(code int, text string, def *Error) *Error {
	switch {
	case code != 0 && text != "":
		return &Error{Code: code, Text: text}
	case code != 0:
		return Err(code)
	case text != "":
		return &Error{Code: CodeUnknown, Text: text}
	}
	return def
}

func defaultText(code int) string {
	n := CodeName(code)
	if n == "" {
		return "Unknown error"
	}
	n = strings.ReplaceAll(n, "_", " ")
	return strings.ToUpper(n[:1]) + n[1:]
}
