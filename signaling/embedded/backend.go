package embedded

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
)

// Name is the backend name the daemon registers the embedded engine under
// (sessions.backends: {echo: media}, start option backend: "media").
const Name = "media"

// Types returns the session types the Backend serves.
func Types() []string { return []string{signaling.TypeEcho, signaling.TypeProxy} }

// Backend serves echo and proxy sessions on a *media.Engine. It is safe for
// concurrent use.
type Backend struct {
	eng *media.Engine
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Media
	users    map[string]string // session id → user, for room info
	closed   bool
	rooms    *Rooms         // publish/listen/park/mcu, set by EnableRooms (rooms.go)
	streams  *streamsConf   // audio streams and bots, set by EnableStreams (stream.go)
	wg       sync.WaitGroup // background Close of stopped media sessions
}

// New returns a Backend on eng (which the caller owns and closes after
// Backend.Close). A nil log discards.
func New(eng *media.Engine, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{eng: eng, log: log.With("component", "embedded"), sessions: make(map[string]*Media), users: make(map[string]string)}
}

// Engine returns the media engine the Backend runs on.
func (b *Backend) Engine() *media.Engine { return b.eng }

// Sessions returns the number of live sessions the Backend holds.
func (b *Backend) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Transcoding returns how many live sessions transcode (the bridge has
// transcoded packets toward one side or the other).
func (b *Backend) Transcoding() int {
	b.mu.Lock()
	ms := make([]*Media, 0, len(b.sessions))
	for _, m := range b.sessions {
		ms = append(ms, m)
	}
	b.mu.Unlock()
	n := 0
	for _, m := range ms {
		if s := m.Session(); s != nil {
			if st := s.Stats(); st[0].Transcoded > 0 || st[1].Transcoded > 0 {
				n++
			}
		}
	}
	return n
}

// Media returns the media of the live session id, if this Backend serves it.
func (b *Backend) Media(sessionID string) (*Media, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.sessions[sessionID]
	if !ok || m.Session() == nil {
		return nil, false
	}
	return m, true
}

// Close refuses new sessions, stops the remaining ones (without reporting)
// and waits until their media is released. Stop the signaling core first so
// that sessions end with their proper reason.
func (b *Backend) Close() {
	b.mu.Lock()
	b.closed = true // from now on Stop closes synchronously
	left := make([]*Media, 0, len(b.sessions))
	for _, m := range b.sessions {
		left = append(left, m)
	}
	b.mu.Unlock()
	b.wg.Wait() // background closes started before
	var wg sync.WaitGroup
	for _, m := range left {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Stop(signaling.Errorf(signaling.CodeSessionStop, "Media backend closed"))
		}()
	}
	wg.Wait()
	if rs := b.roomsOrNil(); rs != nil {
		rs.Close() // rooms.go
	}
}

