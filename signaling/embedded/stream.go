package embedded

// Live audio streams (signaling.AudioStreamer) and bot sessions (signaling.TypeBot) on the
// engine's sessions, through package media/stream.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/stream"
	"github.com/nkbridge/nkbridge/signaling"
)

var _ signaling.AudioStreamer = (*Media)(nil)

// streamsConf is what EnableStreams set.
type streamsConf struct {
	mgr  *stream.Manager
	bots map[string]stream.Options
}

// streamState is a Media's live streams.
type streamState struct {
	mu   sync.Mutex
	live map[string]*stream.Stream
	dtmf func() // OnDTMF registration of the streams, while any runs
}

// EnableStreams lets the Backend's sessions stream their audio (signaling.AudioStreamer)
// through mgr, and serve session type bot for the configured bots (name → options; a bot's
// options are checked here, its URL against the allow-list). Call it before the first session.
func (b *Backend) EnableStreams(mgr *stream.Manager, bots map[string]stream.Options) error {
	checked := make(map[string]stream.Options, len(bots))
	for name, o := range bots {
		if !signaling.ValidID(name) {
			return fmt.Errorf("streams.bots: bad bot name %q", name)
		}
		if err := mgr.Check(&o, "", true); err != nil {
			return fmt.Errorf("streams.bots.%s: %w", name, err)
		}
		checked[strings.ToLower(name)] = o
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streams = &streamsConf{mgr: mgr, bots: checked}
	return nil
}

// Bots returns the names of the configured bots, sorted.
func (b *Backend) Bots() []string {
	sc := b.streamsOrNil()
	if sc == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(sc.bots))
}

func (b *Backend) streamsOrNil() *streamsConf {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams
}

// discardTap takes the caller's media of a bot session: nothing is echoed, the stream has it.
type discardTap struct{}

func (discardTap) Media(bool, media.Format, *rtp.Header, []byte) {}
func (discardTap) KeyframeRequest()                              {}

// startBot answers a bot session's offer and connects its stream: options "bot" (a configured
// bot's name) or "stream" (the API's stream object, checked for the user). The stream is
// bidirectional unless the options say otherwise, and the session ends with it.
func (b *Backend) startBot(ctx context.Context, req signaling.MediaRequest, m *Media, opts media.SessionOptions, offer media.Description) (*media.Session, media.Description, error) {
	sc := b.streamsOrNil()
	if sc == nil {
		return nil, media.Description{}, signaling.Errorf(signaling.CodeNoMediaserver, "Audio streams are not enabled (session type bot)")
	}
	var so map[string]any
	user := req.User
	configured := false
	switch name, raw := req.Options["bot"], req.Options["stream"]; {
	case name != nil:
		n, _ := name.(string)
		o, ok := sc.bots[strings.ToLower(n)]
		if !ok {
			return nil, media.Description{}, signaling.Errorf(signaling.CodeNoDestination, "No such bot: %q (streams.bots)", n)
		}
		configured = true
		so = optionsMap(o)
	case raw != nil:
		obj, ok := raw.(map[string]any)
		if !ok {
			return nil, media.Description{}, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream (want an object)")
		}
		so = maps.Clone(obj)
		if _, set := so["bidirectional"]; !set {
			so["bidirectional"] = true
		}
	default:
		return nil, media.Description{}, signaling.MissingField("bot")
	}
	so["hangup_on_close"] = true
	o, err := parseStreamOptions(so)
	if err != nil {
		return nil, media.Description{}, err
	}
	if err := sc.mgr.Check(&o, user, configured); err != nil {
		return nil, media.Description{}, streamError(err)
	}
	sess, ans, err := b.eng.StartPublish(ctx, offer, opts, discardTap{})
	if err != nil {
		return nil, media.Description{}, err
	}
	m.mu.Lock()
	m.sess = sess
	m.mu.Unlock()
	to := "bot"
	if n, _ := req.Options["bot"].(string); n != "" {
		to = "bot-" + n
	}
	from := req.Offer.String("caller_id")
	if from == "" {
		from = req.Offer.String("caller_name")
	}
	if _, err := m.startStream(ctx, sc, o, signaling.StreamRequest{From: from, To: to}); err != nil {
		sess.Close()
		return nil, media.Description{}, err
	}
	return sess, ans, nil
}

