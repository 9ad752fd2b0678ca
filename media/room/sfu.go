package room

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media"
)

// publisher is a sender in an SFU room; it is the Tap of its session.
type publisher struct {
	r     *Room
	id    string
	gen   uint64
	ep    atomic.Pointer[epBox]
	lists atomic.Pointer[[]*listener]
	mu    sync.Mutex // serializes changes of lists
}

type epBox struct{ ep Endpoint }

var _ media.Tap = (*publisher)(nil)

func (p *publisher) endpoint() Endpoint {
	if b := p.ep.Load(); b != nil {
		return b.ep
	}
	return nil
}

// Media fans a publisher's packet out to its listeners.
func (p *publisher) Media(video bool, f media.Format, h *rtp.Header, payload []byte) {
	ls := p.lists.Load()
	if ls == nil {
		return
	}
	for _, l := range *ls {
		l.forward(p, video, f, h, payload)
	}
}

func (p *publisher) KeyframeRequest() {}

func (p *publisher) addListener(l *listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var cur []*listener
	if ls := p.lists.Load(); ls != nil {
		cur = *ls
	}
	next := append(append([]*listener(nil), cur...), l)
	p.lists.Store(&next)
}

func (p *publisher) removeListener(l *listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := p.lists.Load()
	if ls == nil {
		return
	}
	next := make([]*listener, 0, len(*ls))
	for _, x := range *ls {
		if x != l {
			next = append(next, x)
		}
	}
	p.lists.Store(&next)
}

func (p *publisher) detach() {
	p.mu.Lock()
	p.lists.Store(nil)
	p.mu.Unlock()
}

// Rewriter maps the sequence numbers and timestamps of successive sources onto one continuous
// outgoing stream: when the source changes (a listener switched to another publisher), the
// output continues from the last packet sent (sequence +1, timestamp advanced by the wall
// time elapsed), so the receiver sees one smooth stream. The SSRC is the receiver leg's own
// and never changes.
type Rewriter struct {
	started          bool
	src              uint64
	inSeq, outSeq    uint16
	inTS, outTS      uint32
	lastSeq          uint16
	lastTS           uint32
	lastWall         time.Time
	Switches, Anchor int
}

// Rewrite returns the outgoing sequence number and timestamp of a packet of source src (an
// identity that changes on a switch) with clock rate rate, received at now.
func (w *Rewriter) Rewrite(src uint64, seq uint16, ts uint32, rate uint32, now time.Time) (uint16, uint32) {
	if !w.started || src != w.src {
		if !w.started {
			w.outSeq, w.outTS = uint16(rand.Uint32()), rand.Uint32()
		} else {
			w.Switches++
			adv := uint32(now.Sub(w.lastWall).Seconds() * float64(rate))
			if adv == 0 {
				adv = 1
			}
			w.outSeq, w.outTS = w.lastSeq+1, w.lastTS+adv
		}
		w.Anchor++
		w.started, w.src, w.inSeq, w.inTS = true, src, seq, ts
		w.lastSeq, w.lastTS = w.outSeq-1, w.outTS
	}
	os := w.outSeq + (seq - w.inSeq)
	ot := w.outTS + (ts - w.inTS)
	if int16(os-w.lastSeq) > 0 {
		w.lastSeq = os
	}
	if int32(ot-w.lastTS) >= 0 {
		w.lastTS = ot
		w.lastWall = now
	}
	return os, ot
}

// listener receives one publisher of an SFU room.
type listener struct {
	r  *Room
	id string
	ep Endpoint

	pub  atomic.Pointer[publisher]
	fmts atomic.Pointer[[2][]media.Format]

	mu  sync.Mutex
	rw  [2]Rewriter
	ka  time.Time
	hdr rtp.Header
}

func (l *listener) publisherID() string {
	if p := l.pub.Load(); p != nil {
		return p.id
	}
	return ""
}

func (l *listener) Media(bool, media.Format, *rtp.Header, []byte) {} // what a listener sends is dropped

// KeyframeRequest forwards the listener's PLI to its publisher.
func (l *listener) KeyframeRequest() {
	if p := l.pub.Load(); p != nil {
		if ep := p.endpoint(); ep != nil {
			ep.RequestKeyframe()
		}
	}
}

func mapPT(list []media.Format, f media.Format) (uint8, bool) {
	for _, g := range list {
		if g.Name == f.Name && g.Rate == f.Rate {
			return g.PT, true
		}
	}
	return 0, false
}

func (l *listener) forward(p *publisher, video bool, f media.Format, h *rtp.Header, payload []byte) {
	if l.pub.Load() != p {
		return
	}
	fm := l.fmts.Load()
	if fm == nil {
		a, v := l.ep.CallerFormats()
		if len(a) == 0 {
			return // not answered yet
		}
		fm = &[2][]media.Format{a, v}
		l.fmts.Store(fm)
	}
	audio, vid := fm[0], fm[1]
	list := audio
	k := 0
	if video {
		list, k = vid, 1
	}
	pt, ok := mapPT(list, f)
	if !ok {
		return
	}
	now := time.Now()
	l.mu.Lock()
	seq, ts := l.rw[k].Rewrite(p.gen, h.SequenceNumber, h.Timestamp, f.Rate, now)
	l.hdr = rtp.Header{Version: 2, Marker: h.Marker, PayloadType: pt, SequenceNumber: seq, Timestamp: ts}
	hdr := l.hdr
	ka := now.Sub(l.ka) > time.Second
	if ka {
		l.ka = now
	}
	l.mu.Unlock()
	if ka {
		l.ep.KeepAlive()
	}
	_ = l.ep.WriteCaller(video, &hdr, payload)
}

