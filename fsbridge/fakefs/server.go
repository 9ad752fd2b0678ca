// Package fakefs is a fake FreeSWITCH Event Socket server for tests: it speaks
// mod_event_socket's inbound protocol byte for byte as shared/spec/esl.md documents
// (auth/request, command/reply, api/response, bgapi + BACKGROUND_JOB, percent-encoded
// plain and json events, disconnect notices, rude rejection), keeps a small channel and
// conference model, records every command it receives, and lets tests inject faults
// (slowness, -ERR answers, dropped connections, event floods).
//
// Supported commands: auth, exit, api, bgapi (with or without Job-UUID), event
// plain|json (xml is refused with an -ERR naming the fake's limit), noevents, nixevent,
// sendmsg (execute, hangup). Not modelled: filter, myevents, linger, log, sendevent,
// userauth and outbound mode; they answer "-ERR command not found".
//
// SIPAgent (StartSIP) stands in for FreeSWITCH's SIP side: it routes INVITEs through the
// shipped dialplan (Route), answers with plain RTP, and makes the media follow the
// channel's application (park: silence, echo: echo, conference: a tone), so tests can
// prove by the audio where FreeSWITCH has a call.
//
// It keeps FreeSWITCH 1.10's quirks that nkbridge must cope with, each adjustable in
// Options: "show channels" lags the channels (ShowChannelsLag); the core refuses new
// sessions beyond sessions-per-second, which SIP sees as "503 Maximum Calls In
// Progress" (SessionsPerSecond); conference member events carry the channel's variables
// only with the profile's verbose-events (NoVerboseEvents); marked audio packets are
// discarded unless the channel has rtp_manual_rtp_bugs=IGNORE_MARK_BIT, and a call
// that received no RTP for its media_timeout is hung up (both from DialplanOverride).
package fakefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Exact texts FreeSWITCH writes.
const (
	AuthRequest     = "Content-Type: auth/request\n\n"
	RudeRejection   = "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
	GoodbyeText     = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	ShutdownText    = "The system is being shut down.\n"
	LostEventsText  = "killed listener because of lost events\n"
	DefaultPassword = "ClueCon"
)

// Options configure the fake.
type Options struct {
	// Password accepted by "auth" (default ClueCon).
	Password string
	// Hostname reported in FreeSWITCH-Hostname (default "fakefs").
	Hostname string
	// Logger; nil discards.
	Logger *slog.Logger
	// EventQueue is the per-listener event queue (FreeSWITCH: 100000). When it is full,
	// events are lost; after MaxLostEvents losses the listener is killed with a disconnect
	// notice, as FreeSWITCH does.
	EventQueue    int
	MaxLostEvents int
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
	// Heartbeat, when positive, fires a HEARTBEAT event at that interval (FreeSWITCH: 20 s).
	Heartbeat time.Duration
	// ShowChannelsLag is how far "show channels" runs behind the channels: FreeSWITCH
	// writes its channels table from the channel events through its SQL queue, so a new
	// channel appears there 56–197 ms after it exists (measured on 1.10.12), a moved one
	// shows its old application and a hung-up one stays listed for as long. Default
	// DefaultShowChannelsLag; negative: no lag.
	ShowChannelsLag time.Duration
	// SessionsPerSecond is switch.conf.xml's sessions-per-second (default 30, as stock
	// FreeSWITCH; negative: no limit). As in FreeSWITCH's core, at most SessionsPerSecond-1
	// new channels are created in each second; beyond that NewChannel and Route fail with
	// ErrSessionRate and the SIP stand-in answers "503 Maximum Calls In Progress".
	SessionsPerSecond int
	// NoVerboseEvents models a conference profile without verbose-events (FreeSWITCH's
	// default): conference::maintenance member events then carry the channel's basic data
	// but none of its variables. By default the nkbridge profile has it, as shipped in
	// testdata/freeswitch/autoload_configs/conference.conf.xml.
	NoVerboseEvents bool
	// DialplanOverride replaces variables the shipped dialplan sets on nkbridge's calls
	// (DialplanVars); an empty value removes one, e.g. {"rtp_manual_rtp_bugs": ""} models
	// a dialplan without the IGNORE_MARK_BIT guard.
	DialplanOverride map[string]string
}

// DefaultShowChannelsLag is the default Options.ShowChannelsLag, within what FreeSWITCH
// 1.10.12 showed.
const DefaultShowChannelsLag = 150 * time.Millisecond

// Command is one command the fake received.
type Command struct {
	Line    string   // first line, e.g. "api uuid_transfer <uuid> park inline"
	Headers []Header // following header lines, raw
	Body    string
}

