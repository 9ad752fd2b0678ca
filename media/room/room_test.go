package room

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRewriterSwitch: a listener switched from one publisher to another keeps one smooth
// stream: sequence numbers continue +1, timestamps advance by the wall time elapsed, and
// each source's own spacing is kept.
func TestRewriterSwitch(t *testing.T) {
	var w Rewriter
	t0 := time.Now()
	var lastSeq uint16
	var lastTS uint32
	for i := 0; i < 50; i++ {
		seq, ts := w.Rewrite(1, uint16(1000+i), uint32(5000+960*i), 48000, t0.Add(time.Duration(i)*20*time.Millisecond))
		if i > 0 && (seq != lastSeq+1 || ts != lastTS+960) {
			t.Fatalf("packet %d: seq %d ts %d after %d %d", i, seq, ts, lastSeq, lastTS)
		}
		lastSeq, lastTS = seq, ts
	}
	// Switch to source 2 with a wildly different numbering, 20 ms later.
	sw := t0.Add(50 * 20 * time.Millisecond)
	seq, ts := w.Rewrite(2, 60000, 4000000000, 48000, sw)
	if seq != lastSeq+1 {
		t.Errorf("after switch seq %d, want %d", seq, lastSeq+1)
	}
	if d := ts - lastTS; d < 900 || d > 1100 {
		t.Errorf("after switch ts advanced %d, want about 960 (20 ms)", d)
	}
	// The new source's spacing (and sequence wrap) carries on.
	seq2, ts2 := w.Rewrite(2, 60001, 4000000960, 48000, sw.Add(20*time.Millisecond))
	if seq2 != seq+1 || ts2 != ts+960 {
		t.Errorf("second packet after switch: %d %d after %d %d", seq2, ts2, seq, ts)
	}
	// A reordered late packet of the new source maps back in place.
	if s, _ := w.Rewrite(2, 60000, 4000000000, 48000, sw.Add(40*time.Millisecond)); s != seq {
		t.Errorf("reordered packet mapped to %d, want %d", s, seq)
	}
	if w.Switches != 1 {
		t.Errorf("switches %d", w.Switches)
	}
}

func TestManagerRoomsLifecycle(t *testing.T) {
	var evs []Event
	evCh := make(chan Event, 100)
	m := NewManager(Config{EmptyGrace: 100 * time.Millisecond, RecordDir: t.TempDir(), OnEvent: func(e Event) { evCh <- e }})
	defer m.Close()
	id, err := m.Create(ClassMCU, "", Options{Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ClassSFU, id, Options{}); err != ErrExists {
		t.Errorf("duplicate id: %v", err)
	}
	if _, err := m.Create("bogus", "", Options{}); err == nil {
		t.Error("bogus class accepted")
	}
	if l := m.List(); len(l) != 1 || l[0].ID != id || l[0].Class != ClassMCU {
		t.Errorf("list %+v", l)
	}
	r, _ := m.Get(id)
	info := r.Info()
	paths, _ := info["record_paths"].([]string)
	if len(paths) != 1 {
		t.Fatalf("info %v", info)
	}
	// Empty: destroyed after the grace period.
	deadline := time.After(3 * time.Second)
	for {
		select {
		case e := <-evCh:
			evs = append(evs, e)
		case <-deadline:
			t.Fatalf("room not destroyed when empty; events %+v", evs)
		}
		if len(evs) > 0 && evs[len(evs)-1].Type == "destroyed" {
			break
		}
	}
	if evs[0].Type != "started" || evs[0].RoomID != id {
		t.Errorf("events %+v", evs)
	}
	if _, ok := m.Get(id); ok {
		t.Error("room still there")
	}
	st, err := os.Stat(paths[0])
	if err != nil || st.Size() < 44 || filepath.Ext(paths[0]) != ".wav" {
		t.Errorf("recording %s: %v %v", paths[0], st, err)
	}
	if err := m.Destroy(id); err != ErrNotFound {
		t.Errorf("destroy twice: %v", err)
	}
}
