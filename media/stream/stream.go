// Package stream sends the live audio of a media session to an application over a WebSocket
// (speech recognition, voice bots, analytics) and, when bidirectional, plays what the
// application sends back into the call.
//
// A stream connects (ws:// or wss://, only to hosts of the allow-list), sends one JSON start
// message with the call's metadata and the audio format, then a frame every 20 ms: binary
// 16-bit little-endian PCM at 8 or 16 kHz, mono (the caller), stereo (left the caller, right
// the far side) or mixed (both summed), or with the Twilio Media Streams framing JSON media
// events of base64 µ-law. DTMF and the end of the call are JSON text messages. The
// application's audio (binary PCM, or Twilio media events) is queued and played to the
// caller; a clear message flushes the queue (barge-in), a mark comes back when the audio
// before it has played.
//
// A stream never holds up the call: the media goroutines only append to bounded buffers; a
// slow or stalled application loses frames (counted), an application that disconnects ends
// the stream (or it reconnects, by option). Manager counts everything for metrics.
package stream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
)

// Media is what a stream needs of a session's media; *media.Session has it.
type Media interface {
	AddAudioSink(rate int, sink media.AudioSink) (remove func(), err error)
	CallerFormats() (audio, video []media.Format)
	WriteCaller(video bool, h *rtp.Header, payload []byte) error
}

// Call describes the call a stream belongs to, for the start message.
type Call struct {
	SessionID string
	CallID    string
	From, To  string // caller and callee, when known
}

// Events tell the stream's owner what happened to it. Calls never come from a media
// goroutine; they must not block for long.
type Events struct {
	// Ended is called once when the stream ends on its own: the application left (and was
	// not reconnected) or asked to hang up. hangup says the session should stop too
	// (hangup_on_close, or the application's hangup message).
	Ended func(reason string, hangup bool)
	// Reconnected is called after the stream connected again.
	Reconnected func(attempt int)
}

// Counters are a Manager's cumulative figures (for metrics).
type Counters struct {
	Started, Failed, Active         int64
	FramesSent, FramesDropped       uint64 // 20 ms frames to applications; dropped: a slow application
	AppFrames, AppGarbage           uint64 // messages from applications; garbage: not understood
	PlaybackDropped                 uint64 // samples of application audio over streams.playback_max
	Disconnects, Reconnects, Hangup uint64
}

// Manager starts streams under one configuration and counts them. Its methods are safe for
// concurrent use.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	dialer *websocket.Dialer

	mu     sync.Mutex
	live   map[*Stream]struct{}
	closed bool
	wg     sync.WaitGroup

	started, failed                                atomic.Int64
	sent, dropped, appFrames, garbage, playDropped atomic.Uint64
	disconnects, reconnects, hangups               atomic.Uint64
}

// NewManager checks cfg and returns a Manager.
func NewManager(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	for _, h := range cfg.AllowedHosts {
		if h == "" {
			return nil, errors.New("streams.allowed_hosts: empty host")
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "stream"), live: map[*Stream]struct{}{}}
	allowed := cfg.AllowedHosts
	nd := &net.Dialer{Timeout: cfg.ConnectTimeout, Control: func(_, address string, c syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return fmt.Errorf("stream: bad address %q", address)
		}
		if err := guardedAddr(ip, allowed); err != nil {
			return err
		}
		// a modest send buffer: audio waiting in the kernel is latency, and a stalled
		// application must show as a full queue (dropped frames) within seconds
		var serr error
		_ = c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 64<<10) })
		return serr
	}}
	m.dialer = &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: cfg.ConnectTimeout,
		TLSClientConfig:  &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		Proxy:            nil, // never through an environment proxy: the allow-list is about the real host
	}
	return m, nil
}

// Check normalizes o and checks it against the allow-lists for user (an API user;
// configured says the options come from the configuration, a bot, which needs no user).
// Errors wrap ErrBadOptions or ErrNotAllowed and name the setting.
func (m *Manager) Check(o *Options, user string, configured bool) error {
	if err := o.Normalize(); err != nil {
		return err
	}
	if !configured && !userAllowed(user, m.cfg.AllowedUsers) {
		return fmt.Errorf("%w: user %q may not start streams (streams.allowed_users)", ErrNotAllowed, user)
	}
	_, err := CheckURL(o.URL, m.cfg.AllowedHosts)
	return err
}

