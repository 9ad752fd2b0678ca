// Package cdr makes call detail records (CDRs) and call life-cycle events and delivers them:
// to a JSON-lines file with rotation, to HTTP webhooks through a spool on disk (signed,
// retried, at least once, never lost across endpoint outages or restarts) and to admin
// subscribers of the event bus (core/cdr/record).
//
// A Service is the signaling core's Recorder (signaling.Options.Recorder). It joins a call
// with the records of its sessions (their media figures per leg: codec, packets, loss,
// jitter, an E-model MOS) into one record when both have ended, and writes records from one
// goroutine, so the core is never held up by a disk or an endpoint.
package cdr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/signaling"
)

// Observer is told what happens to records, for metrics. Methods must be quick.
type Observer interface {
	// Recorded: a record of event was made and handed to the sinks.
	Recorded(event string)
	// Dropped: a record was lost before reaching the spool (reason: queue_full, spool_full,
	// spool_error).
	Dropped(reason string)
	// Delivered: endpoint (a webhook's host) took a record.
	Delivered(endpoint string)
	// Failed: a delivery attempt to endpoint failed (it will be retried).
	Failed(endpoint string)
}

// Publisher publishes an event on the bus (signaling.Bus).
type Publisher interface {
	Publish(signaling.Event)
}

// Options configures a Service. See docs/CDR.md for every option.
type Options struct {
	Logger    *slog.Logger
	Node      string    // node name in records; "" = the host name
	Publisher Publisher // optional: core/cdr/record events
	Observer  Observer  // optional
	File      FileOptions
	// SpoolDir is the webhook spool's folder; required when Webhooks is not empty.
	SpoolDir string
	Spool    SpoolOptions
	Webhooks []WebhookOptions
	// QueueSize bounds the records waiting for the writer goroutine (beyond: dropped and
	// counted, reason queue_full). Default 10000.
	QueueSize int
	// JoinTimeout: a call's record waits this long for the records of its sessions
	// (default 2s).
	JoinTimeout time.Duration
}

// Service makes and delivers records; it implements signaling.Recorder.
type Service struct {
	o     Options
	log   *slog.Logger
	queue chan Record
	file  *fileSink
	spool *Spool
	hooks []*webhook

	mu      sync.Mutex
	early   map[string][]signaling.SessionRecord // sessions ended before their call
	swept   time.Time                            // last look for orphans in early
	pending map[string]*pendingCall              // calls waiting for their sessions
	closed  bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type pendingCall struct {
	rec   Record
	want  map[string]bool
	timer *time.Timer
}

// maxEarly bounds the sessions kept for calls that have not ended.
const maxEarly = 100000

// New opens the sinks and starts the writer and the webhook deliverers; Close stops them.
func New(o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 2 * time.Second
	}
	s := &Service{o: o, log: o.Logger, queue: make(chan Record, o.QueueSize),
		early: map[string][]signaling.SessionRecord{}, pending: map[string]*pendingCall{}}
	var err error
	if o.File.Path != "" {
		if s.file, err = openFileSink(o.File); err != nil {
			return nil, err
		}
	}
	if len(o.Webhooks) > 0 {
		if o.SpoolDir == "" {
			s.closeSinks()
			return nil, errors.New("cdr: webhooks need a spool folder (cdr.spool_dir)")
		}
		if s.spool, err = OpenSpool(o.SpoolDir, o.Spool); err != nil {
			s.closeSinks()
			return nil, err
		}
		if n := s.spool.Recovered(); n > 0 {
			s.log.Warn("cdr spool: torn tail cut off", "bytes", n, "dir", o.SpoolDir)
		}
		for _, wo := range o.Webhooks {
			h, err := newWebhook(wo, s.spool, o.Observer, s.log)
			if err != nil {
				s.closeSinks()
				return nil, err
			}
			s.hooks = append(s.hooks, h)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.writer()
	for _, h := range s.hooks {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			h.run(ctx)
		}()
	}
	return s, nil
}

func (s *Service) closeSinks() {
	if s.file != nil {
		_ = s.file.close()
	}
	if s.spool != nil {
		_ = s.spool.Close()
	}
}

// Close stops the deliverers, writes the queued records and closes the sinks. Calls still
// waiting for their sessions are written as they are.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	var late []Record
	for id, p := range s.pending {
		p.timer.Stop()
		late = append(late, p.rec)
		delete(s.pending, id)
	}
	s.mu.Unlock()
	for _, r := range late {
		s.enqueue(r)
	}
	s.mu.Lock()
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.closeSinks()
	return nil
}

