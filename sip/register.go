package sip

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/nkbridge/nkbridge/sip/registrar"
)

// maxContacts bounds the Contact values accepted in one REGISTER.
const maxContactsPerRequest = 16

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	outcome := "failed"
	defer func() { s.obs.Register(outcome) }()
	if !s.admit(req, tx) {
		return
	}
	if !strings.EqualFold(req.Recipient.Host, s.cfg.Domain) && !strings.EqualFold(req.Recipient.Host, s.cfg.ExternalHost) {
		s.respond(req, tx, 404, "Not Found (domain)")
		return
	}
	user, ok := s.authenticate(req, tx)
	if !ok {
		outcome = "unauthorized"
		return
	}
	to := req.To()
	if !strings.EqualFold(to.Address.User, user) {
		s.respond(req, tx, 403, "Forbidden (AOR is not the authenticated user)")
		return
	}
	u, err := registerUpdate(req)
	if err != nil {
		s.respond(req, tx, 400, err.Error())
		return
	}
	u.AOR = user
	if len(u.Contacts) == 0 && !u.Wildcard {
		outcome = "ok" // a query of the bindings
		s.replyBindings(req, tx, s.reg.Lookup(user))
		return
	}
	bs, err := s.reg.Apply(u)
	var tooBrief *registrar.IntervalTooBriefError
	switch {
	case errors.As(err, &tooBrief):
		s.respond(req, tx, 423, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(tooBrief.Min/time.Second))))
		return
	case errors.Is(err, registrar.ErrWildcard):
		s.respond(req, tx, 400, "Invalid Wildcard")
		return
	case errors.Is(err, registrar.ErrOutOfOrder):
		s.respond(req, tx, 500, "Out Of Order")
		return
	case errors.Is(err, registrar.ErrTooManyBinds):
		s.respond(req, tx, 403, "Too Many Contacts")
		return
	case errors.Is(err, registrar.ErrSourceBinds):
		s.log.Warn("sip register refused: too many bindings from this address", "user", user, "src", req.Source(),
			"setting", "sip.max_registrations_per_source")
		s.respond(req, tx, 403, "Forbidden (too many registrations from this address: sip.max_registrations_per_source)")
		return
	case err != nil:
		s.respond(req, tx, 500, "Server Internal Error")
		return
	}
	s.log.Info("sip register", "user", user, "contacts", len(bs), "src", req.Source(), "sip_call_id", u.CallID)
	outcome = "ok"
	if len(bs) == 0 {
		outcome = "unregistered"
	}
	s.replyBindings(req, tx, bs)
}

func (s *Server) replyBindings(req *sip.Request, tx sip.ServerTransaction, bs []registrar.Binding) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	now := time.Now()
	for _, b := range bs {
		secs := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		res.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d", b.Contact, max(secs, 0))))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("register respond failed", "err", err)
	}
}

// badRequest is why a REGISTER is refused with 400: its text is the response's reason phrase.
type badRequest string

func (b badRequest) Error() string { return string(b) }

// registerUpdate extracts the registrar update from a REGISTER.
func registerUpdate(req *sip.Request) (registrar.Update, error) {
	u := registrar.Update{
		Expires:   -1,
		CallID:    req.CallID().Value(),
		CSeq:      req.CSeq().SeqNo,
		Source:    req.Source(),
		Transport: strings.ToLower(req.Transport()),
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		u.UserAgent = truncate(h.Value(), 128)
	}
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return u, badRequest("Bad Expires")
		}
		u.Expires = int(min(n, 1<<31-1))
	}
	hs := req.GetHeaders("Contact")
	for _, h := range hs {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return u, badRequest("Bad Contact")
		}
		{
			c := ch
			if c.Address.Wildcard || c.Address.Host == "*" {
				if len(hs) != 1 {
					return u, badRequest("Invalid Wildcard")
				}
				u.Wildcard = true
				continue
			}
			if len(u.Contacts) >= maxContactsPerRequest {
				return u, badRequest("Too Many Contacts")
			}
			if c.Address.Host == "" || (c.Address.Scheme != "sip" && c.Address.Scheme != "sips" && c.Address.Scheme != "") {
				return u, badRequest("Bad Contact URI")
			}
			cu := registrar.ContactUpdate{Contact: contactKey(&c.Address), Expires: -1, Q: 1}
			if v, ok := c.Params.Get("expires"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				if err != nil {
					return u, badRequest("Bad Contact Expires")
				}
				cu.Expires = int(min(n, 1<<31-1))
			}
			if v, ok := c.Params.Get("q"); ok {
				q, err := strconv.ParseFloat(v, 64)
				if err != nil || q < 0 || q > 1 {
					return u, badRequest("Bad Contact q")
				}
				cu.Q = q
			}
			if v, ok := c.Params.Get("+sip.instance"); ok {
				cu.InstanceID = truncate(strings.Trim(v, `"<>`), 128)
			}
			u.Contacts = append(u.Contacts, cu)
		}
	}
	if u.Wildcard && u.Expires != 0 {
		return u, badRequest("Invalid Wildcard")
	}
	return u, nil
}

// contactKey is the canonical text of a contact URI used as binding identity.
func contactKey(u *sip.Uri) string {
	c := u.Clone()
	if c.Scheme == "" {
		c.Scheme = "sip"
	}
	c.Headers = nil
	return c.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
