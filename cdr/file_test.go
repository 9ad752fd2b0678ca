package cdr

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
)

// lines returns every record of the file and its rotated files, oldest first.
func fileRecords(t *testing.T, path string) (files int, recs []Record) {
	t.Helper()
	rotated, _ := filepath.Glob(path + ".*")
	sort.Strings(rotated)
	for _, p := range append(rotated, path) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		files++
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", p, sc.Text(), err)
			}
			recs = append(recs, r)
		}
		f.Close()
	}
	return files, recs
}

func TestFileRotationBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr", "calls.jsonl")
	svc, err := New(Options{File: FileOptions{Path: path, MaxBytes: 2000, MaxFiles: 100}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	svc.Close()
	files, recs := fileRecords(t, path)
	if len(recs) != 30 {
		t.Fatalf("%d records in the files, want 30 (cdr only, no life-cycle events)", len(recs))
	}
	if files < 5 {
		t.Fatalf("%d files for 30 records of ~400 bytes with max_bytes 2000", files)
	}
	rotated, _ := filepath.Glob(path + ".*")
	for _, p := range append(rotated, path) {
		if st, _ := os.Stat(p); st.Size() > 2000 {
			t.Fatalf("%s has %d bytes", p, st.Size())
		}
	}
	for i, r := range recs {
		if r.CallID != endedCall(i).ID {
			t.Fatalf("record %d is %s: order lost across rotation", i, r.CallID)
		}
	}
}

func TestFileRotationByAgeAndPrune(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	fs, err := openFileSink(FileOptions{Path: path, MaxAge: time.Hour, MaxFiles: 2, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := fs.write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := fs.flush(); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"n":1}`)
	advance(30 * time.Minute)
	write(`{"n":2}`) // same file
	if r, _ := filepath.Glob(path + ".*"); len(r) != 0 {
		t.Fatalf("rotated too early: %v", r)
	}
	for i := 3; i <= 6; i++ {
		advance(time.Hour)
		write(`{"n":` + string(rune('0'+i)) + `}`)
	}
	fs.close()
	rotated, _ := filepath.Glob(path + ".*")
	if len(rotated) != 2 {
		t.Fatalf("rotated files %v, want the 2 newest (max_files)", rotated)
	}
	sort.Strings(rotated)
	b, _ := os.ReadFile(rotated[1])
	if strings.TrimSpace(string(b)) != `{"n":5}` {
		t.Fatalf("newest rotated file holds %q", b)
	}
	b, _ = os.ReadFile(path)
	if strings.TrimSpace(string(b)) != `{"n":6}` {
		t.Fatalf("current file holds %q", b)
	}
	// a file left by an earlier run older than max_age is rotated at the first write
	old := now.Add(-2 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	fs, err = openFileSink(FileOptions{Path: path, MaxAge: time.Hour, MaxFiles: 5, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	write(`{"n":7}`)
	fs.close()
	b, _ = os.ReadFile(path)
	if strings.TrimSpace(string(b)) != `{"n":7}` {
		t.Fatalf("old file not rotated: %q", b)
	}
}

// TestJoinCallAndSessions: a call's record carries the legs of its sessions, whether they end
// before or after the call, and a session of no call has its own record.
func TestJoinCallAndSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	svc, err := New(Options{File: FileOptions{Path: path}, JoinTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	leg := func(side string, in uint64) []signaling.LegQuality {
		return []signaling.LegQuality{{Side: side, Kind: "rtp", Codec: "pcmu/8000", PacketsIn: in, PacketsOut: in, Lost: in / 100, JitterMS: 4}}
	}
	c := endedCall(1)
	c.SessionIDs = []string{"s-caller", "s-callee"}
	svc.SessionEnded(signaling.SessionRecord{ID: "s-caller", CallID: c.ID, Legs: leg("caller", 500)})
	svc.CallEvent(signaling.CallEnded, c)
	svc.SessionEnded(signaling.SessionRecord{ID: "s-callee", CallID: c.ID, Legs: leg("far", 300)})
	svc.SessionEnded(signaling.SessionRecord{ID: "s-alone", Type: "echo", Start: time.Now().Add(-time.Second), End: time.Now(), Code: 1013})
	svc.Close()
	_, recs := fileRecords(t, path)
	if len(recs) != 2 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	var call, sess Record
	for _, r := range recs {
		if r.Kind == KindCall {
			call = r
		} else {
			sess = r
		}
	}
	if len(call.Legs) != 2 || call.Legs[0].SessionID != "s-caller" || call.Legs[1].SessionID != "s-callee" || call.Legs[0].MOS < 4 || call.Legs[0].LossPercent == 0 {
		t.Fatalf("call legs %+v", call.Legs)
	}
	if sess.SessionID != "s-alone" || sess.Kind != KindSession || sess.SessionType != "echo" || sess.Duration < 0.9 {
		t.Fatalf("session record %+v", sess)
	}
}

func TestEModel(t *testing.T) {
	r0, m0 := EModel("pcmu/8000", 0, 0)
	r5, m5 := EModel("pcmu/8000", 5, 20)
	_, m29 := EModel("g729/8000", 0, 0)
	if !(m0 > 4.3 && m0 <= 4.5 && r0 > 90) || !(m5 < m0 && r5 < r0 && m5 > 2.5) || !(m29 < m0) {
		t.Fatalf("MOS %v (R %v), 5%% loss %v (R %v), g729 %v", m0, r0, m5, r5, m29)
	}
	if _, m := EModel("opus/48000", 100, 1000); m != 1 {
		t.Fatalf("total loss MOS %v", m)
	}
}

type eventObs struct {
	countObs
	mu     sync.Mutex
	events map[string]int
}

func (o *eventObs) Recorded(e string) { o.mu.Lock(); o.events[e]++; o.mu.Unlock() }

// TestLifeCycleEvents: every call and session step makes its event; the file gets the cdr
// records only.
func TestLifeCycleEvents(t *testing.T) {
	obs := &eventObs{events: map[string]int{}}
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	svc, err := New(Options{File: FileOptions{Path: path}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	c := endedCall(1)
	c.SessionIDs = []string{"s1"}
	svc.CallEvent(signaling.CallRinging, c)
	svc.SessionAnswered(signaling.SessionRecord{ID: "s1", CallID: c.ID})
	svc.CallEvent(signaling.CallAnswered, c)
	svc.CallEvent(signaling.CallEnded, c)
	svc.SessionEnded(signaling.SessionRecord{ID: "s1", CallID: c.ID})
	svc.Close()
	want := map[string]int{EventCallRinging: 1, EventSessionAnswered: 1, EventCallAnswered: 1, EventCallEnded: 1, EventSessionEnded: 1, EventCDR: 1}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for e, n := range want {
		if obs.events[e] != n {
			t.Fatalf("events %v, want %v", obs.events, want)
		}
	}
	if _, recs := fileRecords(t, path); len(recs) != 1 || recs[0].Event != EventCDR || len(recs[0].SessionIDs) != 1 {
		t.Fatalf("file records %+v", recs)
	}
}

// A session whose call never reports its end gets a record of its own, later.
func TestOrphanSessionRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	svc, err := New(Options{File: FileOptions{Path: path}, JoinTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// ended a second ago (200 join timeouts): its call's record went out long ago
	svc.SessionEnded(signaling.SessionRecord{ID: "orphan", CallID: "gone", End: time.Now().Add(-time.Second)})
	svc.SessionEnded(signaling.SessionRecord{ID: "other", CallID: "live", End: time.Now()})
	svc.Close()
	_, recs := fileRecords(t, path)
	if len(recs) != 1 || recs[0].SessionID != "orphan" || recs[0].Kind != KindSession || recs[0].CallID != "gone" {
		t.Fatalf("records %+v", recs)
	}
}
