package sip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nkbridge/nkbridge/internal/sdes"
)

// SRTP with SDES keys (RFC 4568) is negotiated by the media behind the call; this file holds
// the policy of each trunk and SIP user (Trunk.SRTP, User.SRTP) and checks every SDP a call
// exchanges against it. The keys travel in the SDP, so SRTP belongs with SIP over TLS.

// SRTP modes of a trunk or user.
const (
	// SRTPOff (the default): plain RTP. An RTP/SAVP offer is refused with 488; keys offered in
	// RTP/AVP (best effort) are removed, as are the media's own best-effort keys.
	SRTPOff = "off"
	// SRTPOptional: offers go out as the media makes them (RTP/AVP with keys when it offers
	// SDES: media.Config.SDESOffers), plain and SRTP offers are accepted.
	SRTPOptional = "optional"
	// SRTPMandatory: offers go out as RTP/SAVP (a media offer without keys fails the call);
	// an offer or answer without a usable key is refused with 488 (inbound) or hung up
	// (outbound answers).
	SRTPMandatory = "mandatory"
)

// ValidSRTP reports whether m is an SRTP mode ("" is off).
func ValidSRTP(m string) bool {
	switch m {
	case "", SRTPOff, SRTPOptional, SRTPMandatory:
		return true
	}
	return false
}

// SRTPUserStore is optionally implemented by a UserStore: the SRTP mode of a user's calls
// (its INVITEs, and calls to its registered devices). Without it users are SRTPOff.
type SRTPUserStore interface {
	SRTP(user string) string
}

func (u configUsers) SRTP(name string) string { return u[strings.ToLower(name)].SRTP }

// srtpPolicy is the SRTP mode of one call and the setting it comes from.
type srtpPolicy struct {
	mode    string
	setting string // sip.trunks[].srtp or sip.users[].srtp, for refusals
}

func (s *Server) userSRTP(user string) srtpPolicy {
	p := srtpPolicy{mode: SRTPOff, setting: "sip.users[].srtp"}
	if st, ok := s.users.(SRTPUserStore); ok && user != "" {
		if m := st.SRTP(user); m != "" {
			p.mode = m
		}
	}
	return p
}

func trunkSRTP(t *trunk) srtpPolicy {
	p := srtpPolicy{mode: SRTPOff, setting: "sip.trunks[].srtp"}
	if t.SRTP != "" {
		p.mode = t.SRTP
	}
	return p
}

// errSRTP is a refusal of an SDP by the SRTP policy; its text is the SIP reason.
type errSRTP struct{ reason string }

func (e *errSRTP) Error() string { return e.reason }

func srtpRefusal(format string, a ...any) error {
	return &errSRTP{reason: "Not Acceptable Here (" + fmt.Sprintf(format, a...) + ")"}
}

// peerSDP checks an SDP the peer sent (an offer, or an answer to our offer) and returns it as
// the media should see it: without keys when SRTP is off. Malformed keys, an SRTP profile
// without a usable key, SRTP where it is off, or plain RTP where it is mandatory are refused.
func (p srtpPolicy) peerSDP(sdp []byte) ([]byte, error) {
	st, err := sdes.Check(sdp)
	switch {
	case errors.Is(err, sdes.ErrNone):
		return nil, srtpRefusal("RTP/SAVP without a usable a=crypto key: suites AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM")
	case err != nil:
		return nil, srtpRefusal("%v", strings.TrimPrefix(err.Error(), "sdes: "))
	case !st.Audio:
		return sdp, nil // the SDP's own checks refuse it
	}
	switch p.mode {
	case SRTPMandatory:
		if len(st.Crypto) == 0 {
			return nil, srtpRefusal("SRTP is required: %s is mandatory", p.setting)
		}
	case SRTPOptional:
	default:
		if sdes.IsSecure(st.Profile) {
			return nil, srtpRefusal("SRTP is not enabled: %s is off", p.setting)
		}
		return sdes.Strip(sdp), nil
	}
	return sdp, nil
}

// ourOffer turns an offer of the media into what the peer gets: no keys when SRTP is off,
// RTP/SAVP when it is mandatory (which needs keys in the offer).
func (p srtpPolicy) ourOffer(sdp []byte) ([]byte, error) {
	switch p.mode {
	case SRTPMandatory:
		st, err := sdes.Check(sdp)
		if err != nil {
			return nil, fmt.Errorf("sip: SRTP offer: %w", err)
		}
		if st.Audio && len(st.Crypto) == 0 {
			return nil, fmt.Errorf("sip: %s is mandatory but the media's offer has no SDES keys (a=crypto)", p.setting)
		}
		return sdes.SetProfile(sdp), nil
	case SRTPOptional:
		return sdp, nil
	}
	st, _ := sdes.Check(sdp)
	if sdes.IsSecure(st.Profile) {
		return sdp, nil // someone else's SRTP offer, passed on as it is
	}
	return sdes.Strip(sdp), nil
}

// checkAnswerSRTP checks the SDP answer of an answered outbound call against its SRTP mode
// (and removes keys where SRTP is off); a refusal is a 488 *StatusError, the call is to be
// hung up.
func (c *Call) checkAnswerSRTP() error {
	c.mu.Lock()
	ans := c.remoteSDP
	c.mu.Unlock()
	if len(ans) == 0 {
		return nil
	}
	a, err := c.srtp.peerSDP(ans)
	if err != nil {
		c.s.log.Info("sip answer refused by its SRTP keys, hanging up", "sip_call_id", c.callID, "why", err.Error())
		return &StatusError{Code: 488, Reason: err.Error()}
	}
	c.mu.Lock()
	c.remoteSDP = a
	c.mu.Unlock()
	return nil
}
