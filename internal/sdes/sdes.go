// Package sdes parses and makes SDES keys (RFC 4568): the a=crypto attributes that carry SRTP
// master keys in an SDP. It is shared by the media engine (package media/plainrtp, which
// protects packets with them) and the SIP front end (which checks offers and answers against
// the srtp setting of a trunk or user without depending on the media).
package sdes

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// Crypto suites nkbridge speaks (RFC 4568 §6.2, RFC 7714 §12).
const (
	SuiteAES80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES32 = "AES_CM_128_HMAC_SHA1_32"
	SuiteGCM   = "AEAD_AES_128_GCM"
)

// MaxLines bounds the a=crypto attributes of one stream; more make the SDP invalid.
const MaxLines = 16

// Errors about a=crypto attributes. ErrBad (malformed) makes the whole SDP invalid;
// ErrUnsupported (a suite or parameter we do not speak) only disqualifies that line.
var (
	ErrBad         = errors.New("sdes: bad a=crypto attribute")
	ErrUnsupported = errors.New("sdes: unsupported a=crypto attribute")
	ErrNone        = errors.New("sdes: RTP/SAVP stream without a usable a=crypto attribute")
)

// Crypto is one a=crypto attribute: a suite and the sender's master key and salt.
type Crypto struct {
	Tag   int
	Suite string
	// Key is the master key followed by the master salt.
	Key []byte
	// Lifetime is the key's lifetime in packets (0: not given).
	Lifetime uint64
	// MKI is the master key identifier the sender puts in every packet (nil: none).
	MKI []byte
}

// suiteProfile maps a suite to pion's protection profile and its key||salt length.
func suiteProfile(s string) (srtp.ProtectionProfile, int, bool) {
	var p srtp.ProtectionProfile
	switch s {
	case SuiteAES80:
		p = srtp.ProtectionProfileAes128CmHmacSha1_80
	case SuiteAES32:
		p = srtp.ProtectionProfileAes128CmHmacSha1_32
	case SuiteGCM:
		p = srtp.ProtectionProfileAeadAes128Gcm
	default:
		return 0, 0, false
	}
	k, _ := p.KeyLen()
	n, _ := p.SaltLen()
	return p, k + n, true
}

// Profile returns c's pion protection profile and its master key and salt.
func (c Crypto) Profile() (profile srtp.ProtectionProfile, key, salt []byte, err error) {
	p, n, ok := suiteProfile(c.Suite)
	if !ok {
		return 0, nil, nil, fmt.Errorf("%w: suite %q", ErrUnsupported, c.Suite)
	}
	if len(c.Key) != n {
		return 0, nil, nil, fmt.Errorf("%w: %s key of %d bytes, want %d", ErrBad, c.Suite, len(c.Key), n)
	}
	k, _ := p.KeyLen()
	return p, c.Key[:k], c.Key[k:], nil
}

// New returns an attribute with tag and suite and a fresh random key.
func New(tag int, suite string) (Crypto, error) {
	_, n, ok := suiteProfile(suite)
	if !ok {
		return Crypto{}, fmt.Errorf("%w: suite %q", ErrUnsupported, suite)
	}
	key := make([]byte, n)
	if _, err := rand.Read(key); err != nil {
		return Crypto{}, err
	}
	return Crypto{Tag: tag, Suite: suite, Key: key}, nil
}

// String is the attribute's value (what follows "a=crypto:").
func (c Crypto) String() string {
	s := strconv.Itoa(c.Tag) + " " + c.Suite + " inline:" + base64.StdEncoding.EncodeToString(c.Key)
	if c.Lifetime > 0 {
		s += "|" + strconv.FormatUint(c.Lifetime, 10)
	}
	if len(c.MKI) > 0 {
		var v uint64
		for _, b := range c.MKI {
			v = v<<8 | uint64(b)
		}
		s += "|" + strconv.FormatUint(v, 10) + ":" + strconv.Itoa(len(c.MKI))
	}
	return s
}

