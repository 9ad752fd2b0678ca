package verto

import (
	"strconv"
	"strings"
)

// Cause is a FreeSWITCH hangup cause as carried in verto.bye (name and numeric code).
type Cause struct {
	Code int
	Name string
}

// The hangup causes Verto clients and the router commonly use (values from FreeSWITCH
// switch_types.h, see verto.md §6).
var (
	CauseNormalClearing          = Cause{16, "NORMAL_CLEARING"}
	CauseUserBusy                = Cause{17, "USER_BUSY"}
	CauseNoUserResponse          = Cause{18, "NO_USER_RESPONSE"}
	CauseNoAnswer                = Cause{19, "NO_ANSWER"}
	CauseCallRejected            = Cause{21, "CALL_REJECTED"}
	CauseDestinationOutOfOrder   = Cause{27, "DESTINATION_OUT_OF_ORDER"}
	CauseInvalidNumberFormat     = Cause{28, "INVALID_NUMBER_FORMAT"}
	CauseNormalUnspecified       = Cause{31, "NORMAL_UNSPECIFIED"}
	CauseNormalCircuitCongestion = Cause{34, "NORMAL_CIRCUIT_CONGESTION"}
	CauseNormalTemporaryFailure  = Cause{41, "NORMAL_TEMPORARY_FAILURE"}
	CauseBearerCapNotAvail       = Cause{58, "BEARERCAPABILITY_NOTAVAIL"}
	CauseIncompatibleDestination = Cause{88, "INCOMPATIBLE_DESTINATION"}
	CauseInvalidMsgUnspecified   = Cause{95, "INVALID_MSG_UNSPECIFIED"}
	CauseRecoveryOnTimerExpire   = Cause{102, "RECOVERY_ON_TIMER_EXPIRE"}
	CauseUnallocatedNumber       = Cause{1, "UNALLOCATED_NUMBER"}
	CauseNoRouteDestination      = Cause{3, "NO_ROUTE_DESTINATION"}
	CauseOriginatorCancel        = Cause{487, "ORIGINATOR_CANCEL"}
	CauseSystemShutdown          = Cause{701, "SYSTEM_SHUTDOWN"}
	CauseLoseRace                = Cause{702, "LOSE_RACE"}
	CauseManagerRequest          = Cause{703, "MANAGER_REQUEST"}
	CauseUserNotRegistered       = Cause{806, "USER_NOT_REGISTERED"}
	CauseMediaTimeout            = Cause{804, "MEDIA_TIMEOUT"}
)

// knownCauses returns the table used to decode client-supplied causes. It is a function, not a
// package variable, so the package keeps no mutable state.
func knownCauses() []Cause {
	return []Cause{
		CauseNormalClearing, CauseUserBusy, CauseNoUserResponse, CauseNoAnswer,
		CauseCallRejected, CauseDestinationOutOfOrder, CauseInvalidNumberFormat,
		CauseNormalUnspecified, CauseNormalCircuitCongestion, CauseNormalTemporaryFailure, CauseBearerCapNotAvail,
		CauseIncompatibleDestination, CauseInvalidMsgUnspecified, CauseRecoveryOnTimerExpire,
		CauseUnallocatedNumber, CauseNoRouteDestination, CauseOriginatorCancel,
		CauseSystemShutdown, CauseLoseRace, CauseManagerRequest, CauseUserNotRegistered,
		CauseMediaTimeout,
		{0, "NONE"}, {2, "NO_ROUTE_TRANSIT_NET"}, {6, "CHANNEL_UNACCEPTABLE"},
		{20, "SUBSCRIBER_ABSENT"}, {22, "NUMBER_CHANGED"}, {25, "EXCHANGE_ROUTING_ERROR"},
		{38, "NETWORK_OUT_OF_ORDER"}, {42, "SWITCH_CONGESTION"},
		{47, "RESOURCE_UNAVAILABLE"}, {50, "FACILITY_NOT_SUBSCRIBED"}, {57, "BEARERCAPABILITY_NOTAUTH"},
		{65, "BEARERCAPABILITY_NOTIMPL"}, {69, "FACILITY_NOT_IMPLEMENTED"}, {79, "SERVICE_NOT_IMPLEMENTED"},
		{111, "PROTOCOL_ERROR"}, {127, "INTERWORKING"}, {500, "CRASH"},
		{607, "PROGRESS_TIMEOUT"}, {816, "DECLINE"},
	}
}

// CauseByName finds a cause by its FreeSWITCH name (case-insensitive).
func CauseByName(name string) (Cause, bool) {
	for _, c := range knownCauses() {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Cause{}, false
}

// CauseByCode finds a cause by its numeric code.
func CauseByCode(code int) (Cause, bool) {
	for _, c := range knownCauses() {
		if c.Code == code {
			return c, true
		}
	}
	return Cause{}, false
}

func (c Cause) String() string { return c.Name + "(" + strconv.Itoa(c.Code) + ")" }

// causeFromParams reads a client's verto.bye cause: a valid `cause` name wins, then a valid
// `causeCode` (number or numeric string), else NORMAL_CLEARING (verto.md §6).
func causeFromParams(p object) Cause {
	if n := p.str("cause"); n != "" {
		if c, ok := CauseByName(n); ok {
			return c
		}
	}
	if code, ok := p.integer("causeCode"); ok {
		if c, ok := CauseByCode(code); ok {
			return c
		}
	}
	return CauseNormalClearing
}
