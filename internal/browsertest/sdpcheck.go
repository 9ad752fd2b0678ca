package browsertest

import (
	"errors"
	"fmt"
	"strings"
)

// Section is one m= section of an SDP as a WebRTC peer sees it.
type Section struct {
	Kind      string // "audio", "video", "application"
	Port      string
	Direction string // sendrecv, sendonly, recvonly or inactive (the RFC 4566 default applied)
	Streams   []string
	SSRC      bool
}

// Sections splits an SDP into its m= sections (line parsing only, independent of the SDP
// code under test).
func Sections(sdp string) []Section {
	var out []Section
	sessionDir := "sendrecv"
	var cur *Section
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line[2:])
			var s Section
			if len(f) > 1 {
				s.Kind, s.Port = f[0], f[1]
			}
			out = append(out, s)
			cur = &out[len(out)-1]
		case line == "a=sendrecv" || line == "a=sendonly" || line == "a=recvonly" || line == "a=inactive":
			if cur == nil {
				sessionDir = line[2:]
			} else {
				cur.Direction = line[2:]
			}
		case cur != nil && strings.HasPrefix(line, "a=msid:"):
			if f := strings.Fields(line[len("a=msid:"):]); len(f) > 0 {
				cur.Streams = append(cur.Streams, f[0])
			}
		case cur != nil && strings.HasPrefix(line, "a=ssrc:"):
			cur.SSRC = true
		}
	}
	for i := range out {
		if out[i].Direction == "" {
			out[i].Direction = sessionDir
		}
	}
	return out
}

// Direction returns the direction of the first section of kind in sdp ("" when none, "rejected"
// when its port is 0).
func Direction(sdp, kind string) string {
	for _, s := range Sections(sdp) {
		if s.Kind == kind {
			if s.Port == "0" {
				return "rejected"
			}
			return s.Direction
		}
	}
	return ""
}

// CheckSources returns an error when a section of sdp sends (sendrecv or sendonly) without
// naming its source (a=msid and a=ssrc) — Chromium then fires ontrack with no stream — or when
// the sections that do name a stream name different ones (a client keeping one remote stream
// would lose a track).
func CheckSources(sdp string) error {
	var errs []error
	stream := ""
	for i, s := range Sections(sdp) {
		if (s.Kind != "audio" && s.Kind != "video") || s.Port == "0" {
			continue
		}
		sends := s.Direction == "sendrecv" || s.Direction == "sendonly"
		if sends && (len(s.Streams) == 0 || !s.SSRC) {
			errs = append(errs, fmt.Errorf("section %d (%s) is %s without a source (msid %v, ssrc %v)", i, s.Kind, s.Direction, s.Streams, s.SSRC))
		}
		for _, id := range s.Streams {
			if stream == "" {
				stream = id
			} else if id != stream {
				errs = append(errs, fmt.Errorf("section %d (%s) is in stream %q, an earlier one in %q", i, s.Kind, id, stream))
			}
		}
	}
	return errors.Join(errs...)
}