// Pending is the number of records in the spool that endpoint url has not taken yet.
func (s *Service) Pending() map[string]uint64 {
	out := map[string]uint64{}
	for _, h := range s.hooks {
		out[h.label] += s.spool.Pending(h.name)
	}
	return out
}

// SpoolBytes is the size of the spool on disk.
func (s *Service) SpoolBytes() int64 {
	if s.spool == nil {
		return 0
	}
	return s.spool.Bytes()
}

// CallEvent implements signaling.Recorder.
func (s *Service) CallEvent(state string, r signaling.CallRecord) {
	switch state {
	case signaling.CallRinging:
		s.enqueue(callRecord(EventCallRinging, r))
	case signaling.CallAnswered:
		s.enqueue(callRecord(EventCallAnswered, r))
	case signaling.CallEnded:
		s.enqueue(callRecord(EventCallEnded, r))
		s.callEnded(callRecord(EventCDR, r))
	}
}

// callEnded holds the call's record until its sessions have ended too.
func (s *Service) callEnded(rec Record) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, sr := range s.early[rec.CallID] {
		rec.Legs = append(rec.Legs, legs(sr)...)
	}
	done := map[string]bool{}
	for _, sr := range s.early[rec.CallID] {
		done[sr.ID] = true
	}
	delete(s.early, rec.CallID)
	want := map[string]bool{}
	for _, id := range rec.SessionIDs {
		if !done[id] {
			want[id] = true
		}
	}
	if len(want) == 0 {
		s.mu.Unlock()
		s.enqueue(rec)
		return
	}
	p := &pendingCall{rec: rec, want: want}
	id := rec.CallID
	p.timer = time.AfterFunc(s.o.JoinTimeout, func() {
		s.mu.Lock()
		cur, ok := s.pending[id]
		if ok && cur == p {
			delete(s.pending, id)
		}
		s.mu.Unlock()
		if ok && cur == p {
			s.enqueue(p.rec)
		}
	})
	s.pending[id] = p
	s.mu.Unlock()
}

// SessionAnswered implements signaling.Recorder.
func (s *Service) SessionAnswered(r signaling.SessionRecord) {
	s.enqueue(sessionRecord(EventSessionAnswered, r))
}

// SessionEnded implements signaling.Recorder.
func (s *Service) SessionEnded(r signaling.SessionRecord) {
	s.enqueue(sessionRecord(EventSessionEnded, r))
	if r.CallID == "" {
		s.enqueue(sessionRecord(EventCDR, r))
		return
	}
	s.mu.Lock()
	if p, ok := s.pending[r.CallID]; ok && p.want[r.ID] {
		p.rec.Legs = append(p.rec.Legs, legs(r)...)
		delete(p.want, r.ID)
		if len(p.want) > 0 {
			s.mu.Unlock()
			return
		}
		p.timer.Stop()
		delete(s.pending, r.CallID)
		s.mu.Unlock()
		s.enqueue(p.rec)
		return
	}
	if len(s.early) >= maxEarly {
		s.mu.Unlock()
		s.enqueue(sessionRecord(EventCDR, r))
		return
	}
	s.early[r.CallID] = append(s.early[r.CallID], r)
	orphans := s.sweepLocked(time.Now())
	s.mu.Unlock()
	for _, o := range orphans {
		s.enqueue(sessionRecord(EventCDR, o))
	}
}

