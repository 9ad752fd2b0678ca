// Package sdpdir reads and rewrites the media direction of SDP bodies (RFC 3264 §5.1, §8.4):
// what hold/resume re-INVITEs offer and which direction the answer must carry.
package sdpdir

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Direction is an SDP media direction attribute.
type Direction string

// The four SDP directions.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// MaxSDP bounds the bodies this package will look at.
const MaxSDP = 64 * 1024

// ErrInvalid is returned for bodies that are not SDP.
var ErrInvalid = errors.New("sdpdir: not an SDP body")

// Info is what a body says about its (first) audio stream.
type Info struct {
	// Direction of the first audio m= section (media-level attribute, else session-level,
	// else sendrecv).
	Direction Direction
	// NullAddr is true when the effective connection address is 0.0.0.0 (RFC 2543 hold).
	NullAddr bool
	// Addr and Port of the first audio stream (Port 0 = stream rejected).
	Addr string
	Port int
	// HasAudio is false when no m=audio line exists.
	HasAudio bool
}

// OnHold reports whether the offer puts the receiver on hold (sendonly, inactive or c=0.0.0.0).
func (i Info) OnHold() bool {
	return i.Direction == SendOnly || i.Direction == Inactive || i.NullAddr
}

func lines(b []byte) []string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return strings.Split(s, "\n")
}

func parseDir(l string) (Direction, bool) {
	switch strings.TrimSpace(l) {
	case "a=sendrecv":
		return SendRecv, true
	case "a=sendonly":
		return SendOnly, true
	case "a=recvonly":
		return RecvOnly, true
	case "a=inactive":
		return Inactive, true
	}
	return "", false
}

func connAddr(l string) string {
	// c=IN IP4 addr[/ttl]
	f := strings.Fields(strings.TrimPrefix(l, "c="))
	if len(f) < 3 {
		return ""
	}
	a, _, _ := strings.Cut(f[2], "/")
	return a
}

// Parse reads the direction information of the first audio stream of sdp.
func Parse(sdp []byte) (Info, error) {
	if len(sdp) == 0 || len(sdp) > MaxSDP || !bytes.HasPrefix(bytes.TrimLeft(sdp, " \r\n"), []byte("v=")) {
		return Info{}, ErrInvalid
	}
	var (
		sessDir, mediaDir Direction
		sessConn, medConn string
		inAudio, done     bool
		info              Info
	)
	section := 0 // 0 session, 1 audio (first), 2 other media
	for _, l := range lines(sdp) {
		l = strings.TrimRight(l, " ")
		if strings.HasPrefix(l, "m=") {
			if inAudio {
				done = true
			}
			inAudio = false
			section = 2
			if !done && !info.HasAudio && strings.HasPrefix(l, "m=audio ") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					p, _, _ := strings.Cut(f[1], "/")
					info.Port, _ = strconv.Atoi(p)
				}
				info.HasAudio, inAudio, section = true, true, 1
			}
			continue
		}
		switch section {
		case 0:
			if d, ok := parseDir(l); ok {
				sessDir = d
			} else if strings.HasPrefix(l, "c=") {
				sessConn = connAddr(l)
			}
		case 1:
			if d, ok := parseDir(l); ok {
				mediaDir = d
			} else if strings.HasPrefix(l, "c=") {
				medConn = connAddr(l)
			}
		}
	}
	info.Direction = SendRecv
	if sessDir != "" {
		info.Direction = sessDir
	}
	if mediaDir != "" {
		info.Direction = mediaDir
	}
	info.Addr = sessConn
	if medConn != "" {
		info.Addr = medConn
	}
	info.NullAddr = info.Addr == "0.0.0.0"
	return info, nil
}

// Answer returns the direction an answer must carry for an offer with direction d when the
// answerer itself wants to send and receive (RFC 3264 §6.1).
func Answer(d Direction) Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

// AnswerFor is Answer applied to a parsed offer: c=0.0.0.0 hold is answered recvonly.
func AnswerFor(offer Info) Direction {
	if offer.NullAddr && offer.Direction == SendRecv {
		return RecvOnly
	}
	return Answer(offer.Direction)
}

// Set returns sdp with every audio stream's direction set to d: existing direction attributes
// (session and media level) are removed and a=d is added at the end of each audio section.
func Set(sdp []byte, d Direction) ([]byte, error) {
	if _, err := Parse(sdp); err != nil {
		return nil, err
	}
	var out strings.Builder
	inAudio := false
	flush := func() {
		if inAudio {
			out.WriteString("a=" + string(d) + "\r\n")
		}
	}
	for _, l := range lines(sdp) {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "m=") {
			flush()
			inAudio = strings.HasPrefix(l, "m=audio ")
		}
		if _, ok := parseDir(l); ok {
			continue
		}
		out.WriteString(l + "\r\n")
	}
	flush()
	return []byte(out.String()), nil
}

// BumpVersion returns sdp with the o= line's session version incremented, as required for a
// changed re-offer (RFC 3264 §8). Bodies without a usable o= line are returned unchanged.
func BumpVersion(sdp []byte) []byte {
	ls := lines(sdp)
	for i, l := range ls {
		if !strings.HasPrefix(l, "o=") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 6 {
			break
		}
		v, err := strconv.ParseUint(f[2], 10, 63)
		if err != nil {
			break
		}
		f[2] = strconv.FormatUint(v+1, 10)
		ls[i] = strings.Join(f, " ")
		break
	}
	var out strings.Builder
	for _, l := range ls {
		if l == "" {
			continue
		}
		out.WriteString(l + "\r\n")
	}
	return []byte(out.String())
}