// StartMedia implements signaling.Backend for echo and proxy.
func (b *Backend) StartMedia(ctx context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	if isRoomType(req.Type) {
		return b.startRoomMedia(ctx, req) // rooms.go
	}
	if req.Type != signaling.TypeEcho && req.Type != signaling.TypeProxy && req.Type != signaling.TypeBot {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNoMediaserver, "The embedded media engine does not serve session type %s", req.Type)
	}
	if len(req.Offer) == 0 || req.Offer.SDP() == "" {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeMissingOffer, "Missing offer: session type %s needs an offer with an sdp", req.Type)
	}
	if len(req.Answer) > 0 {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: answer (session type %s makes its own)", req.Type)
	}
	callerKind, err := kindOf(req.Offer.SDPType(), "offer.sdp_type")
	if err != nil {
		return nil, signaling.MediaResult{}, err
	}
	initial, err := mediaOptions(req.Offer)
	if err != nil {
		return nil, signaling.MediaResult{}, err
	}
	m := &Media{b: b, id: req.SessionID, typ: req.Type, rep: req.Reporter, callerKind: callerKind,
		log: b.log.With("session_id", req.SessionID, "type", req.Type)}
	opts := media.SessionOptions{
		ID:     req.SessionID,
		Media:  initial,
		OnStop: m.engineStopped,
		OnDTMF: m.dtmfReceived,
		Owner:  req.User,
		OnRecordStop: func(paths []string, reason string) {
			if m.rep != nil {
				m.rep.Event("info", map[string]any{"info": map[string]any{"record_stopped": paths, "reason": reason}})
			}
		},
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is shutting down")
	}
	if _, dup := b.sessions[req.SessionID]; dup {
		b.mu.Unlock()
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeDuplicatedSessionID, "Duplicated session id: %s", req.SessionID)
	}
	b.sessions[req.SessionID] = m // reserved: Media(id) finds it once sess is set
	b.mu.Unlock()

	offer := media.Description{Kind: callerKind, SDP: req.Offer.SDP()}
	var (
		sess *media.Session
		out  media.Description
		res  signaling.MediaResult
	)
	switch req.Type {
	case signaling.TypeEcho:
		sess, out, err = b.eng.StartEcho(ctx, offer, opts)
		if err == nil {
			res.Answer = descOf(out, nil)
		}
	case signaling.TypeBot:
		sess, out, err = b.startBot(ctx, req, m, opts, offer) // stream.go
		if err == nil {
			res.Answer = descOf(out, nil)
		}
	case signaling.TypeProxy:
		var farKind media.Kind
		farKind, err = farKindOf(req.Options)
		if err != nil {
			break
		}
		m.farKind = farKind
		sess, out, err = b.eng.StartProxy(ctx, offer, farKind, opts)
		if err == nil {
			res.Offer = descOf(out, req.Offer)
		}
	}
	if err != nil {
		b.forget(m)
		m.log.Info("embedded: media start failed", "err", err)
		return nil, signaling.MediaResult{}, startError(err)
	}
	m.mu.Lock()
	m.sess = sess
	stoppedEarly, closedMeanwhile := m.stopInfo, m.stopped
	m.mu.Unlock()
	if closedMeanwhile { // Backend.Close stopped it while it was starting
		sess.Close()
		b.forget(m)
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is shutting down")
	}
	if stoppedEarly != nil { // the engine stopped it before we got hold of it
		m.engineStopped(*stoppedEarly)
	}
	m.log.Debug("embedded: media started", "caller", callerKind, "far", m.farKind)
	return m, res, nil
}

func (b *Backend) forget(m *Media) {
	b.mu.Lock()
	if b.sessions[m.id] == m {
		delete(b.sessions, m.id)
		delete(b.users, m.id)
	}
	b.mu.Unlock()
}

// kindOf validates an sdp_type.
func kindOf(s, field string) (media.Kind, error) {
	switch media.Kind(s) {
	case media.KindWebRTC, media.KindRTP:
		return media.Kind(s), nil
	}
	return "", signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: %s (want \"webrtc\" or \"rtp\", got %q)", field, s)
}

// farKindOf reads the far side's kind of a proxy: proxy_type, else a
// top-level sdp_type, else webrtc.
func farKindOf(opts map[string]any) (media.Kind, error) {
	for _, k := range []string{"proxy_type", "sdp_type"} {
		v, ok := opts[k]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return "", signaling.InvalidField(k)
		}
		if s == "" {
			continue
		}
		return kindOf(s, k)
	}
	return media.KindWebRTC, nil
}

// descOf turns an engine description into an API descriptor; for a far offer
// the caller's names and ids are carried along.
func descOf(d media.Description, from signaling.Desc) signaling.Desc {
	out := signaling.Desc{"sdp": d.SDP, "sdp_type": string(d.Kind)}
	for _, k := range []string{"caller_name", "caller_id", "callee_name", "callee_id"} {
		if v, ok := from[k]; ok {
			out[k] = v
		}
	}
	return out
}

