package sip

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

var (
	errDTMFType = errors.New("sip: unsupported DTMF content type")
	errDTMFBody = errors.New("sip: malformed DTMF body")
)

const maxDTMFBody = 512

func validDigit(d rune) bool {
	return d >= '0' && d <= '9' || d == '*' || d == '#' || d >= 'A' && d <= 'D'
}

func normDigit(s string) (rune, bool) {
	s = strings.TrimSpace(s)
	switch s {
	case "10":
		return '*', true
	case "11":
		return '#', true
	case "12", "13", "14", "15":
		return rune('A' + (s[1] - '2')), true
	}
	if len(s) != 1 {
		return 0, false
	}
	d := rune(strings.ToUpper(s)[0])
	return d, validDigit(d)
}

// ParseDTMF decodes a SIP INFO DTMF body: application/dtmf-relay ("Signal=5\r\nDuration=160")
// or application/dtmf (the digit alone).
func ParseDTMF(contentType string, body []byte) (DTMF, error) {
	ct, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(contentType)), ";")
	ct = strings.TrimSpace(ct)
	if len(body) > maxDTMFBody {
		return DTMF{}, errDTMFBody
	}
	switch ct {
	case "application/dtmf-relay":
		var d DTMF
		d.Method = "info"
		d.Duration = 160 * time.Millisecond
		found := false
		for _, line := range strings.Split(strings.ReplaceAll(string(body), "\r", ""), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "signal":
				r, ok := normDigit(v)
				if !ok {
					return DTMF{}, errDTMFBody
				}
				d.Digit, found = r, true
			case "duration":
				ms, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || ms < 0 || ms > 60000 {
					return DTMF{}, errDTMFBody
				}
				if ms > 0 {
					d.Duration = time.Duration(ms) * time.Millisecond
				}
			}
		}
		if !found {
			return DTMF{}, errDTMFBody
		}
		return d, nil
	case "application/dtmf":
		r, ok := normDigit(string(body))
		if !ok {
			return DTMF{}, errDTMFBody
		}
		return DTMF{Digit: r, Duration: 160 * time.Millisecond, Method: "info"}, nil
	}
	return DTMF{}, errDTMFType
}