// Header returns the first header called name (case-insensitive).
func (c Command) Header(name string) string {
	for _, h := range c.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// APIHandler answers one api command; args is everything after the command name. The
// returned text is written verbatim as the api/response body (FreeSWITCH writes
// "-ERR no reply\n" for empty output).
type APIHandler func(args string) string

type delayRule struct {
	prefix string
	d      time.Duration // <0: hang until Release or close
}

// Server is the fake FreeSWITCH. All methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	coreUUID string
	started  time.Time

	lnMu sync.Mutex
	ln   net.Listener
	addr string

	mu        sync.Mutex
	conns     map[*conn]struct{}
	apis      map[string]APIHandler
	failAPI   map[string]string
	failCmd   map[string]string
	delays    []delayRule
	release   chan struct{}
	stop      chan struct{} // closed by Close
	rude      bool
	commands  []Command
	cmdNotify chan struct{}
	seq       uint64
	closed    bool

	chans       chanModel
	hangupHooks []func(Channel, string)

	wg sync.WaitGroup
}

// Start listens on 127.0.0.1 (a random port unless Options.Addr is set) and serves.
func Start(opts Options) (*Server, error) {
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	if opts.Hostname == "" {
		opts.Hostname = "fakefs"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EventQueue <= 0 {
		opts.EventQueue = 100000
	}
	if opts.MaxLostEvents <= 0 {
		opts.MaxLostEvents = 500
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	switch {
	case opts.ShowChannelsLag == 0:
		opts.ShowChannelsLag = DefaultShowChannelsLag
	case opts.ShowChannelsLag < 0:
		opts.ShowChannelsLag = 0
	}
	if opts.SessionsPerSecond == 0 {
		opts.SessionsPerSecond = 30
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		coreUUID:  uuid.NewString(),
		started:   time.Now(),
		conns:     map[*conn]struct{}{},
		apis:      map[string]APIHandler{},
		failAPI:   map[string]string{},
		failCmd:   map[string]string{},
		release:   make(chan struct{}),
		stop:      make(chan struct{}),
		cmdNotify: make(chan struct{}),
	}
	s.chans.init()
	s.registerBuiltins()
	if err := s.listen(opts.Addr); err != nil {
		return nil, err
	}
	if opts.Heartbeat > 0 {
		s.wg.Add(1)
		go s.heartbeats(s.stop)
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.lnMu.Lock()
	s.ln = ln
	s.addr = ln.Addr().String()
	s.lnMu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

func (s *Server) heartbeats(stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-t.C:
			up := time.Since(start)
			s.Fire("HEARTBEAT", "", []Header{
				{"Event-Info", "System Ready"},
				{"Up-Time", fmt.Sprintf("0 years, 0 days, 0 hours, %d minutes, %d seconds, 0 milliseconds, 0 microseconds", int(up.Minutes()), int(up.Seconds())%60)},
				{"FreeSWITCH-Version", "1.10.12-release~64bit"},
				{"Session-Count", strconv.Itoa(len(s.Channels()))},
				{"Idle-CPU", "99.000000"},
			}, "")
		case <-stop:
			return
		}
	}
}

// Addr is the host:port the fake listens on.
func (s *Server) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return s.addr
}

// StopListening closes the listening socket (FreeSWITCH is "down"); existing connections
// are dropped too. Restart with Listen.
func (s *Server) StopListening() {
	s.lnMu.Lock()
	ln := s.ln
	s.ln = nil
	s.lnMu.Unlock()
	if ln != nil {
		ln.Close()
	}
	s.DropConnections()
}

// Listen re-opens the listening socket on the same address after StopListening.
func (s *Server) Listen() error {
	return s.listen(s.Addr())
}

// Close stops the fake, closes all connections and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.release)
		close(s.stop)
	}
	s.mu.Unlock()
	s.StopListening()
	s.wg.Wait()
	return nil
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		rude := s.rude
		c := &conn{s: s, nc: nc, queue: make(chan []byte, s.opts.EventQueue), quit: make(chan struct{})}
		if !rude {
			s.conns[c] = struct{}{}
		}
		s.mu.Unlock()
		if rude {
			nc.Write([]byte(RudeRejection))
			nc.Close()
			continue
		}
		s.wg.Add(2)
		go c.serve()
		go c.writeEvents()
	}
}

// --- scripting -----------------------------------------------------------------------

// HandleAPI registers (or replaces) the handler for api/bgapi command name.
func (s *Server) HandleAPI(name string, h APIHandler) {
	s.mu.Lock()
	s.apis[name] = h
	s.mu.Unlock()
}

