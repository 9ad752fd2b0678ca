package sdes

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Stream is what an SDP says about SRTP for its audio stream.
type Stream struct {
	// Audio is false when the SDP has no audio stream with a port (nothing else is set then).
	Audio bool
	// Profile is the m=audio line's transport (RTP/AVP, RTP/SAVP, ...).
	Profile string
	// Crypto are the usable attributes, in order.
	Crypto []Crypto
}

// Secure reports whether the stream asks for SRTP (an SRTP profile, or keys in RTP/AVP).
func (s Stream) Secure() bool { return IsSecure(s.Profile) || len(s.Crypto) > 0 }

// Check reads the first audio stream of sdp (with a port other than 0) as the media engine
// does: more than MaxLines a=crypto attributes, a malformed one or a tag used twice is
// ErrBad; an SRTP profile without a usable attribute is ErrNone. Attributes of suites or
// parameters nkbridge does not speak are left out of Crypto.
func Check(sdp []byte) (Stream, error) {
	var st Stream
	in := false
	n := 0
	tags := map[int]bool{}
	for _, line := range lines(sdp) {
		if strings.HasPrefix(line, "m=") {
			if st.Audio {
				break
			}
			f := strings.Fields(line[2:])
			in = len(f) >= 3 && f[0] == "audio" && f[1] != "0"
			if in {
				st.Audio, st.Profile = true, f[2]
			}
			continue
		}
		v, ok := strings.CutPrefix(line, "a=crypto:")
		if !in || !ok {
			continue
		}
		if n++; n > MaxLines {
			return st, fmt.Errorf("%w: more than %d in one stream", ErrBad, MaxLines)
		}
		c, err := Parse(v)
		if err != nil {
			if errors.Is(err, ErrUnsupported) {
				continue
			}
			return st, err
		}
		if tags[c.Tag] {
			return st, fmt.Errorf("%w: tag %d used twice", ErrBad, c.Tag)
		}
		tags[c.Tag] = true
		st.Crypto = append(st.Crypto, c)
	}
	if st.Audio && IsSecure(st.Profile) && len(st.Crypto) == 0 {
		return st, ErrNone
	}
	return st, nil
}

func lines(b []byte) []string {
	out := strings.Split(string(b), "\n")
	for i, l := range out {
		out[i] = strings.TrimRight(l, "\r")
	}
	return out
}

// Strip removes every a=crypto attribute from sdp (best-effort keys a peer must not see when
// SRTP is off for it).
func Strip(sdp []byte) []byte {
	if !bytes.Contains(sdp, []byte("a=crypto:")) {
		return sdp
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(sdp), "\n") {
		if strings.HasPrefix(l, "a=crypto:") {
			continue
		}
		b.WriteString(l)
	}
	return []byte(b.String())
}

// SetProfile rewrites the transport of the audio m= lines of sdp from RTP/AVP (or RTP/AVPF) to
// RTP/SAVP (or RTP/SAVPF), for an offer whose keys the peer must use.
func SetProfile(sdp []byte) []byte {
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(sdp), "\n") {
		if rest, ok := strings.CutPrefix(l, "m=audio "); ok {
			f := strings.SplitN(rest, " ", 3)
			if len(f) == 3 && (f[1] == "RTP/AVP" || f[1] == "RTP/AVPF") {
				l = "m=audio " + f[0] + " RTP/S" + f[1][4:] + " " + f[2]
			}
		}
		b.WriteString(l)
	}
	return []byte(b.String())
}
