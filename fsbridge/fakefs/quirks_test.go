package fakefs

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// conferenceFrames joins a channel to a room of profile and returns the plain add-member
// event body the fake sent.
func conferenceFrame(t *testing.T, opts Options, profile string) string {
	t.Helper()
	opts.Password = "pw"
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := dialRaw(t, s)
	r.expect(AuthRequest)
	r.send("auth pw\n\nevent plain CUSTOM conference::maintenance\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
	ch, err := s.InboundCall(ChannelSpec{SIPHeaders: map[string]string{SessionHeader: "conf-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Execute(ch.UUID, "conference", "room-1@"+profile); err != nil {
		t.Fatal(err)
	}
	for {
		_, body := r.frame()
		if strings.Contains(body, "\nAction: add-member\n") {
			if !strings.Contains(body, "\nUnique-ID: "+ch.UUID+"\n") || !strings.Contains(body, "\nMember-ID: 1\n") {
				t.Fatalf("add-member without the channel's uuid or member id: %s", body)
			}
			return body
		}
	}
}

// mod_conference puts the member channel's variables in its events only when the
// profile has verbose-events (conference_member_add_event_data); otherwise only the
// basic channel data (Unique-ID, Channel-Name, Caller-*…).
func TestConferenceEventsVerbose(t *testing.T) {
	if b := conferenceFrame(t, Options{}, ConferenceProfile); !strings.Contains(b, "\nvariable_sip_h_X-NKB-Session: conf-1\n") {
		t.Fatalf("verbose-events profile: no channel variables in add-member:\n%s", b)
	}
	for name, c := range map[string]struct {
		opts    Options
		profile string
	}{
		"nkbridge without verbose-events": {Options{NoVerboseEvents: true}, ConferenceProfile},
		"default profile":                 {Options{}, "default"},
	} {
		b := conferenceFrame(t, c.opts, c.profile)
		if strings.Contains(b, "\nvariable_") {
			t.Fatalf("%s: channel variables in add-member:\n%s", name, b)
		}
		if !strings.Contains(b, "\nCaller-Context: nkbridge\n") {
			t.Fatalf("%s: no basic channel data:\n%s", name, b)
		}
	}
}

// "show channels" reads FreeSWITCH's channels table, which the SQL queue writes behind
// the channels: new, moved and hung-up channels show there only after the lag, while
// uuid_exists (the session hash) knows at once.
func TestShowChannelsLag(t *testing.T) {
	const lag = 300 * time.Millisecond
	s, err := Start(Options{ShowChannelsLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows := func() string { return s.apiShow("channels as json") }
	created := time.Now()
	ch, err := s.InboundCall(ChannelSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(); got != "{\"row_count\":0}\n" && time.Since(created) < lag {
		t.Fatalf("a channel %s old is already in show channels: %s", time.Since(created), got)
	}
	if s.apis["uuid_exists"](ch.UUID) != "true" {
		t.Fatal("uuid_exists does not know a live channel")
	}
	peers.WaitFor(t, 5*time.Second, "the channel in show channels", func() bool { return strings.Contains(rows(), `"application":"park"`) })
	if d := time.Since(created); d < lag {
		t.Fatalf("in show channels after %s, lag %s", d, lag)
	}
	moved := time.Now()
	if err := s.Execute(ch.UUID, "echo", ""); err != nil {
		t.Fatal(err)
	}
	if got := rows(); !strings.Contains(got, `"application":"park"`) && time.Since(moved) < lag {
		t.Fatalf("show channels has the new application at once: %s", got)
	}
	if v, _ := s.Channel(ch.UUID); v.Var("current_application") != "echo" {
		t.Fatalf("current_application %q, want echo", v.Var("current_application"))
	}
	peers.WaitFor(t, 5*time.Second, "echo in show channels", func() bool { return strings.Contains(rows(), `"application":"echo"`) })
	if err := s.Hangup(ch.UUID, ""); err != nil {
		t.Fatal(err)
	}
	if s.apis["uuid_exists"](ch.UUID) != "false" {
		t.Fatal("uuid_exists knows a hung-up channel")
	}
	peers.WaitFor(t, 5*time.Second, "the channel gone from show channels", func() bool { return rows() == "{\"row_count\":0}\n" })
}

// switch_core_session_request counts down from sessions-per-second each second and
// refuses once the count reaches 0: limit-1 new sessions a second.
func TestSessionsPerSecond(t *testing.T) {
	s, err := Start(Options{SessionsPerSecond: 5, ShowChannelsLag: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for try := 0; ; try++ {
		// Start right after a second boundary so the burst stays in one window.
		peers.WaitFor(t, 5*time.Second, "a new second", func() bool { return time.Since(s.started)%time.Second < 100*time.Millisecond })
		w := time.Since(s.started) / time.Second
		ok := 0
		var last error
		for i := 0; i < 6; i++ {
			if _, err := s.NewChannel(ChannelSpec{}); err != nil {
				last = err
				break
			}
			ok++
		}
		if time.Since(s.started)/time.Second != w {
			if try < 3 {
				continue // crossed a second boundary: slow machine, try again
			}
			t.Fatal("could not create 5 channels within one second")
		}
		if ok != 4 || !errors.Is(last, ErrSessionRate) {
			t.Fatalf("%d channels accepted in one second (limit 5), then %v; want 4 then ErrSessionRate", ok, last)
		}
		break
	}
	peers.WaitFor(t, 5*time.Second, "the next second", func() bool {
		_, err := s.NewChannel(ChannelSpec{})
		return err == nil
	})
}

// Over the session rate, mod_sofia answers "503 Maximum Calls In Progress". (With
// sessions-per-second 1, FreeSWITCH's countdown refuses every session.)
func TestSIPAgentSessionRate(t *testing.T) {
	fs, a := startSIP(t, Options{SessionsPerSecond: 1})
	if got := sipRaw(t, a, "X-NKB-Session: rate-1\r\n", rawSDP); got != "SIP/2.0 503 Maximum Calls In Progress" {
		t.Fatalf("over the session rate: %q", got)
	}
	if n := len(fs.Channels()); n != 0 {
		t.Fatalf("%d channels after a refused call", n)
	}
}

func TestIgnoreMarkBitParse(t *testing.T) {
	for v, want := range map[string]bool{"IGNORE_MARK_BIT": true, "ignore_mark_bit": true, "SEND_LINEAR_TIMESTAMPS|IGNORE_MARK_BIT": true,
		"": false, "~IGNORE_MARK_BIT": false, "SEND_LINEAR_TIMESTAMPS": false} {
		if got := ignoreMarkBit(v); got != want {
			t.Errorf("rtp_manual_rtp_bugs=%q: IGNORE_MARK_BIT %v, want %v", v, got, want)
		}
	}
}

// In echo, the fake (like FreeSWITCH) discards marked audio packets, unless the channel
// has IGNORE_MARK_BIT; telephone-events are never discarded for their marker.
func TestEchoDiscardsMarkedAudio(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		s, err := Start(Options{ShowChannelsLag: -1})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := s.InboundCall(ChannelSpec{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Execute(ch.UUID, "echo", ""); err != nil {
			t.Fatal(err)
		}
		fsSide, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c := &sipCall{a: &SIPAgent{fs: s, log: s.log}, channel: ch.UUID, conn: fsSide, tePT: 101, ignoreMark: ignore, done: make(chan struct{})}
		read := make(chan struct{})
		go func() { defer close(read); c.readRTP() }()
		sent := map[string]int{}
		for i := 0; i < 30; i++ {
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(160 * i), Marker: i%3 != 0}, Payload: make([]byte, 160)}
			kind := "plain audio"
			switch {
			case i%5 == 0:
				p.PayloadType, p.Payload, kind = 101, []byte{1, 0x80, 0, 160}, "telephone-event"
			case p.Marker:
				kind = "marked audio"
			}
			b, _ := p.Marshal()
			if _, err := peer.WriteToUDP(b, fsSide.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			sent[kind]++
		}
		want := sent["plain audio"] + sent["telephone-event"]
		if ignore {
			want += sent["marked audio"]
		}
		got := 0
		buf := make([]byte, 1500)
		for {
			peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := peer.ReadFromUDP(buf); err != nil {
				break
			}
			got++
		}
		fsSide.Close()
		peer.Close()
		<-read
		s.Close()
		if got != want {
			t.Fatalf("IGNORE_MARK_BIT %v: %d packets echoed of %v, want %d", ignore, got, sent, want)
		}
		if c.flushed != sent["marked audio"] && !ignore {
			t.Fatalf("%d marked packets discarded, want %d", c.flushed, sent["marked audio"])
		}
	}
}
