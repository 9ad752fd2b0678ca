package fakefs

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// raw is a byte-level client for checking exactly what the fake writes.
type raw struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *raw {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	return &raw{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := r.nc.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares.
func (r *raw) expect(want string) {
	r.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r.br, got); err != nil {
		r.t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		r.t.Fatalf("bytes differ:\n got %q\nwant %q", got, want)
	}
}

// frame reads one frame (headers + Content-Length body) and returns headers text and body.
func (r *raw) frame() (string, string) {
	r.t.Helper()
	var head strings.Builder
	n := 0
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("frame: %v", err)
		}
		if line == "\n" {
			break
		}
		head.WriteString(line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.br, body); err != nil {
		r.t.Fatal(err)
	}
	return head.String(), string(body)
}

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Options{Password: "s3cret-ESL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestWireBytes(t *testing.T) {
	s := start(t)
	r := dialRaw(t, s)
	r.expect("Content-Type: auth/request\n\n")
	r.send("api status\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: -ERR command not found\n\n")
	r.send("auth s3cret-ESL\r\n\r\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK accepted\n\n")

	r.send("api nosuch arg\n\n")
	r.expect("Content-Type: api/response\nContent-Length: 31\n\n-ERR nosuch Command not found!\n")
	status := s.apis["status"]("")
	r.send("api status\n\n")
	r.expect("Content-Type: api/response\nContent-Length: " + strconv.Itoa(len(status)) + "\n\n" + status)

	r.send("event plain\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: -ERR no keywords supplied\n\n")
	r.send("event plain CHANNEL_PARK BACKGROUND_JOB CUSTOM conference::maintenance\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")

	// bgapi with our Job-UUID: immediate reply, then BACKGROUND_JOB with inner body.
	job := "5d3c7f4a-9b1e-4c2d-8e6f-0a1b2c3d4e5f"
	s.HandleAPI("originate", func(args string) string { return "+OK 2f0c5c4e-1111-4222-8333-944455556666\n" })
	r.send("bgapi originate {origination_uuid=x}sofia/gateway/gw/1000 &park()\nJob-UUID: " + job + "\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK Job-UUID: " + job + "\nJob-UUID: " + job + "\n\n")
	head, body := r.frame()
	if head != "Content-Length: "+strconv.Itoa(len(body))+"\nContent-Type: text/event-plain\n" {
		t.Fatalf("event head %q", head)
	}
	for _, want := range []string{"Event-Name: BACKGROUND_JOB\n", "Job-UUID: " + job + "\n", "Job-Command: originate\n",
		"Job-Command-Arg: %7Borigination_uuid%3Dx%7Dsofia/gateway/gw/1000%20%26park()\n",
		"\nContent-Length: 41\n\n+OK 2f0c5c4e-1111-4222-8333-944455556666\n"} {
		if !strings.Contains(body, want) {
			t.Fatalf("BACKGROUND_JOB body lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasSuffix(body, "\n\n+OK 2f0c5c4e-1111-4222-8333-944455556666\n") {
		t.Fatalf("body does not end with the job output: %q", body)
	}

	// Channel events: percent-encoded values, _undef_ for empty ones, trailing blank line.
	ch, err := s.NewChannel(ChannelSpec{SIPHeaders: map[string]string{SessionHeader: "sess 1"}, Vars: map[string]string{"odd": "a b+c:d", "empty": ""}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Execute(ch.UUID, "park", ""); err != nil {
		t.Fatal(err)
	}
	// CHANNEL_CREATE and CHANNEL_EXECUTE are not subscribed: the next frame is the park.
	_, body = r.frame()
	for _, want := range []string{"Event-Name: CHANNEL_PARK\n", "Unique-ID: " + ch.UUID + "\n", "variable_sip_h_X-NKB-Session: sess%201\n",
		"variable_odd: a%20b%2Bc%3Ad\n", "variable_empty: _undef_\n", "Channel-Name: sofia/nkbridge/park%40127.0.0.1\n",
		"Event-Date-GMT: "} {
		if !strings.Contains(body, want) {
			t.Fatalf("CHANNEL_PARK lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasSuffix(body, "\n\n") || strings.Contains(body, "Content-Length") {
		t.Fatalf("no-body event must end with a blank line and carry no Content-Length: %q", body[len(body)-40:])
	}

	// Custom events honour the subclass list.
	s.Fire("CUSTOM", "sofia::register", nil, "")
	s.Fire("CUSTOM", "conference::maintenance", []Header{{"Action", "start-talking"}}, "")
	_, body = r.frame()
	if !strings.HasPrefix(body, "Event-Subclass: conference%3A%3Amaintenance\nEvent-Name: CUSTOM\n") {
		t.Fatalf("custom event: %q", body[:80])
	}

	r.send("exit\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK bye\n\n")
	r.expect("Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")
	if _, err := r.br.ReadByte(); err != io.EOF {
		t.Fatalf("after exit: %v, want EOF", err)
	}
	if cmd, err := s.WaitCommand(context.Background(), "bgapi originate"); err != nil || cmd.Header("job-uuid") != job {
		t.Fatalf("recorded %+v %v", cmd, err)
	}
}

func TestWireJSONAndBadAuth(t *testing.T) {
	s := start(t)
	r := dialRaw(t, s)
	r.expect(AuthRequest)
	r.send("auth s3cret-ESL\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	r.send("event json CHANNEL_HANGUP_COMPLETE\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n")
	ch, _ := s.NewChannel(ChannelSpec{Vars: map[string]string{"q": "say \"hi\"\n/é", "codecs": "ARRAY::PCMU|:PCMA"}})
	s.apiKill(ch.UUID + " USER_BUSY")
	head, body := r.frame()
	if !strings.HasSuffix(head, "Content-Type: text/event-json\n") {
		t.Fatalf("head %q", head)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("json: %v: %s", err, body)
	}
	if m["Event-Name"] != "CHANNEL_HANGUP_COMPLETE" || m["Hangup-Cause"] != "USER_BUSY" || m["variable_q"] != "say \"hi\"\n/é" {
		t.Fatalf("json event %v", m)
	}
	if a, ok := m["variable_codecs"].([]any); !ok || len(a) != 2 {
		t.Fatalf("array header %v", m["variable_codecs"])
	}
	if !strings.Contains(body, `"variable_q":"say \"hi\"\n/é"`) {
		t.Fatalf("cJSON escaping: %s", body)
	}

	bad := dialRaw(t, s)
	bad.expect(AuthRequest)
	bad.send("auth ClueCon\n\n")
	bad.expect("Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
	bad.expect("Content-Type: text/disconnect-notice\nContent-Length: 67\n\n" + GoodbyeText)

	s.SetRude(true)
	rude := dialRaw(t, s)
	rude.expect(RudeRejection)
	if _, err := rude.br.ReadByte(); err != io.EOF {
		t.Fatalf("rude: %v", err)
	}
}

func TestURLEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain-text_1.2/x": "plain-text_1.2/x",
		"a b+c:d":          "a%20b%2Bc%3Ad",
		"100%":             "100%25",
		"%41 already":      "%41%20already", // existing upper-case escape left alone
		"%4a":              "%254a",         // lower-case hex is not an escape for FS
		"é\r\n":            "%C3%A9%0D%0A",
		"{x=y}@[h]|`^\\\"": "%7Bx%3Dy%7D%40%5Bh%5D%7C%60%5E%5C%22",
	} {
		if got := URLEncode(in); got != want {
			t.Errorf("URLEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteAndHangupHook(t *testing.T) {
	s := start(t)
	type hung struct{ id, cause string }
	hangups := make(chan hung, 4)
	s.OnHangup(func(ch Channel, cause string) { hangups <- hung{ch.UUID, cause} })
	if _, err := s.Route(INVITE{RequestUser: "park", Headers: map[string]string{"X-Other": "1"}}); err != ErrForbidden {
		t.Fatalf("no session header: %v", err)
	}
	if _, err := s.Route(INVITE{RequestUser: "park", Headers: map[string]string{SessionHeader: "a b"}}); err != ErrForbidden {
		t.Fatalf("bad session header: %v", err)
	}
	if n := len(s.Channels()); n != 0 {
		t.Fatalf("%d channels after refused calls", n)
	}
	r := dialRaw(t, s)
	r.expect(AuthRequest)
	r.send("auth s3cret-ESL\n\nevent plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_PARK CHANNEL_HANGUP_COMPLETE\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
	ch, err := s.Route(INVITE{CallID: "c1@127.0.0.1", RequestUser: "park", FromUser: "nkbridge", RemoteAddr: "127.0.0.1",
		Headers: map[string]string{"x-nkb-session": "7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11"}})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Application != "park" || ch.AnswerState != "answered" || ch.Var("sip_h_X-NKB-Session") != "7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11" {
		t.Fatalf("channel %+v", ch)
	}
	for _, want := range []string{"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK"} {
		_, body := r.frame()
		if !strings.HasPrefix(body, "Event-Name: "+want+"\n") || !strings.Contains(body, "variable_sip_call_id: c1%40127.0.0.1\n") {
			t.Fatalf("want %s with sip vars, got %.200q", want, body)
		}
	}
	s.apiKill(ch.UUID + " NORMAL_CLEARING")
	_, body := r.frame()
	if !strings.HasPrefix(body, "Event-Name: CHANNEL_HANGUP_COMPLETE\n") {
		t.Fatalf("got %.80q", body)
	}
	select {
	case h := <-hangups:
		if h.id != ch.UUID || h.cause != "NORMAL_CLEARING" {
			t.Fatalf("hook %+v", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hangup hook not called")
	}
}

func TestHeartbeat(t *testing.T) {
	s, err := Start(Options{Password: "pw", Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := dialRaw(t, s)
	r.expect(AuthRequest)
	r.send("auth pw\n\nevent plain HEARTBEAT\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	r.expect("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
	for i := 0; i < 2; i++ {
		if _, body := r.frame(); !strings.HasPrefix(body, "Event-Name: HEARTBEAT\n") || !strings.Contains(body, "Event-Info: System%20Ready\n") {
			t.Fatalf("heartbeat %.100q", body)
		}
	}
}