// sweepLocked takes out of early the sessions whose call has not ended 10 join timeouts
// after them: their call's record went out without them (a linked session's stop ends its
// call at once, so this is a safety net); they get records of their own. It looks at most
// once per join timeout.
func (s *Service) sweepLocked(now time.Time) []signaling.SessionRecord {
	if now.Sub(s.swept) < s.o.JoinTimeout {
		return nil
	}
	s.swept = now
	var out []signaling.SessionRecord
	for id, rs := range s.early {
		if len(rs) > 0 && !rs[0].End.IsZero() && now.Sub(rs[0].End) > 10*s.o.JoinTimeout {
			out = append(out, rs...)
			delete(s.early, id)
		}
	}
	return out
}

// enqueue stamps a record and hands it to the writer without blocking.
func (s *Service) enqueue(r Record) {
	r.ID = uuid.NewString()
	r.Node = s.o.Node
	r.Time = time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.queue <- r:
	default:
		s.log.Error("cdr: record dropped, queue full (cdr.queue_size)", "event", r.Event, "call_id", r.CallID, "session_id", r.SessionID)
		if s.o.Observer != nil {
			s.o.Observer.Dropped("queue_full")
		}
	}
}

// writer writes queued records to the sinks, a batch at a time (one fsync per batch).
func (s *Service) writer() {
	defer s.wg.Done()
	batch := make([]Record, 0, 256)
	for r := range s.queue {
		batch = append(batch[:0], r)
	more:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.write(batch)
	}
}

func (s *Service) write(batch []Record) {
	payloads := make([][]byte, 0, len(batch))
	for _, r := range batch {
		b, err := json.Marshal(r)
		if err != nil {
			s.log.Error("cdr: record not encoded", "err", err)
			continue
		}
		payloads = append(payloads, b)
		if s.o.Observer != nil {
			s.o.Observer.Recorded(r.Event)
		}
		if r.Event == EventCDR {
			if s.file != nil {
				if err := s.file.write(b); err != nil {
					s.log.Error("cdr: file write failed", "err", err, "path", s.o.File.Path)
				}
			}
			if s.o.Publisher != nil {
				s.publish(r, b)
			}
		}
	}
	if s.file != nil {
		if err := s.file.flush(); err != nil {
			s.log.Error("cdr: file write failed", "err", err, "path", s.o.File.Path)
		}
	}
	if s.spool == nil || len(payloads) == 0 {
		return
	}
	_, err := s.spool.Append(payloads...)
	lost := len(payloads)
	if errors.Is(err, ErrSpoolFull) {
		// the batch does not fit: keep the records that do, one by one
		for i, p := range payloads {
			if _, err = s.spool.Append(p); err != nil {
				lost = len(payloads) - i
				break
			}
		}
	}
	if serr := s.spool.Sync(); err == nil {
		err = serr
	}
	if err != nil {
		reason := "spool_error"
		msg := "cdr: records not spooled"
		if errors.Is(err, ErrSpoolFull) {
			reason = "spool_full"
			msg = fmt.Sprintf("cdr: records not spooled, spool full (cdr.spool_max_bytes %d)", s.o.Spool.MaxBytes)
		}
		s.log.Error(msg, "err", err, "records", lost)
		if s.o.Observer != nil {
			for range lost {
				s.o.Observer.Dropped(reason)
			}
		}
	}
}

func (s *Service) publish(r Record, b []byte) {
	var body map[string]any
	if json.Unmarshal(b, &body) != nil {
		return
	}
	obj := r.CallID
	if r.Kind == KindSession {
		obj = r.SessionID
	}
	s.o.Publisher.Publish(signaling.Event{Class: signaling.ClassCore, Subclass: signaling.SubclassCDR, Type: "record", ObjID: obj, Body: body})
}
