package room

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/wav"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/mixer"
)

// Jitter buffer of mcu participants: play after 3 packets (60 ms at 20 ms), hold at most 25.
const (
	jitterTarget = 3
	jitterMax    = 25
)

// participant is one member of an audio conference; it is the Tap of its session.
type participant struct {
	id string
	ep Endpoint

	mu     sync.Mutex // src
	src    *mixer.Source
	badFmt string

	// used by the mixer goroutine only
	sink     *mixer.Sink
	pt       uint8
	seq      uint16
	ts       uint32
	talk     mixer.TalkDetector
	in, out  []int16
	encBuf   []byte
	sentPkts uint64
}

var _ media.Tap = (*participant)(nil)

// Media queues a participant's audio for the mixer (video and telephone-events are ignored).
func (p *participant) Media(video bool, f media.Format, h *rtp.Header, payload []byte) {
	if video || f.IsTelephoneEvent() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.src == nil || p.src.Codec() != f.Name {
		if f.Name == p.badFmt {
			return
		}
		src, err := mixer.NewSource(f.Name, jitterTarget, jitterMax)
		if err != nil {
			p.badFmt = f.Name
			return
		}
		p.src = src
	}
	p.src.Push(mixer.Packet{Seq: h.SequenceNumber, TS: h.Timestamp, Payload: payload})
}

func (p *participant) KeyframeRequest() {}

// mixRoom is the mixer of an mcu room.
type mixRoom struct {
	r *Room

	mu       sync.Mutex
	parts    map[string]*participant
	order    []*participant
	closed   bool
	rec      *wav.Writer
	recEnd   time.Time // when the recording reaches media.record_max_duration
	recPaths []string
	stop     chan struct{}
	done     chan struct{}
}

func newMixRoom(r *Room) (*mixRoom, error) {
	mr := &mixRoom{r: r, parts: map[string]*participant{}, stop: make(chan struct{}), done: make(chan struct{})}
	if r.opts.Record {
		if err := mr.startRecording(); err != nil {
			return nil, err
		}
	}
	r.m.wg.Add(1)
	go mr.loop()
	return mr, nil
}

func (mr *mixRoom) count() int {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	return len(mr.parts)
}

func (mr *mixRoom) members() map[string]bool {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	out := make(map[string]bool, len(mr.parts))
	for id, p := range mr.parts {
		out[id] = p.talk.Talking()
	}
	return out
}

func (mr *mixRoom) recordPaths() []string {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	return append([]string{}, mr.recPaths...)
}