// startError maps engine errors to clear session/start errors.
func startError(err error) error { return sdpError(err, "offer") }

// sdpError maps engine errors about an SDP (what: "offer" or "answer") to
// clear API errors.
func sdpError(err error, what string) error {
	var se *signaling.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, media.ErrNoAudio):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid %s: the SDP has no audio stream", what)
	case errors.Is(err, media.ErrNoCodec):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid %s: no common audio codec", what)
	case errors.Is(err, media.ErrBadKind):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: sdp_type (%v)", err)
	case errors.Is(err, media.ErrBadSDP):
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid %s SDP: %s", what, detail(err))
	case errors.Is(err, media.ErrTooMany):
		return signaling.Errorf(signaling.CodeNoMediaserver, "Media engine full: too many sessions")
	case errors.Is(err, media.ErrPortQuota):
		return signaling.Errorf(signaling.CodeInvalidOperation, "%s", strings.TrimPrefix(err.Error(), "media: "))
	case errors.Is(err, plainrtp.ErrNoPorts):
		return signaling.Errorf(signaling.CodeNoMediaserver, "Media engine full: no free RTP ports")
	case errors.Is(err, media.ErrNoRecordDir):
		return signaling.Errorf(signaling.CodeNotImplemented, "Recording is not configured (media.record_dir)")
	case errors.Is(err, media.ErrClosed):
		return signaling.Errorf(signaling.CodeNoMediaserver, "Media engine is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return signaling.Errorf(signaling.CodeTimeout, "Media start interrupted: %v", err)
	}
	return signaling.Errorf(signaling.CodeInternalError, "Media start failed: %v", err)
}

// detail is an engine error's text without the package prefixes.
func detail(err error) string {
	s := err.Error()
	for _, p := range []string{"media: bad SDP: ", "plainrtp: bad SDP: ", "media: ", "plainrtp: ", "sdp: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// mediaOptions reads {use_audio, use_video, bitrate, record} from a map.
func mediaOptions(opts map[string]any) (media.MediaOptions, error) {
	var o media.MediaOptions
	boolean := func(k string) (*bool, error) {
		v, ok := opts[k]
		if !ok || v == nil {
			return nil, nil
		}
		b, ok := v.(bool)
		if !ok {
			return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: %s (want true or false)", k)
		}
		return &b, nil
	}
	var err error
	if o.UseAudio, err = boolean("use_audio"); err != nil {
		return o, err
	}
	if o.UseVideo, err = boolean("use_video"); err != nil {
		return o, err
	}
	if o.Record, err = boolean("record"); err != nil {
		return o, err
	}
	if v, ok := opts["bitrate"]; ok && v != nil {
		f, ok := number(v)
		if !ok || f < 0 || f > 100_000_000 || f != math.Trunc(f) {
			return o, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: bitrate (want bits/s from 0 to 100000000)")
		}
		n := int(f)
		o.Bitrate = &n
	}
	return o, nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// stopError is the API error for an engine-initiated stop.
func stopError(info media.StopInfo) *signaling.Error {
	switch info.Cause {
	case media.CauseMediaTimeout:
		return signaling.Errorf(signaling.CodeTimeout, "Media timeout: %s", info.Reason)
	case media.CauseICEFailed:
		return signaling.Errorf(signaling.CodeUnknown, "ICE failed: %s", info.Reason)
	case media.CauseDTLSFailed:
		return signaling.Errorf(signaling.CodeUnknown, "DTLS failed: %s", info.Reason)
	case media.CausePeerClosed:
		return signaling.Errorf(signaling.CodePeerHangup, "Peer closed the media: %s", info.Reason)
	case media.CauseEngineClosed:
		return signaling.Errorf(signaling.CodeSessionStop, "Media engine stopped")
	}
	return signaling.Errorf(signaling.CodeUnknown, "Media stopped: %s: %s", info.Cause, info.Reason)
}
