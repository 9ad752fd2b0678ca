package plainrtp

import (
	"fmt"

	"github.com/nkbridge/nkbridge/internal/sdes"
)

// SDES (RFC 4568): SRTP keys exchanged in the SDP, in a=crypto attributes of an RTP/SAVP (or,
// best effort, RTP/AVP) audio stream (parsing in internal/sdes). Meant for SIP over TLS: the
// keys are as safe as the signalling that carries them.

// Crypto is one a=crypto attribute: a suite and the sender's master key and salt.
type Crypto = sdes.Crypto

// Crypto suites nkbridge speaks (RFC 4568 §6.2, RFC 7714 §12).
const (
	SuiteAES80 = sdes.SuiteAES80
	SuiteAES32 = sdes.SuiteAES32
	SuiteGCM   = sdes.SuiteGCM
)

// MaxCryptoLines bounds the a=crypto attributes of one stream; more make the SDP invalid.
const MaxCryptoLines = sdes.MaxLines

// Errors about a=crypto attributes. ErrBadCrypto (malformed) makes the whole SDP invalid;
// ErrCryptoUnsupported (a suite or parameter we do not speak) only disqualifies that line.
var (
	ErrBadCrypto         = sdes.ErrBad
	ErrCryptoUnsupported = sdes.ErrUnsupported
	ErrNoCrypto          = sdes.ErrNone
)

// ParseCrypto parses the value of an a=crypto attribute (sdes.Parse).
func ParseCrypto(v string) (Crypto, error) { return sdes.Parse(v) }

// NewCrypto returns an attribute with tag and suite and a fresh random key.
func NewCrypto(tag int, suite string) (Crypto, error) { return sdes.New(tag, suite) }

// IsSecure reports whether profile is an SRTP profile (RTP/SAVP, RTP/SAVPF).
func IsSecure(profile string) bool { return sdes.IsSecure(profile) }

// AddSDES adds a=crypto attributes with fresh keys, one per suite nkbridge speaks, to an offer
// (best-effort SRTP while its profile stays RTP/AVP; a SIP trunk that requires SRTP turns it
// into RTP/SAVP).
func (d *Description) AddSDES() error {
	d.Crypto = d.Crypto[:0]
	for i, s := range []string{SuiteAES80, SuiteAES32, SuiteGCM} {
		c, err := NewCrypto(i+1, s)
		if err != nil {
			return err
		}
		d.Crypto = append(d.Crypto, c)
	}
	return nil
}

// SRTPKeys returns the keys of a negotiated stream: tx protects what we send (from our own
// description), rx checks what the peer sends (from its description). Both nil: plain RTP.
// The answer carries one attribute, whose tag picks the offer's. An SRTP offer (RTP/SAVP)
// answered without a usable attribute, or an answer naming a tag or suite the offer does not
// have, is an error.
func SRTPKeys(offer, answer *Description, localIsOffer bool) (tx, rx *Crypto, err error) {
	if len(answer.Crypto) == 0 {
		if IsSecure(offer.Profile) || IsSecure(answer.Profile) {
			return nil, nil, ErrNoCrypto
		}
		return nil, nil, nil
	}
	a := answer.Crypto[0]
	for i := range offer.Crypto {
		o := offer.Crypto[i]
		if o.Tag != a.Tag {
			continue
		}
		if o.Suite != a.Suite {
			return nil, nil, fmt.Errorf("%w: answer's tag %d is %s, the offer's is %s", ErrBadCrypto, a.Tag, a.Suite, o.Suite)
		}
		if localIsOffer {
			return &o, &a, nil
		}
		return &a, &o, nil
	}
	return nil, nil, fmt.Errorf("%w: answer's tag %d is not in the offer", ErrBadCrypto, a.Tag)
}
