package room

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/wav"
)

// recordStopped runs a recording mcu room under cfg and returns its record_stopped event,
// checking that the room itself lives on.
func recordStopped(t *testing.T, cfg Config) Event {
	t.Helper()
	evCh := make(chan Event, 100)
	cfg.EmptyGrace, cfg.RecordDir, cfg.OnEvent = -1, t.TempDir(), func(e Event) { evCh <- e }
	m := NewManager(cfg)
	defer m.Close()
	id, err := m.Create(ClassMCU, "", Options{Record: true})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-evCh:
			if e.Type != "record_stopped" {
				continue
			}
			if _, ok := m.Get(id); !ok {
				t.Fatal("the room went with its recording")
			}
			return e
		case <-deadline:
			t.Fatal("no record_stopped event")
		}
	}
}

// TestEdgeRoomRecordMaxBytes (issue 13.11): an mcu room's mix recording (silence counts: an
// empty recording room writes 16 kB/s) stops at media.record_max_bytes with an event naming the
// setting, and the file holds that much audio.
func TestEdgeRoomRecordMaxBytes(t *testing.T) {
	e := recordStopped(t, Config{RecordMaxBytes: 10 * recFrameBytes})
	reason, _ := e.Body["reason"].(string)
	paths, _ := e.Body["record_paths"].([]string)
	if !strings.Contains(reason, "media.record_max_bytes") || len(paths) != 1 {
		t.Fatalf("event %+v", e.Body)
	}
	st, err := os.Stat(paths[0])
	if err != nil || st.Size() != wav.HeaderLen+10*recFrameBytes {
		t.Fatalf("recording %v %v", st, err)
	}
}

// TestEdgeRoomRecordMaxDuration: likewise at media.record_max_duration.
func TestEdgeRoomRecordMaxDuration(t *testing.T) {
	e := recordStopped(t, Config{RecordMaxDuration: 300 * time.Millisecond})
	if reason, _ := e.Body["reason"].(string); !strings.Contains(reason, "media.record_max_duration") {
		t.Fatalf("event %+v", e.Body)
	}
}
