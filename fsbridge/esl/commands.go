package esl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// APIRunner runs one api command; *Conn and *Client implement it.
type APIRunner interface {
	API(ctx context.Context, cmd string) (string, error)
}

// App is one step of an inline dialplan ("app[:arg]").
type App struct {
	Name string // dialplan application: [a-z0-9_]
	Arg  string // optional; ValidateWord charset (no spaces or commas)
}

func (a App) validate() error {
	if err := validateApp(a.Name); err != nil {
		return err
	}
	if a.Arg != "" {
		return ValidateWord(a.Arg)
	}
	return nil
}

// UUIDTransfer sends "uuid_transfer <uuid> [-both] <app[:arg],…> inline": the channel (and
// with both, its bridged peer) runs the given applications. Every part is validated.
func UUIDTransfer(ctx context.Context, r APIRunner, channel string, both bool, apps ...App) error {
	if err := ValidateUUID(channel); err != nil {
		return err
	}
	if len(apps) == 0 {
		return fmt.Errorf("%w: no application to transfer to", ErrInvalid)
	}
	var b strings.Builder
	b.WriteString("uuid_transfer ")
	b.WriteString(channel)
	if both {
		b.WriteString(" -both")
	}
	b.WriteByte(' ')
	for i, a := range apps {
		if err := a.validate(); err != nil {
			return err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.Name)
		if a.Arg != "" {
			b.WriteByte(':')
			b.WriteString(a.Arg)
		}
	}
	b.WriteString(" inline")
	_, err := r.API(ctx, b.String())
	return err
}

// TransferPark moves a channel to park.
func TransferPark(ctx context.Context, r APIRunner, channel string) error {
	return UUIDTransfer(ctx, r, channel, false, App{Name: "park"})
}

// TransferEcho moves a channel to the echo application.
func TransferEcho(ctx context.Context, r APIRunner, channel string) error {
	return UUIDTransfer(ctx, r, channel, false, App{Name: "echo"})
}

// TransferConference moves a channel into conference room@profile.
func TransferConference(ctx context.Context, r APIRunner, channel, room, profile string) error {
	if err := ValidateName(room); err != nil {
		return err
	}
	if err := ValidateName(profile); err != nil {
		return err
	}
	return UUIDTransfer(ctx, r, channel, false, App{Name: "conference", Arg: room + "@" + profile})
}

// UUIDKill hangs a channel up ("uuid_kill <uuid> [cause]").
func UUIDKill(ctx context.Context, r APIRunner, channel, cause string) error {
	if err := ValidateUUID(channel); err != nil {
		return err
	}
	cmd := "uuid_kill " + channel
	if cause != "" {
		if err := validateCause(cause); err != nil {
			return err
		}
		cmd += " " + cause
	}
	_, err := r.API(ctx, cmd)
	return err
}

// UUIDBridge bridges two channels ("uuid_bridge <a> <b>").
func UUIDBridge(ctx context.Context, r APIRunner, a, b string) error {
	if err := ValidateUUID(a); err != nil {
		return err
	}
	if err := ValidateUUID(b); err != nil {
		return err
	}
	_, err := r.API(ctx, "uuid_bridge "+a+" "+b)
	return err
}

// UUIDGetVar reads a channel variable; ok is false when it is unset ("_undef_").
func UUIDGetVar(ctx context.Context, r APIRunner, channel, name string) (value string, ok bool, err error) {
	if err := ValidateUUID(channel); err != nil {
		return "", false, err
	}
	if err := ValidateHeaderName(name); err != nil {
		return "", false, err
	}
	out, err := r.API(ctx, "uuid_getvar "+channel+" "+name)
	if err != nil {
		return "", false, err
	}
	if out == "_undef_" {
		return "", false, nil
	}
	return out, true, nil
}

// UUIDExists reports whether a channel exists.
func UUIDExists(ctx context.Context, r APIRunner, channel string) (bool, error) {
	if err := ValidateUUID(channel); err != nil {
		return false, err
	}
	out, err := r.API(ctx, "uuid_exists "+channel)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "true", nil
}

// Conference runs "conference <room> <cmd> [args…]" and returns the output. cmd must be
// lower-case letters and '-' (e.g. list, kick, vid-layout); args use ValidateWord.
func Conference(ctx context.Context, r APIRunner, room, cmd string, args ...string) (string, error) {
	if err := ValidateName(room); err != nil {
		return "", err
	}
	if cmd == "" || len(cmd) > 32 || strings.Trim(cmd, "abcdefghijklmnopqrstuvwxyz-_") != "" {
		return "", invalid("conference command", cmd)
	}
	line := "conference " + room + " " + cmd
	for _, a := range args {
		if err := ValidateWord(a); err != nil {
			return "", err
		}
		line += " " + a
	}
	return r.API(ctx, line)
}

// ConferenceLayout sets a conference's video layout ("conference <room> vid-layout <l>").
func ConferenceLayout(ctx context.Context, r APIRunner, room, layout string) error {
	_, err := Conference(ctx, r, room, "vid-layout", layout)
	return err
}

// Channel is one row of "show channels as json" (the channels table). Only the columns
// nkbridge needs are typed; Raw has them all.
type Channel struct {
	UUID            string            `json:"uuid"`
	Direction       string            `json:"direction"`
	Created         string            `json:"created"`
	CreatedEpoch    string            `json:"created_epoch"`
	Name            string            `json:"name"`
	State           string            `json:"state"`
	CIDName         string            `json:"cid_name"`
	CIDNum          string            `json:"cid_num"`
	IPAddr          string            `json:"ip_addr"`
	Dest            string            `json:"dest"`
	Application     string            `json:"application"`
	ApplicationData string            `json:"application_data"`
	Context         string            `json:"context"`
	CallState       string            `json:"callstate"`
	Raw             map[string]string `json:"-"`
}

// ParseChannels parses the output of "show channels as json": {"row_count":N,"rows":[…]};
// "rows" is absent when N is 0.
func ParseChannels(out string) ([]Channel, error) {
	var doc struct {
		RowCount int                 `json:"row_count"`
		Rows     []map[string]string `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("%w: show channels: %v", ErrProtocol, err)
	}
	if doc.RowCount != len(doc.Rows) {
		return nil, fmt.Errorf("%w: show channels: row_count %d but %d rows", ErrProtocol, doc.RowCount, len(doc.Rows))
	}
	chans := make([]Channel, 0, len(doc.Rows))
	for _, row := range doc.Rows {
		c := Channel{
			UUID: row["uuid"], Direction: row["direction"], Created: row["created"], CreatedEpoch: row["created_epoch"],
			Name: row["name"], State: row["state"], CIDName: row["cid_name"], CIDNum: row["cid_num"],
			IPAddr: row["ip_addr"], Dest: row["dest"], Application: row["application"],
			ApplicationData: row["application_data"], Context: row["context"], CallState: row["callstate"], Raw: row,
		}
		if ValidateUUID(c.UUID) != nil {
			return nil, fmt.Errorf("%w: show channels: bad uuid %q", ErrProtocol, clip(c.UUID))
		}
		chans = append(chans, c)
	}
	return chans, nil
}

// ShowChannels runs "show channels as json" and parses it.
func ShowChannels(ctx context.Context, r APIRunner) ([]Channel, error) {
	out, err := r.API(ctx, "show channels as json")
	if err != nil {
		return nil, err
	}
	return ParseChannels(out)
}