// FailAPI makes api/bgapi command name answer reply (e.g. "-ERR No such channel!\n")
// until cleared with an empty reply.
func (s *Server) FailAPI(name, reply string) {
	s.mu.Lock()
	if reply == "" {
		delete(s.failAPI, name)
	} else {
		s.failAPI[name] = reply
	}
	s.mu.Unlock()
}

// FailCommand makes the command verb (event, sendmsg, bgapi, auth…) answer with the given
// Reply-Text (e.g. "-ERR no keywords supplied") until cleared with "".
func (s *Server) FailCommand(verb, replyText string) {
	s.mu.Lock()
	if replyText == "" {
		delete(s.failCmd, verb)
	} else {
		s.failCmd[verb] = replyText
	}
	s.mu.Unlock()
}

// Delay makes every command whose line starts with prefix wait d before it is answered.
// Like FreeSWITCH (one thread per listener), the connection's events wait too. d < 0
// means "until Release or Close". An empty prefix matches every command except auth.
func (s *Server) Delay(prefix string, d time.Duration) {
	s.mu.Lock()
	s.delays = append(s.delays, delayRule{prefix, d})
	s.mu.Unlock()
}

// ClearDelays removes all Delay rules.
func (s *Server) ClearDelays() {
	s.mu.Lock()
	s.delays = nil
	s.mu.Unlock()
}

// Release wakes every command hanging on a Delay(…, -1) and clears the delay rules.
func (s *Server) Release() {
	s.mu.Lock()
	s.delays = nil
	if !s.closed {
		close(s.release)
		s.release = make(chan struct{})
	}
	s.mu.Unlock()
}

// SetRude makes new connections receive the ACL rude rejection.
func (s *Server) SetRude(on bool) {
	s.mu.Lock()
	s.rude = on
	s.mu.Unlock()
}

// Commands returns a copy of every command received so far, in order.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.commands...)
}

// WaitCommand waits until a command whose line starts with prefix has been received and
// returns the first such command.
func (s *Server) WaitCommand(ctx context.Context, prefix string) (Command, error) {
	for {
		s.mu.Lock()
		for _, c := range s.commands {
			if strings.HasPrefix(c.Line, prefix) {
				s.mu.Unlock()
				return c, nil
			}
		}
		ch := s.cmdNotify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Command{}, fmt.Errorf("fakefs: no command %q: %w", prefix, ctx.Err())
		}
	}
}

// Connections returns the number of live listener connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitConnections waits until exactly n authenticated listeners with at least one event
// subscription exist.
func (s *Server) WaitSubscribed(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		k := 0
		for c := range s.conns {
			if c.subscribed() {
				k++
			}
		}
		ch := s.cmdNotify
		s.mu.Unlock()
		if k == n {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("fakefs: %d subscribed listeners, want %d: %w", k, n, ctx.Err())
		}
	}
}

// DropConnections closes every connection abruptly (no disconnect notice), like a crash
// or a network failure.
func (s *Server) DropConnections() {
	for _, c := range s.snapshotConns() {
		c.close()
	}
}

// Disconnect sends every connection a text/disconnect-notice with body (GoodbyeText,
// ShutdownText…) and closes it.
func (s *Server) Disconnect(body string) {
	for _, c := range s.snapshotConns() {
		c.disconnect(body)
	}
}

// SendLinger sends every connection the linger disconnect notice FreeSWITCH sends when a
// lingering session's channel hangs up; the connection stays open.
func (s *Server) SendLinger(channelUUID, channelName string) {
	msg := "Content-Type: text/disconnect-notice\nControlled-Session-UUID: " + channelUUID +
		"\nContent-Disposition: linger\nChannel-Name: " + channelName + "\nLinger-Time: 0\nContent-Length: 0\n\n"
	for _, c := range s.snapshotConns() {
		c.writeRaw([]byte(msg))
	}
}

func (s *Server) snapshotConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Fire delivers an event to every listener subscribed to it, in the listener's format.
// Standard headers (Event-Name, Core-UUID, dates, Event-Sequence…) are prepended.
func (s *Server) Fire(name, subclass string, headers []Header, body string) {
	ev := &Event{Name: name, Subclass: subclass, Body: body}
	ev.Headers = append(s.baseHeaders(name, subclass, "fakefs.go", "fire", 1), headers...)
	s.deliver(ev)
}

// Flood fires n HEARTBEAT-like CUSTOM events (subclass "fakefs::flood") carrying a
// sequence header, as fast as the listener queues take them. It returns when all n are
// queued (or lost).
func (s *Server) Flood(n int) {
	for i := 0; i < n; i++ {
		s.Fire("CUSTOM", "fakefs::flood", []Header{{"Flood-Seq", strconv.Itoa(i)}}, "")
	}
}

