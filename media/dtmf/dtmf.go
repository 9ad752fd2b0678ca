// Package dtmf encodes and decodes RFC 4733 telephone-events (DTMF digits carried in RTP),
// detects digits in a received event stream and generates the packet train for sending one.
package dtmf

import (
	"errors"
	"fmt"
)

// PayloadSize is the size of an RFC 4733 event payload.
const PayloadSize = 4

// Event is one RFC 4733 telephone-event payload.
type Event struct {
	Code     uint8  // 0-9, 10 '*', 11 '#', 12-15 A-D, 16 flash
	End      bool   // E bit: last packet(s) of the event
	Volume   uint8  // 0..63, power level in -dBm0
	Duration uint16 // in RTP timestamp units since the event's timestamp
}

// ErrShort is returned for a payload shorter than 4 bytes.
var ErrShort = errors.New("dtmf: telephone-event payload shorter than 4 bytes")

// Parse decodes a telephone-event payload.
func Parse(b []byte) (Event, error) {
	if len(b) < PayloadSize {
		return Event{}, ErrShort
	}
	return Event{
		Code:     b[0],
		End:      b[1]&0x80 != 0,
		Volume:   b[1] & 0x3F,
		Duration: uint16(b[2])<<8 | uint16(b[3]),
	}, nil
}

// Marshal encodes e into a 4-byte payload.
func (e Event) Marshal() []byte {
	b := make([]byte, PayloadSize)
	e.Put(b)
	return b
}

// Put encodes e into b[:4].
func (e Event) Put(b []byte) {
	b[0] = e.Code
	b[1] = e.Volume & 0x3F
	if e.End {
		b[1] |= 0x80
	}
	b[2] = byte(e.Duration >> 8)
	b[3] = byte(e.Duration)
}

// CodeOf returns the event code of a DTMF digit (0-9 * # A-D, case-insensitive).
func CodeOf(digit rune) (uint8, error) {
	switch {
	case digit >= '0' && digit <= '9':
		return uint8(digit - '0'), nil
	case digit == '*':
		return 10, nil
	case digit == '#':
		return 11, nil
	case digit >= 'A' && digit <= 'D':
		return uint8(12 + digit - 'A'), nil
	case digit >= 'a' && digit <= 'd':
		return uint8(12 + digit - 'a'), nil
	}
	return 0, fmt.Errorf("dtmf: %q is not a DTMF digit", digit)
}

// Digit returns the digit of event code c, or 0 when c is not a DTMF digit.
func Digit(c uint8) rune {
	switch {
	case c <= 9:
		return rune('0' + c)
	case c == 10:
		return '*'
	case c == 11:
		return '#'
	case c >= 12 && c <= 15:
		return rune('A' + c - 12)
	}
	return 0
}

// Detector reports each telephone-event once, however many packets (including the three
// redundant end packets) carry it. The zero value is ready to use; it is not safe for
// concurrent use.
type Detector struct {
	seen   bool
	lastTS uint32
}

// Push feeds the payload of one telephone-event packet with RTP timestamp ts. It returns the
// digit and true the first time an event (identified by its timestamp) is seen.
func (d *Detector) Push(ts uint32, payload []byte) (rune, bool) {
	ev, err := Parse(payload)
	if err != nil {
		return 0, false
	}
	if d.seen && ts == d.lastTS {
		return 0, false
	}
	d.seen, d.lastTS = true, ts
	digit := Digit(ev.Code)
	return digit, digit != 0
}

// Packet is one packet of a generated event: its payload and its offset in the packet train.
type Packet struct {
	Payload []byte
	Marker  bool // true on the first packet of the event
	// Send is when (relative to the first packet) to send it, in milliseconds.
	SendMS int
}

// Generate returns the packets that send digit for durationMS milliseconds at clockRate, one
// update every packetMS milliseconds, with the end packet sent three times (RFC 4733 §2.5.1.4).
// Every packet carries the same RTP timestamp (the event start).
func Generate(digit rune, durationMS, packetMS, clockRate int) ([]Packet, error) {
	code, err := CodeOf(digit)
	if err != nil {
		return nil, err
	}
	if durationMS < packetMS || durationMS > 5000 || packetMS <= 0 {
		return nil, fmt.Errorf("dtmf: bad duration %d ms / packet %d ms", durationMS, packetMS)
	}
	var out []Packet
	unit := clockRate / 1000
	for t := packetMS; t < durationMS; t += packetMS {
		ev := Event{Code: code, Volume: 10, Duration: uint16(t * unit)}
		out = append(out, Packet{Payload: ev.Marshal(), Marker: len(out) == 0, SendMS: t - packetMS})
	}
	end := Event{Code: code, Volume: 10, End: true, Duration: uint16(min(durationMS*unit, 0xFFFF))}
	for range 3 {
		out = append(out, Packet{Payload: end.Marshal(), Marker: len(out) == 0, SendMS: durationMS - packetMS})
	}
	return out, nil
}
