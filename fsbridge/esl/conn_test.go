package esl_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/peers"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const password = "s3cret-ESL"

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startFake starts the fake FreeSWITCH. These tests check the protocol, not FreeSWITCH's
// timing: "show channels" is current (no channels-table lag; fsbridge's tests keep it).
func startFake(t *testing.T) *fakefs.Server {
	t.Helper()
	s, err := fakefs.Start(fakefs.Options{Password: password, ShowChannelsLag: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// events collects events delivered to OnEvent.
type events struct {
	mu  sync.Mutex
	evs []*esl.Event
	ch  chan struct{}
}

func newEvents() *events { return &events{ch: make(chan struct{}, 1)} }

func (e *events) on(ev *esl.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// wait returns the first event matching pred, waiting up to 5 s.
func (e *events) wait(t *testing.T, what string, pred func(*esl.Event) bool) *esl.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.evs {
			if pred(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no event %s", what)
		}
	}
}

func named(name, uuid string) func(*esl.Event) bool {
	return func(ev *esl.Event) bool { return ev.Name() == name && (uuid == "" || ev.UUID() == uuid) }
}

func dial(t *testing.T, s *fakefs.Server, mod func(*esl.Options)) *esl.Conn {
	t.Helper()
	o := esl.Options{Password: password, Logger: logger(t)}
	if mod != nil {
		mod(&o)
	}
	c, err := esl.Dial(context.Background(), s.Addr(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAuth(t *testing.T) {
	s := startFake(t)
	c := dial(t, s, nil)
	if cmd, err := s.WaitCommand(ctx5(t), "auth "); err != nil || cmd.Line != "auth "+password {
		t.Fatalf("auth line %q %v", cmd.Line, err)
	}
	c.Close()

	_, err := esl.Dial(ctx5(t), s.Addr(), esl.Options{Password: "ClueCon"})
	if !errors.Is(err, esl.ErrAuth) || !strings.Contains(err.Error(), "-ERR invalid") {
		t.Fatalf("bad password: %v", err)
	}
	s.SetRude(true)
	_, err = esl.Dial(ctx5(t), s.Addr(), esl.Options{Password: password})
	if !errors.Is(err, esl.ErrRejected) || !strings.Contains(err.Error(), "Access Denied") {
		t.Fatalf("rude: %v", err)
	}
	s.SetRude(false)
	for _, pw := range []string{"", "a\nb", "two words"} {
		if _, err := esl.Dial(ctx5(t), s.Addr(), esl.Options{Password: pw}); !errors.Is(err, esl.ErrInvalid) {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
}

func TestAPI(t *testing.T) {
	s := startFake(t)
	c := dial(t, s, nil)
	out, err := c.API(ctx5(t), "status")
	if err != nil || !strings.Contains(out, "is ready") {
		t.Fatalf("status: %q %v", out, err)
	}
	out, err = c.API(ctx5(t), "nosuch x")
	var ce *esl.CommandError
	if !errors.As(err, &ce) || ce.Reply != "-ERR nosuch Command not found!" || out != "-ERR nosuch Command not found!\n" {
		t.Fatalf("unknown command: %q %v", out, err)
	}
	// -ERR forced by the test.
	s.FailAPI("status", "-ERR system busy\n")
	if _, err := c.API(ctx5(t), "status"); !errors.As(err, &ce) || ce.Reply != "-ERR system busy" {
		t.Fatalf("forced -ERR: %v", err)
	}
	s.FailAPI("status", "")
	if _, err := c.API(ctx5(t), "status"); err != nil {
		t.Fatalf("after clearing: %v", err)
	}
}

// Concurrent commands each get their own reply (FIFO matching), with events interleaved.
func TestFIFOMatching(t *testing.T) {
	s := startFake(t)
	s.HandleAPI("echoarg", func(a string) string { return "+OK " + a + "\n" })
	evs := newEvents()
	c := dial(t, s, func(o *esl.Options) { o.OnEvent = evs.on })
	if err := c.Subscribe(ctx5(t), esl.FormatPlain, "CUSTOM", "fakefs::flood"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	stop := make(chan struct{})
	go func() { // events interleaved with replies
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			default:
				s.Flood(1)
			}
		}
	}()
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out string
			var err error
			if i%2 == 0 {
				out, err = c.API(ctx5(t), fmt.Sprintf("echoarg %d", i))
			} else {
				out, err = c.BgAPI(ctx5(t), fmt.Sprintf("echoarg %d", i))
			}
			if err != nil || out != fmt.Sprintf("+OK %d\n", i) {
				errs <- fmt.Errorf("call %d: %q %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBgAPI(t *testing.T) {
	s := startFake(t)
	s.HandleAPI("originate", func(a string) string { return "+OK 2f0c5c4e-1111-4222-8333-944455556666\n" })
	c := dial(t, s, nil)
	out, err := c.BgAPI(ctx5(t), "originate {origination_uuid=x}loopback/park &park()")
	if err != nil || out != "+OK 2f0c5c4e-1111-4222-8333-944455556666\n" {
		t.Fatalf("bgapi: %q %v", out, err)
	}
	// It subscribed to BACKGROUND_JOB first, and sent its own Job-UUID header.
	if _, err := s.WaitCommand(ctx5(t), "event plain BACKGROUND_JOB"); err != nil {
		t.Fatal(err)
	}
	cmd, _ := s.WaitCommand(ctx5(t), "bgapi originate")
	if esl.ValidateUUID(cmd.Header("Job-UUID")) != nil {
		t.Fatalf("no Job-UUID header: %+v", cmd)
	}
	// -ERR as the job result.
	s.HandleAPI("originate", func(string) string { return "-ERR USER_BUSY\n" })
	var ce *esl.CommandError
	if _, err := c.BgAPI(ctx5(t), "originate x"); !errors.As(err, &ce) || ce.Reply != "-ERR USER_BUSY" {
		t.Fatalf("job -ERR: %v", err)
	}
	// -ERR on the bgapi command itself.
	s.FailCommand("bgapi", "-ERR no permission")
	if _, err := c.BgAPI(ctx5(t), "originate x"); !errors.As(err, &ce) || ce.Reply != "-ERR no permission" {
		t.Fatalf("command -ERR: %v", err)
	}
}

func TestEventsPlainAndJSON(t *testing.T) {
	for _, format := range []esl.Format{esl.FormatPlain, esl.FormatJSON} {
		t.Run(string(format), func(t *testing.T) {
			s := startFake(t)
			evs := newEvents()
			c := dial(t, s, func(o *esl.Options) { o.OnEvent = evs.on })
			if err := c.Subscribe(ctx5(t), format, "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK",
				"CHANNEL_HANGUP_COMPLETE", "CUSTOM", "conference::maintenance"); err != nil {
				t.Fatal(err)
			}
			ch, err := s.InboundCall(fakefs.ChannelSpec{
				SIPHeaders: map[string]string{fakefs.SessionHeader: "7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11"},
				Vars:       map[string]string{"odd": "a b+c:d%", "codecs": "ARRAY::PCMU|:PCMA"},
			})
			if err != nil {
				t.Fatal(err)
			}
			park := evs.wait(t, "park", named("CHANNEL_PARK", ch.UUID))
			if park.Var("sip_h_X-NKB-Session") != "7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11" || park.Var("odd") != "a b+c:d%" {
				t.Fatalf("vars: %q %q", park.Var("sip_h_X-NKB-Session"), park.Var("odd"))
			}
			if a := park.Array("variable_codecs"); len(a) != 2 || a[1] != "PCMA" {
				t.Fatalf("array %q", a)
			}
			evs.wait(t, "create", named("CHANNEL_CREATE", ch.UUID))
			evs.wait(t, "answer", named("CHANNEL_ANSWER", ch.UUID))

			if err := esl.TransferConference(ctx5(t), c, ch.UUID, "room-1", "nkbridge"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.WaitCommand(ctx5(t), "api uuid_transfer "+ch.UUID+" conference:room-1@nkbridge inline"); err != nil {
				t.Fatal(err)
			}
			add := evs.wait(t, "add-member", func(ev *esl.Event) bool {
				return ev.Subclass() == "conference::maintenance" && ev.Get("Action") == "add-member"
			})
			if add.Get("Conference-Name") != "room-1" || add.UUID() != ch.UUID || add.Get("Member-ID") != "1" {
				t.Fatalf("add-member %v", add.Headers)
			}
			s.Talk(ch.UUID, true)
			evs.wait(t, "start-talking", func(ev *esl.Event) bool { return ev.Get("Action") == "start-talking" })
			if err := esl.UUIDKill(ctx5(t), c, ch.UUID, "NORMAL_CLEARING"); err != nil {
				t.Fatal(err)
			}
			evs.wait(t, "del-member", func(ev *esl.Event) bool { return ev.Get("Action") == "del-member" })
			hc := evs.wait(t, "hangup", named("CHANNEL_HANGUP_COMPLETE", ch.UUID))
			if hc.Get("Hangup-Cause") != "NORMAL_CLEARING" {
				t.Fatalf("cause %q", hc.Get("Hangup-Cause"))
			}
			// Not subscribed: CHANNEL_EXECUTE never arrives.
			evs.mu.Lock()
			for _, ev := range evs.evs {
				if ev.Name() == "CHANNEL_EXECUTE" {
					t.Error("unsubscribed CHANNEL_EXECUTE delivered")
				}
			}
			evs.mu.Unlock()
		})
	}
}

func TestSendMsg(t *testing.T) {
	s := startFake(t)
	evs := newEvents()
	c := dial(t, s, func(o *esl.Options) { o.OnEvent = evs.on })
	if err := c.Subscribe(ctx5(t), esl.FormatPlain, "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP_COMPLETE"); err != nil {
		t.Fatal(err)
	}
	ch, _ := s.NewChannel(fakefs.ChannelSpec{})
	appID := "11111111-2222-4333-8444-555555555555"
	arg := "say:it, with spaces\tand\nnewline"
	if err := c.Execute(ctx5(t), ch.UUID, "playback", arg, appID); err != nil {
		t.Fatal(err)
	}
	done := evs.wait(t, "execute complete", func(ev *esl.Event) bool { return ev.Get("Application-UUID") == appID })
	if done.Get("Application") != "playback" || done.Get("Application-Data") != arg {
		t.Fatalf("execute complete: %q %q", done.Get("Application"), done.Get("Application-Data"))
	}
	cmd, _ := s.WaitCommand(ctx5(t), "sendmsg "+ch.UUID)
	if cmd.Header("call-command") != "execute" || cmd.Body != arg || cmd.Header("content-type") != "text/plain" {
		t.Fatalf("sendmsg as received: %+v", cmd)
	}
	if err := c.Hangup(ctx5(t), ch.UUID, "USER_BUSY"); err != nil {
		t.Fatal(err)
	}
	hc := evs.wait(t, "hangup", named("CHANNEL_HANGUP_COMPLETE", ch.UUID))
	if hc.Get("Hangup-Cause") != "USER_BUSY" {
		t.Fatal(hc.Get("Hangup-Cause"))
	}
	var ce *esl.CommandError
	if err := c.Hangup(ctx5(t), ch.UUID, ""); !errors.As(err, &ce) || !strings.HasPrefix(ce.Reply, "-ERR invalid session id") {
		t.Fatalf("gone channel: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	s := startFake(t)
	c := dial(t, s, nil)
	ctx := ctx5(t)
	if chans, err := esl.ShowChannels(ctx, c); err != nil || len(chans) != 0 {
		t.Fatalf("empty: %v %v", chans, err)
	}
	a, _ := s.InboundCall(fakefs.ChannelSpec{SIPHeaders: map[string]string{fakefs.SessionHeader: "s-a"}})
	b, _ := s.InboundCall(fakefs.ChannelSpec{})
	chans, err := esl.ShowChannels(ctx, c)
	if err != nil || len(chans) != 2 || chans[0].UUID != a.UUID || chans[0].Application != "park" || chans[1].State != "CS_EXECUTE" {
		t.Fatalf("show channels: %+v %v", chans, err)
	}
	if v, ok, err := esl.UUIDGetVar(ctx, c, a.UUID, "sip_h_X-NKB-Session"); v != "s-a" || !ok || err != nil {
		t.Fatalf("getvar: %q %v %v", v, ok, err)
	}
	if _, ok, err := esl.UUIDGetVar(ctx, c, b.UUID, "sip_h_X-NKB-Session"); ok || err != nil {
		t.Fatalf("unset var: %v %v", ok, err)
	}
	if ok, err := esl.UUIDExists(ctx, c, a.UUID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := esl.TransferEcho(ctx, c, a.UUID); err != nil {
		t.Fatal(err)
	}
	if ch, _ := s.Channel(a.UUID); ch.Application != "echo" {
		t.Fatalf("after transfer: %q", ch.Application)
	}
	if err := esl.UUIDBridge(ctx, c, a.UUID, b.UUID); err != nil {
		t.Fatal(err)
	}
	if err := esl.UUIDTransfer(ctx, c, a.UUID, true, esl.App{Name: "park"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitCommand(ctx, "api uuid_transfer "+a.UUID+" -both park inline"); err != nil {
		t.Fatal(err)
	}
	if ch, _ := s.Channel(b.UUID); ch.Application != "park" {
		t.Fatalf("-both did not move the peer: %q", ch.Application)
	}
	if err := esl.TransferConference(ctx, c, a.UUID, "r1", "nkbridge"); err != nil {
		t.Fatal(err)
	}
	if err := esl.ConferenceLayout(ctx, c, "r1", "2x2"); err != nil || s.Layout("r1") != "2x2" {
		t.Fatalf("layout: %v %q", err, s.Layout("r1"))
	}
	if out, err := esl.Conference(ctx, c, "r1", "list"); err != nil || !strings.Contains(out, a.UUID) {
		t.Fatalf("list: %q %v", out, err)
	}
	var ce *esl.CommandError
	if err := esl.ConferenceLayout(ctx, c, "nope", "2x2"); !errors.As(err, &ce) {
		t.Fatalf("missing room: %v", err)
	}
	if err := esl.UUIDKill(ctx, c, "2f0c5c4e-1111-4222-8333-944455556666", ""); !errors.As(err, &ce) || ce.Reply != "-ERR No such channel!" {
		t.Fatalf("kill unknown: %v", err)
	}
}

// Nothing user-supplied with CR/LF or unsafe characters reaches the wire.
func TestInjectionRejected(t *testing.T) {
	s := startFake(t)
	c := dial(t, s, nil)
	ctx := ctx5(t)
	good := "2f0c5c4e-1111-4222-8333-944455556666"
	before := len(s.Commands())
	attempts := map[string]error{
		"api nl":          func() error { _, err := c.API(ctx, "status\n\nevent plain ALL"); return err }(),
		"api cr":          func() error { _, err := c.API(ctx, "status\rexit"); return err }(),
		"bgapi nl":        func() error { _, err := c.BgAPI(ctx, "status\nJob-UUID: x"); return err }(),
		"raw header":      func() error { _, err := c.Command(ctx, "noevents", esl.Headers{{"x", "a\nexit"}}, nil); return err }(),
		"raw header name": func() error { _, err := c.Command(ctx, "noevents", esl.Headers{{"x: y\nz", "a"}}, nil); return err }(),
		"content-length": func() error {
			_, err := c.Command(ctx, "noevents", esl.Headers{{"Content-Length", "5"}}, nil)
			return err
		}(),
		"subscribe":      c.Subscribe(ctx, esl.FormatPlain, "CHANNEL_PARK\n\napi status"),
		"subclass":       c.Subscribe(ctx, esl.FormatPlain, "CUSTOM", "a b"),
		"format":         c.Subscribe(ctx, "xml\n", "ALL"),
		"sendmsg uuid":   c.SendMsg(ctx, good+"\nexit", nil, nil),
		"execute app":    c.Execute(ctx, good, "playback\ncall-command: hangup", "x", ""),
		"execute id":     c.Execute(ctx, good, "playback", "x", "not-a-uuid"),
		"hangup cause":   c.Hangup(ctx, good, "NORMAL\nexit"),
		"transfer uuid":  esl.TransferPark(ctx, c, "../"+good),
		"transfer arg":   esl.UUIDTransfer(ctx, c, good, false, esl.App{Name: "park", Arg: "x,hangup"}),
		"transfer app":   esl.UUIDTransfer(ctx, c, good, false, esl.App{Name: "bridge sofia/x"}),
		"room at":        esl.TransferConference(ctx, c, good, "room@evil", "nkbridge"),
		"profile space":  esl.TransferConference(ctx, c, good, "room", "a b"),
		"kill cause":     esl.UUIDKill(ctx, c, good, "x y"),
		"bridge":         esl.UUIDBridge(ctx, c, good, good+" "),
		"layout":         esl.ConferenceLayout(ctx, c, "room", "1x1\napi status"),
		"conference cmd": func() error { _, err := esl.Conference(ctx, c, "room", "list;hupall"); return err }(),
		"getvar name":    func() error { _, _, err := esl.UUIDGetVar(ctx, c, good, "a b"); return err }(),
	}
	for name, err := range attempts {
		if !errors.Is(err, esl.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if cmds := s.Commands(); len(cmds) != before {
		t.Fatalf("rejected input reached FreeSWITCH: %+v", cmds[before:])
	}
	// The connection is undisturbed.
	if _, err := c.API(ctx, "status"); err != nil {
		t.Fatal(err)
	}
}

func TestDisconnectNotices(t *testing.T) {
	s := startFake(t)
	var lingers atomic.Int32
	c := dial(t, s, func(o *esl.Options) { o.OnLinger = func(esl.Headers) { lingers.Add(1) } })
	s.SendLinger("2f0c5c4e-1111-4222-8333-944455556666", "sofia/nkbridge/park@127.0.0.1")
	// Linger is not EOF: the connection keeps working.
	if _, err := c.API(ctx5(t), "status"); err != nil {
		t.Fatalf("after linger: %v", err)
	}
	peers.WaitFor(t, 5*time.Second, "OnLinger", func() bool { return lingers.Load() > 0 })
	if lingers.Load() != 1 {
		t.Fatal("OnLinger not called")
	}
	s.Disconnect(fakefs.ShutdownText)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("disconnect notice did not close the connection")
	}
	var de *esl.DisconnectError
	if err := c.Err(); !errors.As(err, &de) || !strings.Contains(de.Notice, "shut down") || !errors.Is(err, esl.ErrClosed) {
		t.Fatalf("close reason %v", err)
	}
	if _, err := c.API(ctx5(t), "status"); !errors.Is(err, esl.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