func (l *listener) detach() {
	if p := l.pub.Swap(nil); p != nil {
		p.removeListener(l)
	}
}

// Publish adds a publisher to SFU room roomID (created when roomID is "" or create is set).
// start must start the publisher's session with the given Tap.
func (m *Manager) Publish(ctx context.Context, roomID string, create bool, o Options, sessionID string,
	start func(t media.Tap) (Endpoint, error)) (*Room, Endpoint, error) {
	r, err := m.getOrCreate(ClassSFU, roomID, create || roomID == "", o)
	if err != nil {
		return nil, nil, err
	}
	if err := m.addMember(r, sessionID); err != nil {
		m.touchEmpty(r)
		return nil, nil, err
	}
	p := &publisher{r: r, id: sessionID, gen: m.gen.Add(1)}
	ep, err := start(p)
	if err != nil {
		m.dropMember(r, sessionID)
		return nil, nil, err
	}
	p.ep.Store(&epBox{ep: ep})
	r.mu.Lock()
	if r.destroyed {
		r.mu.Unlock()
		m.dropMember(r, sessionID)
		return nil, nil, ErrNotFound
	}
	r.pubs[sessionID] = p
	r.mu.Unlock()
	m.touchEmpty(r)
	m.log.Info("publisher joined", "room_id", r.id, "session_id", sessionID)
	m.emit(r, "started_publisher", map[string]any{"session_id": sessionID})
	return r, ep, nil
}

// findPublisher finds publisher pid in any SFU room (or in roomID when given).
func (m *Manager) findPublisher(roomID, pid string) (*Room, *publisher, error) {
	m.mu.Lock()
	r, ok := m.member[pid]
	m.mu.Unlock()
	if !ok || (roomID != "" && r.id != roomID) {
		return nil, nil, ErrNoPublisher
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pubs[pid]
	if !ok || p.endpoint() == nil {
		return nil, nil, ErrNoPublisher
	}
	return r, p, nil
}

// Listen adds a listener of publisher pid. start must start the listener's session (an offer
// with the given formats: the publisher's) with the given Tap.
func (m *Manager) Listen(ctx context.Context, roomID, pid, sessionID string,
	start func(audio, video []media.Format, t media.Tap) (Endpoint, error)) (*Room, Endpoint, error) {
	r, p, err := m.findPublisher(roomID, pid)
	if err != nil {
		return nil, nil, err
	}
	if err := m.addMember(r, sessionID); err != nil {
		return nil, nil, err
	}
	audio, video := p.endpoint().CallerFormats()
	l := &listener{r: r, id: sessionID}
	ep, err := start(audio, video, l)
	if err != nil {
		m.dropMember(r, sessionID)
		return nil, nil, err
	}
	l.ep = ep
	r.mu.Lock()
	if r.destroyed || r.pubs[pid] != p {
		r.mu.Unlock()
		m.dropMember(r, sessionID)
		return nil, nil, ErrNoPublisher
	}
	r.lists[sessionID] = l
	l.pub.Store(p)
	p.addListener(l)
	r.mu.Unlock()
	m.touchEmpty(r)
	p.endpoint().RequestKeyframe()
	m.log.Info("listener joined", "room_id", r.id, "session_id", sessionID, "publisher_id", pid)
	m.emit(r, "started_listener", map[string]any{"session_id": sessionID, "publisher_id": pid})
	return r, ep, nil
}

// Switch moves listener sessionID to publisher pid of the same room, without renegotiation.
func (m *Manager) Switch(sessionID, pid string) error {
	r, ok := m.RoomOf(sessionID)
	if !ok {
		return ErrNotFound
	}
	r.mu.Lock()
	l, ok := r.lists[sessionID]
	np, ok2 := r.pubs[pid]
	r.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if !ok2 || np.endpoint() == nil {
		return ErrNoPublisher
	}
	old := l.pub.Load()
	if old == np {
		return nil
	}
	if old != nil {
		old.removeListener(l)
	}
	l.pub.Store(np)
	np.addListener(l)
	np.endpoint().RequestKeyframe()
	oldID := ""
	if old != nil {
		oldID = old.id
	}
	m.log.Info("listener switched", "room_id", r.id, "session_id", sessionID, "from", oldID, "to", pid)
	m.emit(r, "stopped_listener", map[string]any{"session_id": sessionID, "publisher_id": oldID})
	m.emit(r, "started_listener", map[string]any{"session_id": sessionID, "publisher_id": pid})
	return nil
}