func (s *Server) deliver(ev *Event) {
	var plain, js []byte
	for _, c := range s.snapshotConns() {
		format, ok := c.wants(ev)
		if !ok {
			continue
		}
		var body []byte
		if format == "json" {
			if js == nil {
				js = SerializeJSON(ev)
			}
			body = js
		} else {
			if plain == nil {
				plain = SerializePlain(ev)
			}
			body = plain
		}
		frame := make([]byte, 0, len(body)+64)
		frame = append(frame, "Content-Length: "...)
		frame = strconv.AppendInt(frame, int64(len(body)), 10)
		frame = append(frame, "\nContent-Type: text/event-"...)
		frame = append(frame, format...)
		frame = append(frame, "\n\n"...)
		frame = append(frame, body...)
		c.push(frame)
	}
}

// --- one listener connection ---------------------------------------------------------

type conn struct {
	s     *Server
	nc    net.Conn
	wmu   sync.Mutex
	queue chan []byte
	quit  chan struct{}
	once  sync.Once

	mu         sync.Mutex
	authed     bool
	format     string
	all        bool
	events     map[string]bool
	subclasses map[string]bool
	lost       int
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.quit)
		c.nc.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
}

func (c *conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *conn) disconnect(body string) {
	c.writeRaw([]byte("Content-Type: text/disconnect-notice\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body))
	c.close()
}

func (c *conn) subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all || len(c.events) > 0
}

func (c *conn) wants(ev *Event) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.authed || c.format == "" {
		return "", false
	}
	if c.all {
		return c.format, true
	}
	if !c.events[ev.Name] {
		return "", false
	}
	if ev.Name == "CUSTOM" && ev.Subclass != "" && !c.subclasses[ev.Subclass] {
		return "", false
	}
	return c.format, true
}

// push queues an event frame; like FreeSWITCH, a full queue loses the event and too many
// losses kill the listener.
func (c *conn) push(frame []byte) {
	select {
	case c.queue <- frame:
	case <-c.quit:
	default:
		c.mu.Lock()
		c.lost++
		kill := c.lost > c.s.opts.MaxLostEvents
		c.mu.Unlock()
		if kill {
			c.s.async(func() { c.disconnect(LostEventsText) })
		}
	}
}

func (c *conn) writeEvents() {
	defer c.s.wg.Done()
	for {
		select {
		case f := <-c.queue:
			if c.writeRaw(f) != nil {
				c.close()
				return
			}
		case <-c.quit:
			return
		}
	}
}

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer c.close()
	if c.writeRaw([]byte(AuthRequest)) != nil {
		return
	}
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		cmd, err := readCommand(br)
		if err != nil {
			return
		}
		c.s.record(cmd)
		if !c.handle(cmd) {
			return
		}
	}
}

// readCommand reads one command like mod_event_socket's read_packet: '\r' ignored, the
// block ends at an empty line, leading empty lines skipped; Content-Length ⇒ body.
func readCommand(br *bufio.Reader) (Command, error) {
	var cmd Command
	first := true
	total := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return cmd, err
		}
		total += len(line)
		if total > 1<<20 {
			return cmd, errors.New("command too large")
		}
		line = strings.ReplaceAll(strings.TrimSuffix(line, "\n"), "\r", "")
		if line == "" {
			if first {
				continue
			}
			break
		}
		if first {
			cmd.Line = line
			first = false
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		cmd.Headers = append(cmd.Headers, Header{strings.TrimSpace(name), strings.TrimLeft(value, " ")})
	}
	if cl := cmd.Header("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > 16<<20 {
			return cmd, errors.New("bad Content-Length")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return cmd, err
		}
		cmd.Body = string(body)
	}
	return cmd, nil
}

func (s *Server) record(cmd Command) {
	s.mu.Lock()
	s.commands = append(s.commands, cmd)
	close(s.cmdNotify)
	s.cmdNotify = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) delayFor(line string) (time.Duration, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.delays {
		if strings.HasPrefix(line, r.prefix) {
			return r.d, s.release
		}
	}
	return 0, nil
}

func commandReply(text string) []byte {
	return []byte("Content-Type: command/reply\nReply-Text: " + text + "\n\n")
}