// Counters returns the cumulative figures of every stream.
func (m *Manager) Counters() Counters {
	m.mu.Lock()
	active := int64(len(m.live))
	m.mu.Unlock()
	return Counters{Started: m.started.Load(), Failed: m.failed.Load(), Active: active,
		FramesSent: m.sent.Load(), FramesDropped: m.dropped.Load(), AppFrames: m.appFrames.Load(),
		AppGarbage: m.garbage.Load(), PlaybackDropped: m.playDropped.Load(),
		Disconnects: m.disconnects.Load(), Reconnects: m.reconnects.Load(), Hangup: m.hangups.Load()}
}

// Close stops every stream and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	list := make([]*Stream, 0, len(m.live))
	for s := range m.live {
		list = append(list, s)
	}
	m.mu.Unlock()
	for _, s := range list {
		s.Stop("server stopping")
	}
	m.wg.Wait()
}

// Stream is one live stream.
type Stream struct {
	m    *Manager
	o    Options
	id   string
	call Call
	med  Media
	ev   Events
	log  *slog.Logger
	n    int // samples per 20 ms frame per channel

	ctx     context.Context
	cancel  context.CancelFunc
	reason  atomic.Pointer[string] // why it stops (sent in the stop message)
	remove  func()
	endOnce sync.Once

	inMu sync.Mutex
	in   [2][]int16

	audioq chan []wsMsg
	ctrlq  chan wsMsg

	seqMu   sync.Mutex
	seq     uint64 // Twilio sequenceNumber
	chunk   [2]uint64
	started time.Time

	playMu   sync.Mutex
	play     []int16
	played   int64 // samples taken from play, ever
	appended int64 // samples put in play, ever
	marks    []mark
	enc      codec.Encoder
	encF     media.Format
	rtpSeq   uint16
	rtpTS    uint32
	playing  bool
	encBuf   []byte
	pcm8     []int16

	sent, dropped, appFrames, garbage atomic.Uint64
}

type wsMsg struct {
	binary bool
	data   []byte
}

type mark struct {
	at   int64
	name string
}

// Stats are one stream's figures.
type Stats struct {
	ID                        string
	FramesSent, FramesDropped uint64
	AppFrames, AppGarbage     uint64
}

// Start connects to o.URL (Check first) and streams med's audio until Stop or the end of
// ctx. It returns once the application's WebSocket is open and the start message sent.
func (m *Manager) Start(ctx context.Context, med Media, o Options, call Call, ev Events) (*Stream, error) {
	if err := o.Normalize(); err != nil {
		return nil, err
	}
	if _, err := CheckURL(o.URL, m.cfg.AllowedHosts); err != nil {
		return nil, err
	}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, errors.New("stream: shutting down")
	case len(m.live) >= m.cfg.MaxStreams:
		m.mu.Unlock()
		m.failed.Add(1)
		return nil, fmt.Errorf("%w: %d streams running, the limit (streams.max_streams)", ErrNotAllowed, m.cfg.MaxStreams)
	}
	m.mu.Unlock()
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := &Stream{m: m, o: o, id: "MZ" + hex.EncodeToString(b[:]), call: call, med: med, ev: ev,
		n: o.SampleRate / 50, audioq: make(chan []wsMsg, m.cfg.QueueFrames), ctrlq: make(chan wsMsg, 64)}
	s.log = m.log.With("stream_id", s.id, "session_id", call.SessionID)
	if o.Bidirectional {
		if err := s.pickEncoder(); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	conn, err := s.dial(ctx)
	if err != nil {
		s.cancel()
		m.failed.Add(1)
		return nil, err
	}
	s.started = time.Now()
	if err := s.greet(conn, 0); err != nil {
		_ = conn.Close()
		s.cancel()
		m.failed.Add(1)
		return nil, fmt.Errorf("stream: start message: %w", err)
	}
	remove, err := med.AddAudioSink(o.SampleRate, s)
	if err != nil {
		_ = conn.Close()
		s.cancel()
		m.failed.Add(1)
		return nil, err
	}
	s.remove = remove
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		remove()
		_ = conn.Close()
		s.cancel()
		return nil, errors.New("stream: shutting down")
	}
	m.live[s] = struct{}{}
	m.wg.Add(2)
	m.mu.Unlock()
	m.started.Add(1)
	go s.tick()
	go s.run(conn)
	s.log.Info("stream started", "url", redactURL(o.URL), "mix", o.Mix, "rate", o.SampleRate, "framing", o.Framing, "bidirectional", o.Bidirectional)
	return s, nil
}

// ID returns the stream's id (streamSid in Twilio framing).
func (s *Stream) ID() string { return s.id }