// Parse parses the value of an a=crypto attribute ("1 AES_CM_128_HMAC_SHA1_80
// inline:KEY[|lifetime][|MKI:length] [session parameters]"). A malformed one is ErrBad;
// one that is well formed but asks for what nkbridge does not do (another suite, several
// keys, unencrypted or unauthenticated SRTP, a key derivation rate, an MKI over 4 bytes) is
// ErrUnsupported.
func Parse(v string) (Crypto, error) {
	bad := func(why string, a ...any) (Crypto, error) {
		return Crypto{}, fmt.Errorf("%w: %s", ErrBad, fmt.Sprintf(why, a...))
	}
	unsup := func(why string, a ...any) (Crypto, error) {
		return Crypto{}, fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(why, a...))
	}
	if len(v) > 1024 {
		return bad("%d bytes", len(v))
	}
	f := strings.Fields(v)
	if len(f) < 3 {
		return bad("want \"tag suite inline:key\"")
	}
	if len(f[0]) > 9 || !allDigits(f[0]) {
		return bad("tag %q", clip(f[0]))
	}
	tag, _ := strconv.Atoi(f[0])
	c := Crypto{Tag: tag, Suite: f[1]}
	_, keyLen, known := suiteProfile(c.Suite)
	if strings.Contains(f[2], ";") {
		if !known {
			return unsup("suite %q", clip(c.Suite))
		}
		return unsup("several keys in one attribute")
	}
	method, params, ok := strings.Cut(f[2], ":")
	if !ok || method != "inline" {
		return bad("key method %q (want inline)", clip(method))
	}
	parts := strings.Split(params, "|")
	if len(parts) > 3 {
		return bad("key parameters %q", clip(params))
	}
	key, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		if key, err = base64.RawStdEncoding.DecodeString(parts[0]); err != nil {
			return bad("key is not base64")
		}
	}
	for _, p := range parts[1:] {
		if mv, ml, isMKI := strings.Cut(p, ":"); isMKI {
			if c.MKI != nil {
				return bad("two MKIs")
			}
			if !allDigits(mv) || !allDigits(ml) || len(mv) > 20 || len(ml) > 3 {
				return bad("MKI %q", clip(p))
			}
			n, _ := strconv.Atoi(ml)
			val, err := strconv.ParseUint(mv, 10, 64)
			if err != nil || n < 1 || n > 128 {
				return bad("MKI %q", clip(p))
			}
			if n > 4 {
				return unsup("MKI of %d bytes (at most 4)", n)
			}
			if n < 8 && val>>(8*uint(n)) != 0 {
				return bad("MKI value %d does not fit in %d bytes", val, n)
			}
			c.MKI = make([]byte, n)
			for i := n - 1; i >= 0; i-- {
				c.MKI[i] = byte(val)
				val >>= 8
			}
			continue
		}
		if c.Lifetime != 0 || c.MKI != nil {
			return bad("key parameters %q", clip(params))
		}
		lt, err := parseLifetime(p)
		if err != nil {
			return bad("lifetime %q", clip(p))
		}
		c.Lifetime = lt
	}
	for _, sp := range f[3:] {
		name, val, _ := strings.Cut(sp, "=")
		switch name {
		case "KDR":
			if val != "0" {
				return unsup("key derivation rate %q", clip(val))
			}
		case "FEC_ORDER", "FEC_KEY", "WSH":
			// no effect on how we protect or check packets
		case "UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP":
			return unsup("session parameter %s", name)
		default:
			return unsup("session parameter %q", clip(sp))
		}
	}
	if !known {
		return unsup("suite %q", clip(c.Suite))
	}
	if len(key) != keyLen {
		return bad("%s key and salt of %d bytes, want %d", c.Suite, len(key), keyLen)
	}
	c.Key = key
	return c, nil
}

// parseLifetime reads "2^n" (n ≤ 48) or a decimal packet count.
func parseLifetime(s string) (uint64, error) {
	if e, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.Atoi(e)
		if err != nil || !allDigits(e) || n < 1 || n > 48 {
			return 0, errors.New("bad exponent")
		}
		return 1 << uint(n), nil
	}
	if !allDigits(s) || len(s) > 15 {
		return 0, errors.New("bad lifetime")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, errors.New("bad lifetime")
	}
	return n, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// IsSecure reports whether profile is an SRTP profile (RTP/SAVP, RTP/SAVPF).
func IsSecure(profile string) bool { return profile == "RTP/SAVP" || profile == "RTP/SAVPF" }