// optionsMap turns configured options into the API's map form.
func optionsMap(o stream.Options) map[string]any {
	b, _ := json.Marshal(o)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// parseStreamOptions reads the API's stream object strictly (unknown fields are errors).
func parseStreamOptions(opts map[string]any) (stream.Options, error) {
	var o stream.Options
	b, err := json.Marshal(opts)
	if err != nil {
		return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream (%s)", strings.TrimPrefix(err.Error(), "json: "))
	}
	if err := o.Normalize(); err != nil {
		return o, streamError(err)
	}
	return o, nil
}

// streamError maps the stream package's errors to API errors.
func streamError(err error) error {
	var se *signaling.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, stream.ErrNotAllowed):
		return signaling.Errorf(signaling.CodeUnauthorized, "Stream refused: %s", strings.TrimPrefix(err.Error(), "stream: not allowed: "))
	case errors.Is(err, stream.ErrBadOptions):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: stream (%s)", strings.TrimPrefix(err.Error(), "stream: bad options: "))
	}
	return signaling.Errorf(signaling.CodeNoMediaserver, "Stream application unavailable: %s", strings.TrimPrefix(err.Error(), "stream: "))
}

// CheckStream implements signaling.AudioStreamer.
func (m *Media) CheckStream(req signaling.StreamRequest) error {
	sc := m.b.streamsOrNil()
	if sc == nil {
		return signaling.Errorf(signaling.CodeNotImplemented, "Audio streams are not enabled on this server")
	}
	o, err := parseStreamOptions(req.Options)
	if err != nil {
		return err
	}
	if o.Bidirectional && m.typ != signaling.TypeBot {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Invalid field: stream.bidirectional (audio is played into bot sessions only; session %s is %s)", m.id, m.typ)
	}
	if m.typ != signaling.TypeEcho && m.typ != signaling.TypeProxy && m.typ != signaling.TypeBot {
		return signaling.Errorf(signaling.CodeNotImplemented, "Not implemented: %s sessions cannot stream audio", m.typ)
	}
	if err := sc.mgr.Check(&o, req.User, false); err != nil {
		return streamError(err)
	}
	return nil
}

// StartStream implements signaling.AudioStreamer.
func (m *Media) StartStream(ctx context.Context, req signaling.StreamRequest) (signaling.StreamInfo, error) {
	if err := m.CheckStream(req); err != nil {
		return signaling.StreamInfo{}, err
	}
	o, _ := parseStreamOptions(req.Options)
	return m.startStream(ctx, m.b.streamsOrNil(), o, req)
}

