package media

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// recordStops collects OnRecordStop calls.
type recordStops struct {
	mu      sync.Mutex
	paths   []string
	reasons []string
}

func (r *recordStops) on(paths []string, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths = append(r.paths, paths...)
	r.reasons = append(r.reasons, reason)
}

func (r *recordStops) get() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...), append([]string(nil), r.reasons...)
}

// TestEdgeRecordMaxBytes (issue 13.11): a recording that reaches media.record_max_bytes stops
// with an OnRecordStop naming the setting; the file holds exactly that much audio, and the call
// goes on (the echo still answers).
func TestEdgeRecordMaxBytes(t *testing.T) {
	const limit = 8000 // half a second at 8 kHz 16-bit
	e := newTestEngine(t, func(c *Config) { c.RecordMaxBytes = limit })
	p := newRTPPeer(t)
	var stops recordStops
	s := startRTPEcho(t, e, p, SessionOptions{Media: MediaOptions{Record: ptr(true)}, OnRecordStop: stops.on})
	defer s.Close()
	ctx := context.Background()
	p.sendTone(ctx, plainrtp.PCMU, 1000, 1500*time.Millisecond)
	peers.WaitFor(t, 2*time.Second, "the recording to stop", func() bool { _, r := stops.get(); return len(r) > 0 })
	paths, reasons := stops.get()
	if len(reasons) != 1 || !strings.Contains(reasons[0], "media.record_max_bytes") || len(paths) != 1 {
		t.Fatalf("stops %v %v", paths, reasons)
	}
	rec, _, err := audiotest.ReadWAV(paths[0])
	must(t, err)
	if 2*len(rec) != limit {
		t.Fatalf("recording holds %d bytes of audio, limit %d", 2*len(rec), limit)
	}
	// The call is untouched: the echo goes on after the recording stopped.
	_, before := p.Heard()
	p.sendTone(ctx, plainrtp.PCMU, 1000, 500*time.Millisecond)
	peers.WaitFor(t, 2*time.Second, "echo after the recording stopped", func() bool { _, n := p.Heard(); return n > before+10 })
	select {
	case <-s.Done():
		t.Fatal("the session stopped with its recording")
	default:
	}
	// Recording again starts a new file.
	must(t, s.Update(MediaOptions{Record: ptr(true)}))
	if got := s.RecordPaths(); len(got) != 2 {
		t.Fatalf("paths after restart %v", got)
	}
}

// TestEdgeRecordMaxDuration: a recording stops at media.record_max_duration even while no
// audio arrives, and the session goes on.
func TestEdgeRecordMaxDuration(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.RecordMaxDuration = 300 * time.Millisecond })
	p := newRTPPeer(t)
	var stops recordStops
	s := startRTPEcho(t, e, p, SessionOptions{Media: MediaOptions{Record: ptr(true)}, OnRecordStop: stops.on})
	defer s.Close()
	peers.WaitFor(t, 3*time.Second, "the recording to stop", func() bool { _, r := stops.get(); return len(r) > 0 })
	if _, reasons := stops.get(); !strings.Contains(reasons[0], "media.record_max_duration") {
		t.Fatalf("reason %q", reasons[0])
	}
	select {
	case <-s.Done():
		t.Fatal("the session stopped with its recording")
	default:
	}
	// A recording stopped by hand before its limit gets no event later.
	must(t, s.Update(MediaOptions{Record: ptr(true)}))
	must(t, s.Update(MediaOptions{Record: ptr(false)}))
	time.Sleep(500 * time.Millisecond) // the subject: a window in which no stop event may come
	if _, reasons := stops.get(); len(reasons) != 1 {
		t.Fatalf("stops %v", reasons)
	}
}