// Stats returns the stream's figures.
func (s *Stream) Stats() Stats {
	return Stats{ID: s.id, FramesSent: s.sent.Load(), FramesDropped: s.dropped.Load(),
		AppFrames: s.appFrames.Load(), AppGarbage: s.garbage.Load()}
}

// Done is closed when the stream has stopped.
func (s *Stream) Done() <-chan struct{} { return s.ctx.Done() }

// Stop ends the stream: a stop message is sent (best effort) and the connection closed.
func (s *Stream) Stop(reason string) {
	s.reason.CompareAndSwap(nil, &reason)
	s.cancel()
}

// DTMF sends a digit received from side to the application.
func (s *Stream) DTMF(from media.Side, digit rune) {
	var msg any
	if s.o.Framing == FramingTwilio {
		track := "inbound_track"
		if from == media.SideFar {
			track = "outbound_track"
		}
		s.seqMu.Lock()
		s.seq++
		msg = map[string]any{"event": "dtmf", "streamSid": s.id, "sequenceNumber": twilioSeq(s.seq),
			"dtmf": map[string]any{"track": track, "digit": string(digit)}}
		s.seqMu.Unlock()
	} else {
		msg = map[string]any{"event": "dtmf", "stream_id": s.id, "digit": string(digit), "side": from.String()}
	}
	s.control(msg)
}

// control queues a JSON text message (dropped and counted when 64 are waiting).
func (s *Stream) control(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	select {
	case s.ctrlq <- wsMsg{data: b}:
	default:
		s.dropped.Add(1)
		s.m.dropped.Add(1)
	}
}

// Audio implements media.AudioSink: it only appends to a bounded buffer (200 ms per side).
func (s *Stream) Audio(from media.Side, pcm []int16) {
	if from != media.SideCaller && from != media.SideFar {
		return
	}
	if s.o.Mix == MixMono && from != media.SideCaller {
		return
	}
	s.inMu.Lock()
	b := append(s.in[from], pcm...)
	if limit := 10 * s.n; len(b) > limit {
		b = append(b[:0], b[len(b)-limit:]...)
	}
	s.in[from] = b
	s.inMu.Unlock()
}

// take removes up to n samples of side into dst (zero padded).
func (s *Stream) takeLocked(side int, dst []int16) {
	b := s.in[side]
	k := copy(dst, b)
	clear(dst[k:])
	s.in[side] = append(b[:0], b[k:]...)
}

func (s *Stream) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.m.cfg.ConnectTimeout)
	defer cancel()
	h := http.Header{}
	h.Set("User-Agent", "nkbridge-stream")
	conn, resp, err := s.m.dialer.DialContext(ctx, s.o.URL, h)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			return nil, err
		}
		if resp != nil {
			return nil, fmt.Errorf("stream: %s: HTTP %d", redactURL(s.o.URL), resp.StatusCode)
		}
		return nil, fmt.Errorf("stream: connect %s: %w", redactURL(s.o.URL), err)
	}
	conn.SetReadLimit(s.m.cfg.MaxMessageBytes)
	return conn, nil
}