func (m *Media) startStream(ctx context.Context, sc *streamsConf, o stream.Options, req signaling.StreamRequest) (signaling.StreamInfo, error) {
	sess := m.Session()
	if sess == nil {
		return signaling.StreamInfo{}, signaling.Errorf(signaling.CodeInvalidOperation, "Session %s has no media yet", m.id)
	}
	var st *stream.Stream
	ready := make(chan struct{}) // st is set (the events may come before Start returns)
	ev := stream.Events{
		Ended: func(reason string, hangup bool) {
			<-ready
			m.forgetStream(st)
			if m.rep == nil {
				return
			}
			m.rep.Event("info", map[string]any{"info": map[string]any{"stream": "stopped", "stream_id": st.ID(), "reason": reason,
				"frames_sent": st.Stats().FramesSent, "frames_dropped": st.Stats().FramesDropped}})
			if hangup {
				m.rep.Stopped(signaling.Errorf(signaling.CodeSessionStop, "Stream ended: %s", reason))
			}
		},
		Reconnected: func(attempt int) {
			<-ready
			if m.rep != nil {
				m.rep.Event("info", map[string]any{"info": map[string]any{"stream": "reconnected", "stream_id": st.ID(), "attempt": attempt}})
			}
		},
	}
	var err error
	st, err = sc.mgr.Start(ctx, sess, o, stream.Call{SessionID: m.id, CallID: req.CallID, From: req.From, To: req.To}, ev)
	if err != nil {
		return signaling.StreamInfo{}, streamError(err) // no event comes for a stream that did not start
	}
	close(ready)
	m.streams.mu.Lock()
	stopped := m.stoppedLocked()
	if !stopped {
		if m.streams.live == nil {
			m.streams.live = map[string]*stream.Stream{}
		}
		m.streams.live[st.ID()] = st
		if m.streams.dtmf == nil {
			m.streams.dtmf = m.OnDTMF(m.streamDTMF)
		}
	}
	m.streams.mu.Unlock()
	if stopped {
		st.Stop("session stopped")
		return signaling.StreamInfo{}, signaling.Errorf(signaling.CodeSessionStop, "Session %s stopped", m.id)
	}
	if m.rep != nil {
		m.rep.Event("info", map[string]any{"info": map[string]any{"stream": "started", "stream_id": st.ID(), "framing": o.Framing,
			"mix": o.Mix, "sample_rate": o.SampleRate, "bidirectional": o.Bidirectional}})
	}
	return signaling.StreamInfo{ID: st.ID()}, nil
}

func (m *Media) stoppedLocked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopped
}

func (m *Media) streamDTMF(from signaling.Side, digit rune) {
	m.streams.mu.Lock()
	list := make([]*stream.Stream, 0, len(m.streams.live))
	for _, st := range m.streams.live {
		list = append(list, st)
	}
	m.streams.mu.Unlock()
	for _, st := range list {
		st.DTMF(engineSide(from), digit)
	}
}

func (m *Media) forgetStream(st *stream.Stream) {
	m.streams.mu.Lock()
	defer m.streams.mu.Unlock()
	delete(m.streams.live, st.ID())
	if len(m.streams.live) == 0 && m.streams.dtmf != nil {
		m.streams.dtmf()
		m.streams.dtmf = nil
	}
}

// StopStream implements signaling.AudioStreamer.
func (m *Media) StopStream(id string) error {
	m.streams.mu.Lock()
	var list []*stream.Stream
	if id == "" {
		for _, st := range m.streams.live {
			list = append(list, st)
		}
	} else if st, ok := m.streams.live[id]; ok {
		list = append(list, st)
	}
	for _, st := range list {
		delete(m.streams.live, st.ID())
	}
	if len(m.streams.live) == 0 && m.streams.dtmf != nil {
		m.streams.dtmf()
		m.streams.dtmf = nil
	}
	m.streams.mu.Unlock()
	if id != "" && len(list) == 0 {
		return signaling.Errorf(signaling.CodeInvalidParameters, "No such stream: %s", id)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID() < list[j].ID() })
	for _, st := range list {
		st.Stop("stopped by request")
		if m.rep != nil {
			m.rep.Event("info", map[string]any{"info": map[string]any{"stream": "stopped", "stream_id": st.ID(), "reason": "stopped by request",
				"frames_sent": st.Stats().FramesSent, "frames_dropped": st.Stats().FramesDropped}})
		}
	}
	return nil
}

// stopStreams ends the session's streams when it stops (the stop message says why).
func (m *Media) stopStreams(reason string) {
	m.streams.mu.Lock()
	list := make([]*stream.Stream, 0, len(m.streams.live))
	for _, st := range m.streams.live {
		list = append(list, st)
	}
	m.streams.live = nil
	m.streams.mu.Unlock()
	for _, st := range list {
		st.Stop(reason)
	}
}

// Streams returns the figures of the session's live streams.
func (m *Media) Streams() []stream.Stats {
	m.streams.mu.Lock()
	defer m.streams.mu.Unlock()
	out := make([]stream.Stats, 0, len(m.streams.live))
	for _, st := range m.streams.live {
		out = append(out, st.Stats())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
