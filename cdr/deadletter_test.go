package cdr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

type deadObs struct {
	countObs
	dead atomic.Int64
}

func (o *deadObs) DeadLettered(string) { o.dead.Add(1) }

// pickyHook refuses the records of one call with a status; with down set it answers 503 to all.
type pickyHook struct {
	rc     *receiver
	refuse string // call id refused
	status int
	down   atomic.Bool
	mu     sync.Mutex
	tries  map[string]int
}

func (h *pickyHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var rec Record
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &rec)
	h.mu.Lock()
	h.tries[rec.CallID]++
	h.mu.Unlock()
	if rec.CallID == h.refuse {
		http.Error(w, "unprocessable", h.status)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.rc.ServeHTTP(w, r)
}

func readDead(t *testing.T, dir string) []DeadLetter {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "dead-letter-*.jsonl"))
	var out []DeadLetter
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var d DeadLetter
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("dead letter %q: %v", sc.Text(), err)
			}
			out = append(out, d)
		}
		f.Close()
	}
	return out
}

// TestDeadLetterRefusedRecord: an endpoint that refuses one record with 422 every time gets
// it moved to the dead-letter file after cdr.webhook_dead_letter_attempts refusals (counted),
// and the records behind it are delivered; the record, its key and the reason are in the file.
func TestDeadLetterRefusedRecord(t *testing.T) {
	rc := newReceiver(t)
	h := &pickyHook{rc: rc, refuse: "call-3", status: http.StatusUnprocessableEntity, tries: map[string]int{}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	obs := &deadObs{}
	svc, err := New(Options{Node: "n1", SpoolDir: dir, Observer: obs, Spool: SpoolOptions{Fsync: true},
		Webhooks: []WebhookOptions{{URL: srv.URL + "/cdr?token=x", Secret: testSecret, AllowedHosts: []string{"127.0.0.1"},
			RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, DeadLetterAttempts: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for i := range 10 {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	peers.WaitFor(t, 10*time.Second, "9 records delivered", func() bool { return rc.distinct() == 9 })
	peers.WaitFor(t, 5*time.Second, "queue empty", func() bool { return svc.Pending()[strings.TrimPrefix(srv.URL, "http://")] == 0 })
	dead := readDead(t, dir)
	if len(dead) != 1 || obs.dead.Load() != 1 {
		t.Fatalf("dead letters %+v (metric %d), want call-3's", dead, obs.dead.Load())
	}
	d := dead[0]
	var rec Record
	if err := json.Unmarshal(d.Record, &rec); err != nil || rec.CallID != "call-3" || rec.ID != d.ID || d.Attempts != 4 ||
		!strings.Contains(d.Reason, "status 422") || !strings.Contains(d.Reason, "cdr.webhook_dead_letter_attempts") || strings.Contains(d.Endpoint, "token") {
		t.Fatalf("dead letter %+v (record %+v, %v)", d, rec, err)
	}
	h.mu.Lock()
	tries := h.tries["call-3"]
	h.mu.Unlock()
	if tries != 4 {
		t.Fatalf("call-3 tried %d times, want 4", tries)
	}
}

// TestDeadLetterNotForOutage: an endpoint down (503) for longer than the attempts bound
// dead-letters nothing: every record arrives once it is back. With cdr.webhook_dead_letter_age
// a record older than the age goes to the file whatever the failure.
func TestDeadLetterNotForOutage(t *testing.T) {
	rc := newReceiver(t)
	h := &pickyHook{rc: rc, tries: map[string]int{}}
	h.down.Store(true)
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	obs := &deadObs{}
	svc, err := New(Options{Node: "n1", SpoolDir: dir, Observer: obs,
		Webhooks: []WebhookOptions{{URL: srv.URL + "/cdr", Secret: testSecret, AllowedHosts: []string{"127.0.0.1"},
			RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, DeadLetterAttempts: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	peers.WaitFor(t, 10*time.Second, "10 failed attempts", func() bool { return obs.failed.Load() >= 10 })
	h.down.Store(false)
	peers.WaitFor(t, 10*time.Second, "5 records delivered", func() bool { return rc.distinct() == 5 })
	svc.Close()
	if d := readDead(t, dir); len(d) != 0 || obs.dead.Load() != 0 {
		t.Fatalf("an outage dead-lettered %+v", d)
	}

	// by age
	dir2 := t.TempDir()
	h.down.Store(true)
	obs2 := &deadObs{}
	svc2, err := New(Options{Node: "n1", SpoolDir: dir2, Observer: obs2,
		Webhooks: []WebhookOptions{{URL: srv.URL + "/cdr", Secret: testSecret, AllowedHosts: []string{"127.0.0.1"},
			RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, DeadLetterAge: 300 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	svc2.CallEvent(signaling.CallEnded, endedCall(42))
	peers.WaitFor(t, 10*time.Second, "dead-lettered by age", func() bool { return obs2.dead.Load() == 1 })
	if d := readDead(t, dir2); len(d) != 1 || !strings.Contains(d[0].Reason, "cdr.webhook_dead_letter_age") || !strings.Contains(d[0].Reason, "503") {
		t.Fatalf("dead letters %+v", d)
	}
}