func (mr *mixRoom) startRecording() error {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if mr.rec != nil {
		return nil
	}
	dir := mr.r.m.cfg.RecordDir
	if dir == "" {
		return errors.New("room: recording is not configured")
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-mix-%s.wav", safeName(mr.r.id), time.Now().UTC().Format("20060102T150405.000")))
	// Whole 20 ms frames of 8 kHz audio, so that the writer is Full exactly at the bound.
	maxBytes := max(min(mr.r.m.cfg.RecordMaxBytes, math.MaxUint32-wav.HeaderLen)/recFrameBytes, 1) * recFrameBytes
	w, err := wav.Create(p, 8000, maxBytes)
	if err != nil {
		return fmt.Errorf("room: record: %w", err)
	}
	mr.rec = w
	mr.recEnd = time.Now().Add(mr.r.m.cfg.RecordMaxDuration)
	mr.recPaths = append(mr.recPaths, p)
	return nil
}

// recFrameBytes is one 20 ms frame of the 8 kHz 16-bit mix recording.
const recFrameBytes = 2 * mixer.FrameSamples / 6

// recordLimit ends the mix recording w if it reached a bound, and says so with an event.
func (mr *mixRoom) recordLimit(w *wav.Writer, now time.Time) {
	mr.mu.Lock()
	var reason string
	switch {
	case mr.rec != w:
		mr.mu.Unlock()
		return
	case w.Full():
		reason = fmt.Sprintf("recording reached %d bytes (media.record_max_bytes)", mr.r.m.cfg.RecordMaxBytes)
	case !now.Before(mr.recEnd):
		reason = fmt.Sprintf("recording reached %s (media.record_max_duration)", mr.r.m.cfg.RecordMaxDuration)
	default:
		mr.mu.Unlock()
		return
	}
	mr.rec = nil
	path := mr.recPaths[len(mr.recPaths)-1]
	mr.mu.Unlock()
	if err := w.Close(); err != nil {
		mr.r.m.log.Warn("room recording", "room_id", mr.r.id, "err", err)
	}
	mr.r.m.log.Info("room recording stopped at its limit", "room_id", mr.r.id, "reason", reason, "path", path)
	mr.r.m.emit(mr.r, "record_stopped", map[string]any{"record_paths": []string{path}, "reason": reason})
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func (mr *mixRoom) add(p *participant) {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	mr.parts[p.id] = p
	mr.order = append(mr.order, p)
}

func (mr *mixRoom) remove(id string, m *Manager) bool {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	p, ok := mr.parts[id]
	if !ok {
		return false
	}
	if pos, ok := p.position(); ok {
		m.savePos(id, pos)
	}
	delete(mr.parts, id)
	next := make([]*participant, 0, len(mr.order))
	for _, x := range mr.order {
		if x != p {
			next = append(next, x)
		}
	}
	mr.order = next
	return true
}

// close stops the mixer and returns who was in.
func (mr *mixRoom) close() []string {
	mr.mu.Lock()
	if mr.closed {
		mr.mu.Unlock()
		return nil
	}
	mr.closed = true
	ids := make([]string, 0, len(mr.parts))
	for id := range mr.parts {
		ids = append(ids, id)
	}
	mr.parts, mr.order = map[string]*participant{}, nil
	close(mr.stop)
	mr.mu.Unlock()
	<-mr.done
	mr.mu.Lock()
	if mr.rec != nil {
		if err := mr.rec.Close(); err != nil {
			mr.r.m.log.Warn("room recording", "room_id", mr.r.id, "err", err)
		}
		mr.rec = nil
	}
	mr.mu.Unlock()
	return ids
}

func (mr *mixRoom) loop() {
	defer mr.r.m.wg.Done()
	defer close(mr.done)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var (
		ins  [][]int16
		outs [][]int16
		sum  = make([]int32, mixer.FrameSamples)
		mix  = make([]int16, mixer.FrameSamples)
		down []int16
	)
	for {
		select {
		case <-mr.stop:
			return
		case <-t.C:
		}
		mr.mu.Lock()
		parts := mr.order
		rec := mr.rec
		mr.mu.Unlock()
		if len(parts) == 0 && rec == nil {
			continue
		}
		ins, outs = ins[:0], outs[:0]
		type talkEv struct {
			id      string
			talking bool
		}
		var evs []talkEv
		for _, p := range parts {
			if p.in == nil {
				p.in = make([]int16, mixer.FrameSamples)
				p.out = make([]int16, mixer.FrameSamples)
				p.encBuf = make([]byte, 1500)
			}
			p.mu.Lock()
			active := p.src != nil && p.src.Frame(p.in)
			p.mu.Unlock()
			level := -100.0
			if active {
				ins = append(ins, p.in)
				level = mixer.LevelDB(p.in)
			} else {
				ins = append(ins, nil)
			}
			if changed, talking := p.talk.Push(level); changed {
				evs = append(evs, talkEv{p.id, talking})
			}
			outs = append(outs, p.out)
		}
		mixer.Mix(ins, outs, sum)
		for i, p := range parts {
			p.send(outs[i])
		}
		if rec != nil {
			for k, v := range sum {
				mix[k] = clip32(v)
			}
			down = mixer.Down6(down[:0], mix)
			rec.Write(down)
			mr.recordLimit(rec, time.Now())
		}
		for _, e := range evs {
			mr.r.m.emit(mr.r, "talking", map[string]any{"session_id": e.id, "talking": e.talking})
		}
	}
}

func clip32(v int32) int16 {
	if v > 32767 {
		return 32767
	}
	if v < -32768 {
		return -32768
	}
	return int16(v)
}

// send encodes one mixed frame for p and writes it.
func (p *participant) send(frame []int16) {
	if p.sink == nil {
		return
	}
	p.mu.Lock()
	p.ts += p.sink.Step
	ready := p.ep.CallerReady(false)
	if ready {
		p.seq++
	}
	h := rtp.Header{Version: 2, PayloadType: p.pt, SequenceNumber: p.seq, Timestamp: p.ts, Marker: p.sentPkts == 0}
	p.mu.Unlock()
	if !ready {
		return
	}
	n, err := p.sink.Encode(p.encBuf, frame)
	if err != nil {
		return
	}
	if p.ep.WriteCaller(false, &h, p.encBuf[:n]) == nil {
		p.mu.Lock()
		p.sentPkts++
		p.mu.Unlock()
	}
}

// position is where p's stream stands (ok false when nothing was sent).
func (p *participant) position() (media.Position, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sentPkts == 0 || p.sink == nil {
		return media.Position{}, false
	}
	return media.Position{Seq: p.seq, TS: p.ts, Rate: p.sink.ClockRate, At: time.Now()}, true
}

// pickSink chooses the participant's output codec: its peer's first supported audio format.
func pickSink(audio []media.Format, prefer string) (*mixer.Sink, uint8, error) {
	var cands []media.Format
	for _, f := range audio {
		if !f.IsTelephoneEvent() && codec.Supported(f.Name) {
			cands = append(cands, f)
		}
	}
	if prefer != "" {
		for _, f := range cands {
			if f.Name == prefer {
				cands = []media.Format{f}
				break
			}
		}
	}
	for _, f := range cands {
		s, err := mixer.NewSink(f.Name)
		if err == nil {
			return s, f.PT, nil
		}
	}
	return nil, 0, errors.New("room: the participant has no codec the mixer can encode")
}

// JoinMCU puts a live session into audio conference roomID (created when roomID is "" or
// create is set): its audio goes to the mixer and it hears everyone else. record starts the
// room's mix recording if it is not running.
func (m *Manager) JoinMCU(roomID string, create bool, o Options, ep Endpoint, record bool) (*Room, error) {
	if record && m.cfg.RecordDir == "" {
		return nil, errors.New("room: recording is not configured")
	}
	r, err := m.getOrCreate(ClassMCU, roomID, create || roomID == "", o)
	if err != nil {
		return nil, err
	}
	audio, _ := ep.CallerFormats()
	sink, pt, err := pickSink(audio, r.opts.AudioCodec)
	if err != nil {
		m.touchEmpty(r)
		return nil, err
	}
	if r.opts.Bitrate > 0 {
		sink.SetBitrate(r.opts.Bitrate)
	}
	if err := m.addMember(r, ep.ID()); err != nil {
		m.touchEmpty(r)
		return nil, err
	}
	p := &participant{id: ep.ID(), ep: ep, sink: sink, pt: pt}
	p.seq, p.ts = m.startPos(ep, sink.ClockRate)
	if err := ep.Attach(p); err != nil {
		m.dropMember(r, ep.ID())
		return nil, err
	}
	r.mu.Lock()
	destroyed := r.destroyed
	r.mu.Unlock()
	if destroyed {
		m.dropMember(r, ep.ID())
		return nil, ErrNotFound
	}
	if record {
		if err := r.mix.startRecording(); err != nil {
			m.dropMember(r, ep.ID())
			return nil, err
		}
	}
	r.mix.add(p)
	m.touchEmpty(r)
	m.log.Info("mcu participant joined", "room_id", r.id, "session_id", ep.ID(), "codec", sink.Codec())
	m.emit(r, "started_publisher", map[string]any{"session_id": ep.ID(), "codec": sink.Codec()})
	return r, nil
}