// greet sends the start message(s).
func (s *Stream) greet(conn *websocket.Conn, attempt int) error {
	_ = conn.SetWriteDeadline(time.Now().Add(s.m.cfg.WriteTimeout))
	channels := 1
	if s.o.Mix == MixStereo {
		channels = 2
	}
	meta := s.o.Metadata
	if meta == nil {
		meta = map[string]any{}
	}
	if s.o.Framing == FramingTwilio {
		if err := conn.WriteJSON(map[string]any{"event": "connected", "protocol": "Call", "version": "1.0.0"}); err != nil {
			return err
		}
		tracks := []string{"inbound"}
		if s.o.Mix == MixStereo {
			tracks = []string{"inbound", "outbound"}
		}
		custom := map[string]any{}
		for k, v := range meta {
			custom[k] = v
		}
		s.seqMu.Lock()
		s.seq++
		msg := map[string]any{"event": "start", "sequenceNumber": twilioSeq(s.seq), "streamSid": s.id,
			"start": map[string]any{"accountSid": "", "streamSid": s.id, "callSid": s.call.CallID,
				"tracks": tracks, "customParameters": custom,
				"mediaFormat": map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
		s.seqMu.Unlock()
		return conn.WriteJSON(msg)
	}
	chmap := []string{"caller"}
	switch s.o.Mix {
	case MixStereo:
		chmap = []string{"caller", "far"}
	case MixMixed:
		chmap = []string{"caller+far"}
	}
	call := map[string]any{"session_id": s.call.SessionID}
	for k, v := range map[string]string{"call_id": s.call.CallID, "from": s.call.From, "to": s.call.To} {
		if v != "" {
			call[k] = v
		}
	}
	msg := map[string]any{"event": "start", "stream_id": s.id, "call": call, "metadata": meta,
		"bidirectional": s.o.Bidirectional,
		"format": map[string]any{"encoding": "pcm_s16le", "sample_rate": s.o.SampleRate, "channels": channels,
			"frame_ms": 20, "mix": s.o.Mix, "channel_map": chmap}}
	if attempt > 0 {
		msg["reconnect"] = attempt
	}
	return conn.WriteJSON(msg)
}

// tick builds a frame every 20 ms (and plays 20 ms of the application's audio).
func (s *Stream) tick() {
	defer s.m.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	ch := 1
	if s.o.Mix == MixStereo {
		ch = 2
	}
	var sides [2][]int16
	sides[0], sides[1] = make([]int16, s.n), make([]int16, s.n)
	frame := make([]int16, s.n*ch)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.inMu.Lock()
		s.takeLocked(0, sides[0])
		if s.o.Mix != MixMono {
			s.takeLocked(1, sides[1])
		}
		s.inMu.Unlock()
		switch s.o.Mix {
		case MixMono:
			copy(frame, sides[0])
		case MixMixed:
			for i := range frame {
				frame[i] = clip(int32(sides[0][i]) + int32(sides[1][i]))
			}
		case MixStereo:
			for i := 0; i < s.n; i++ {
				frame[2*i], frame[2*i+1] = sides[0][i], sides[1][i]
			}
		}
		msgs := s.frameMsgs(frame, sides)
		select {
		case s.audioq <- msgs:
		default:
			s.dropped.Add(1)
			s.m.dropped.Add(1)
		}
		if s.o.Bidirectional {
			s.playStep()
		}
	}
}

func clip(v int32) int16 {
	return int16(max(min(v, 32767), -32768))
}

// frameMsgs turns one frame into its messages.
func (s *Stream) frameMsgs(frame []int16, sides [2][]int16) []wsMsg {
	if s.o.Framing != FramingTwilio {
		return []wsMsg{{binary: true, data: encodePCM(make([]byte, 0, 2*len(frame)), frame)}}
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	ts := time.Since(s.started).Milliseconds()
	one := func(track string, idx int, pcm []int16) wsMsg {
		u := make([]byte, len(pcm))
		for i, v := range pcm {
			u[i] = codec.LinearToUlaw(v)
		}
		s.seq++
		s.chunk[idx]++
		b, _ := json.Marshal(map[string]any{"event": "media", "sequenceNumber": twilioSeq(s.seq), "streamSid": s.id,
			"media": map[string]any{"track": track, "chunk": twilioSeq(s.chunk[idx]), "timestamp": twilioSeq(uint64(ts)),
				"payload": base64.StdEncoding.EncodeToString(u)}})
		return wsMsg{data: b}
	}
	if s.o.Mix == MixStereo {
		return []wsMsg{one("inbound", 0, sides[0]), one("outbound", 1, sides[1])}
	}
	return []wsMsg{one("inbound", 0, frame)}
}

// run serves the connection, and the next ones when reconnecting, until the stream stops.
func (s *Stream) run(conn *websocket.Conn) {
	defer s.m.wg.Done()
	defer func() {
		s.remove()
		s.m.mu.Lock()
		delete(s.m.live, s)
		s.m.mu.Unlock()
		s.cancel()
		st := s.Stats()
		s.log.Info("stream stopped", "frames_sent", st.FramesSent, "frames_dropped", st.FramesDropped,
			"app_frames", st.AppFrames, "app_garbage", st.AppGarbage)
	}()
	attempt := 0
	for {
		err := s.serve(conn)
		if s.ctx.Err() != nil {
			return
		}
		s.m.disconnects.Add(1)
		s.log.Info("stream application gone", "err", err)
		reason := fmt.Sprintf("stream application gone: %v", err)
		if !s.o.Reconnect {
			s.end(reason, s.o.HangupOnClose)
			return
		}
		conn = nil
		delay := s.m.cfg.ReconnectDelay
		for conn == nil {
			if attempt >= s.m.cfg.ReconnectAttempts {
				s.end(fmt.Sprintf("%s; not reconnected after %d attempts (streams.reconnect_attempts)", reason, attempt), s.o.HangupOnClose)
				return
			}
			attempt++
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
			c, err := s.dial(s.ctx)
			if err == nil {
				if err = s.greet(c, attempt); err != nil {
					_ = c.Close()
				}
			}
			if err != nil {
				s.log.Info("stream reconnect failed", "attempt", attempt, "err", err)
				continue
			}
			conn = c
		}
		// what waited for the lost connection is stale now
		for len(s.audioq) > 0 {
			<-s.audioq
			s.dropped.Add(1)
			s.m.dropped.Add(1)
		}
		s.m.reconnects.Add(1)
		s.log.Info("stream reconnected", "attempt", attempt)
		if s.ev.Reconnected != nil {
			go s.ev.Reconnected(attempt)
		}
	}
}

// end stops the stream on its own and tells the owner.
func (s *Stream) end(reason string, hangup bool) {
	s.endOnce.Do(func() {
		s.reason.CompareAndSwap(nil, &reason)
		s.cancel()
		if s.ev.Ended != nil {
			go s.ev.Ended(reason, hangup)
		}
	})
}

// serve writes queued messages to conn and reads the application's until one fails or the
// stream stops (then the stop message is sent and the connection closed).
func (s *Stream) serve(conn *websocket.Conn) error {
	readErr := make(chan error, 1)
	go func() { readErr <- s.read(conn) }()
	write := func(m wsMsg) error {
		_ = conn.SetWriteDeadline(time.Now().Add(s.m.cfg.WriteTimeout))
		if m.binary {
			return conn.WriteMessage(websocket.BinaryMessage, m.data)
		}
		return conn.WriteMessage(websocket.TextMessage, m.data)
	}
	fail := func(err error) error {
		_ = conn.Close()
		<-readErr
		return err
	}
	// once stopped, a write blocked by a stalled application gets a second for the stop
	// message, then the connection's deadline cuts it short
	var km sync.Mutex
	var killer *time.Timer
	stopAfter := context.AfterFunc(s.ctx, func() {
		km.Lock()
		killer = time.AfterFunc(time.Second, func() { _ = conn.NetConn().SetDeadline(time.Now()) })
		km.Unlock()
	})
	defer func() {
		stopAfter()
		km.Lock()
		if killer != nil {
			killer.Stop()
		}
		km.Unlock()
	}()
	for {
		// control messages first: a DTMF must not wait behind a second of audio
		select {
		case m := <-s.ctrlq:
			if err := write(m); err != nil {
				return fail(err)
			}
			continue
		default:
		}
		select {
		case <-s.ctx.Done():
			s.sayStop(conn, write)
			return fail(nil)
		case err := <-readErr:
			_ = conn.Close()
			return err
		case m := <-s.ctrlq:
			if err := write(m); err != nil {
				return fail(err)
			}
		case msgs := <-s.audioq:
			for _, m := range msgs {
				if err := write(m); err != nil {
					s.dropped.Add(1)
					s.m.dropped.Add(1)
					return fail(err)
				}
			}
			s.sent.Add(1)
			s.m.sent.Add(1)
		}
	}
}

// sayStop sends the stop message and a close frame (best effort, bounded).
func (s *Stream) sayStop(conn *websocket.Conn, write func(wsMsg) error) {
	reason := "stopped"
	if r := s.reason.Load(); r != nil {
		reason = *r
	}
	var msg any
	if s.o.Framing == FramingTwilio {
		s.seqMu.Lock()
		s.seq++
		msg = map[string]any{"event": "stop", "sequenceNumber": twilioSeq(s.seq), "streamSid": s.id,
			"stop": map[string]any{"accountSid": "", "callSid": s.call.CallID}}
		s.seqMu.Unlock()
	} else {
		msg = map[string]any{"event": "stop", "stream_id": s.id, "reason": reason}
	}
	b, _ := json.Marshal(msg)
	if err := write(wsMsg{data: b}); err == nil {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
	}
}

// read handles the application's messages until the connection fails.
func (s *Stream) read(conn *websocket.Conn) error {
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		s.appFrames.Add(1)
		s.m.appFrames.Add(1)
		m, err := parseApp(s.o.Framing, mt == websocket.BinaryMessage, data)
		if err != nil {
			s.garbage.Add(1)
			s.m.garbage.Add(1)
			s.log.Debug("stream: application message not understood", "err", err)
			continue
		}
		switch m.kind {
		case "audio":
			if s.o.Bidirectional {
				s.queuePlay(m.pcm)
			}
		case "clear":
			s.clearPlay()
		case "mark":
			s.addMark(m.name)
		case "hangup":
			s.m.hangups.Add(1)
			s.end("the stream application hung up", true)
		}
	}
}

// pickEncoder chooses the caller's codec for the application's audio.
func (s *Stream) pickEncoder() error {
	audio, _ := s.med.CallerFormats()
	for _, f := range audio {
		if f.IsTelephoneEvent() || !codec.Supported(f.Name) {
			continue
		}
		rate := 8000
		if f.Name == codec.Opus {
			rate = s.o.SampleRate
		}
		enc, err := codec.NewEncoder(f.Name, rate)
		if err != nil {
			continue
		}
		s.enc, s.encF = enc, f
		var b [6]byte
		_, _ = rand.Read(b[:])
		s.rtpSeq = uint16(b[0])<<8 | uint16(b[1])
		s.rtpTS = uint32(b[2])<<24 | uint32(b[3])<<16 | uint32(b[4])<<8 | uint32(b[5])
		s.encBuf = make([]byte, 1500)
		return nil
	}
	return fmt.Errorf("%w: bidirectional: the caller has no codec to play audio in", ErrBadOptions)
}

func (s *Stream) queuePlay(pcm []int16) {
	limit := int(s.m.cfg.PlaybackMax.Seconds() * float64(s.o.SampleRate))
	s.playMu.Lock()
	defer s.playMu.Unlock()
	if room := limit - len(s.play); len(pcm) > room {
		s.m.playDropped.Add(uint64(len(pcm) - max(room, 0)))
		pcm = pcm[:max(room, 0)]
	}
	s.play = append(s.play, pcm...)
	s.appended += int64(len(pcm))
}

func (s *Stream) clearPlay() {
	s.playMu.Lock()
	s.played += int64(len(s.play))
	s.play = s.play[:0]
	marks := s.marks
	s.marks = nil
	s.playMu.Unlock()
	for _, mk := range marks {
		s.sendMark(mk.name)
	}
}

func (s *Stream) addMark(name string) {
	s.playMu.Lock()
	if len(s.play) == 0 {
		s.playMu.Unlock()
		s.sendMark(name)
		return
	}
	s.marks = append(s.marks, mark{at: s.appended, name: name})
	s.playMu.Unlock()
}

func (s *Stream) sendMark(name string) {
	if s.o.Framing == FramingTwilio {
		s.seqMu.Lock()
		s.seq++
		msg := map[string]any{"event": "mark", "sequenceNumber": twilioSeq(s.seq), "streamSid": s.id, "mark": map[string]any{"name": name}}
		s.seqMu.Unlock()
		s.control(msg)
		return
	}
	s.control(map[string]any{"event": "mark", "stream_id": s.id, "name": name})
}

// playStep plays the next 20 ms of the application's audio to the caller. The RTP clock
// runs on while nothing plays, so a pause keeps its length.
func (s *Stream) playStep() {
	clock := uint32(s.enc.ClockRate() / 50)
	s.playMu.Lock()
	if len(s.play) == 0 {
		s.playing = false
		s.rtpTS += clock
		s.playMu.Unlock()
		return
	}
	k := min(len(s.play), s.n)
	frame := make([]int16, s.n)
	copy(frame, s.play[:k])
	s.play = append(s.play[:0], s.play[k:]...)
	s.played += int64(k)
	var due []string
	for len(s.marks) > 0 && s.marks[0].at <= s.played {
		due = append(due, s.marks[0].name)
		s.marks = s.marks[1:]
	}
	first := !s.playing
	s.playing = true
	s.rtpSeq++
	s.rtpTS += clock
	h := &rtp.Header{Version: 2, PayloadType: s.encF.PT, SequenceNumber: s.rtpSeq, Timestamp: s.rtpTS, Marker: first}
	pcm := frame
	if s.enc.Rate() == 8000 && s.o.SampleRate == 16000 {
		s.pcm8 = media.Downsample2(s.pcm8[:0], frame)
		pcm = s.pcm8
	}
	n, err := s.enc.Encode(s.encBuf, pcm)
	var payload []byte
	if err == nil {
		payload = append([]byte(nil), s.encBuf[:n]...)
	}
	s.playMu.Unlock()
	if payload != nil {
		_ = s.med.WriteCaller(false, h, payload)
	}
	for _, name := range due {
		s.sendMark(name)
	}
}

// redactURL drops a URL's query (it may hold a token) for logs and errors.
func redactURL(raw string) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] == '?' {
			return raw[:i] + "?…"
		}
	}
	return raw
}
