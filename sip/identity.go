package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Caller identity (RFC 3325 P-Asserted-Identity, draft Remote-Party-ID, RFC 3323 Privacy).
//
// Inbound, an asserted identity is believed only from a trunk (its networks, or the registrar
// of one of our registrations): it becomes CallInfo.CallerID / CallerName instead of the From
// header's; with "Privacy: id" the caller is anonymous. Outbound through a trunk, the trunk's
// FromUser replaces the From user, AssertIdentity sends the caller's identity in
// P-Asserted-Identity, and Privacy "id" adds "Privacy: id".

const maxIdentityLen = 64

// parseIdentity reads the first identity of a P-Asserted-Identity or Remote-Party-ID value
// (`"Name" <sip:user@host>`, `<tel:+1555...>`, `sip:user@host`): the user (telephone number or
// SIP user) and the display name. ok is false when there is none that can serve as a caller id.
func parseIdentity(v string) (user, display string, ok bool) {
	if len(v) > 1024 {
		return "", "", false
	}
	v = strings.TrimSpace(v)
	var uri string
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return "", "", false
		}
		uri = v[i+1 : i+j]
		display = strings.TrimSpace(v[:i])
		if len(display) >= 2 && display[0] == '"' && display[len(display)-1] == '"' {
			display = display[1 : len(display)-1]
		} else if strings.ContainsRune(display, '"') {
			return "", "", false
		}
	} else {
		uri, _, _ = strings.Cut(v, ",")
		uri, _, _ = strings.Cut(uri, ";")
		uri = strings.TrimSpace(uri)
	}
	scheme, rest, found := strings.Cut(uri, ":")
	if !found {
		return "", "", false
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips":
		u, _, hasAt := strings.Cut(rest, "@")
		if !hasAt {
			return "", "", false
		}
		user, _, _ = strings.Cut(u, ";")    // user params (;phone-context) are not part of the id
		user, _, _ = strings.Cut(user, ":") // no password
	case "tel":
		user, _, _ = strings.Cut(rest, ";")
	default:
		return "", "", false
	}
	if !validCallerID(user) {
		return "", "", false
	}
	if !validDisplay(display) {
		display = ""
	}
	return user, display, true
}

func validCallerID(s string) bool {
	if s == "" || len(s) > maxIdentityLen {
		return false
	}
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case strings.ContainsRune("+-._*#!~", c):
		default:
			return false
		}
	}
	return true
}

func validDisplay(s string) bool {
	if len(s) > maxIdentityLen {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// privacyID reports whether a request asks for its identity to be withheld (Privacy: id).
func privacyID(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Privacy") {
		for _, p := range strings.FieldsFunc(h.Value(), func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			if strings.EqualFold(p, "id") {
				return true
			}
		}
	}
	return false
}

// callerIdentity is the caller id and name of an inbound INVITE: from a trunk, its asserted
// identity (P-Asserted-Identity, else Remote-Party-ID) when there is one, anonymous with
// Privacy: id; otherwise the From header's.
func callerIdentity(req *sip.Request, fromTrunk bool) (id, name string) {
	from := req.From()
	id, name = from.Address.User, from.DisplayName
	if !fromTrunk {
		return id, name
	}
	for _, hn := range []string{"P-Asserted-Identity", "Remote-Party-ID"} {
		if h := req.GetHeader(hn); h != nil {
			if u, d, ok := parseIdentity(h.Value()); ok {
				id, name = u, d
				break
			}
		}
	}
	if privacyID(req) {
		return "anonymous", "Anonymous"
	}
	return id, name
}

// identityHeaders are the headers a call through trunk t carries about its caller (user,
// display): P-Asserted-Identity with AssertIdentity, Privacy: id with Privacy "id".
func (s *Server) identityHeaders(t *trunk, user, display string) []sip.Header {
	var hs []sip.Header
	if t.AssertIdentity && validCallerID(user) {
		pai := "<sip:" + user + "@" + s.cfg.Domain + ">"
		if display != "" && validDisplay(display) {
			pai = `"` + display + `" ` + pai
		}
		hs = append(hs, sip.NewHeader("P-Asserted-Identity", pai))
	}
	if t.Privacy == "id" {
		hs = append(hs, sip.NewHeader("Privacy", "id"))
	}
	return hs
}