// handle processes one command and writes its reply; false ends the connection.
func (c *conn) handle(cmd Command) bool {
	verb, args, _ := strings.Cut(cmd.Line, " ")
	verb = strings.ToLower(verb)
	c.mu.Lock()
	authed := c.authed
	c.mu.Unlock()
	if !authed {
		switch verb {
		case "auth":
			if args != c.s.opts.Password {
				c.writeRaw(commandReply("-ERR invalid"))
				c.disconnect(GoodbyeText)
				return false
			}
			c.mu.Lock()
			c.authed = true
			c.mu.Unlock()
			return c.writeRaw(commandReply("+OK accepted")) == nil
		case "exit":
			c.writeRaw(commandReply("+OK bye"))
			c.disconnect(GoodbyeText)
			return false
		default:
			return c.writeRaw(commandReply("-ERR command not found")) == nil
		}
	}

	// One thread per listener: while a command is delayed, nothing else is written.
	c.wmu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			c.wmu.Unlock()
		}
	}
	defer unlock()
	if d, rel := c.s.delayFor(cmd.Line); d != 0 {
		var wait <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			wait = t.C
		}
		select {
		case <-wait:
		case <-rel:
		case <-c.quit:
			return false
		}
	}
	write := func(b []byte) bool {
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := c.nc.Write(b)
		return err == nil
	}
	c.s.mu.Lock()
	forced, fail := c.s.failCmd[verb]
	c.s.mu.Unlock()
	if fail {
		return write(commandReply(forced))
	}

	switch verb {
	case "api":
		name, a, _ := strings.Cut(args, " ")
		out := c.s.runAPI(name, a)
		return write([]byte("Content-Type: api/response\nContent-Length: " + strconv.Itoa(len(out)) + "\n\n" + out))
	case "bgapi":
		id := cmd.Header("Job-UUID")
		if id == "" {
			id = uuid.NewString()
		}
		ok := write([]byte("Content-Type: command/reply\nReply-Text: +OK Job-UUID: " + id + "\nJob-UUID: " + id + "\n\n"))
		name, a, _ := strings.Cut(args, " ")
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			out := c.s.runAPI(name, a)
			hs := []Header{{"Job-UUID", id}, {"Job-Command", name}}
			if a != "" {
				hs = append(hs, Header{"Job-Command-Arg", a})
			}
			ev := &Event{Name: "BACKGROUND_JOB", Body: out}
			ev.Headers = append(c.s.baseHeaders("BACKGROUND_JOB", "", "mod_event_socket.c", "api_exec", 1572), hs...)
			c.s.deliver(ev)
		}()
		return ok
	case "event":
		return write(commandReply(c.subscribe(args)))
	case "noevents":
		c.mu.Lock()
		c.all, c.events, c.subclasses, c.format = false, nil, nil, ""
		c.mu.Unlock()
		return write(commandReply("+OK no longer listening for events"))
	case "nixevent":
		c.mu.Lock()
		for _, w := range strings.Fields(args) {
			if w == "ALL" {
				c.all = false
				clear(c.events)
			}
			delete(c.events, w)
		}
		c.mu.Unlock()
		return write(commandReply("+OK events nixed"))
	case "sendmsg":
		return write(commandReply(c.s.sendmsg(args, cmd)))
	case "exit":
		write(commandReply("+OK bye"))
		unlock()
		c.disconnect(GoodbyeText)
		return false
	default: // includes a second "auth": FreeSWITCH only parses it before authentication

		return write(commandReply("-ERR command not found"))
	}
}

// subscribe applies "event <fmt> <names…>" like parse_command and returns the Reply-Text.
func (c *conn) subscribe(args string) string {
	words := strings.Fields(args)
	if len(words) == 0 {
		return "-ERR no keywords supplied"
	}
	format := "plain"
	switch strings.ToLower(words[0]) {
	case "plain", "json":
		format = strings.ToLower(words[0])
		words = words[1:]
	case "xml":
		return "-ERR fakefs does not serialise xml events" // not FreeSWITCH's answer: a fake limit
	}
	if len(words) == 0 {
		return "-ERR no keywords supplied"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.events == nil {
		c.events = map[string]bool{}
		c.subclasses = map[string]bool{}
	}
	custom := false
	for _, w := range words {
		switch {
		case custom:
			c.subclasses[w] = true
		case w == "CUSTOM":
			custom = true
			c.events["CUSTOM"] = true
		case w == "ALL":
			c.all = true
		default:
			c.events[w] = true
		}
	}
	c.format = format
	return "+OK event listener enabled " + format
}

func (s *Server) runAPI(name, args string) string {
	s.mu.Lock()
	forced, fail := s.failAPI[name]
	h := s.apis[name]
	s.mu.Unlock()
	if fail {
		return forced
	}
	if h == nil {
		return "-ERR " + name + " Command not found!\n"
	}
	out := h(args)
	if out == "" {
		out = "-ERR no reply\n"
	}
	return out
}
