package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/cdr"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// slowHook is a webhook endpoint that verifies signatures and takes a while per record.
type slowHook struct {
	mu      sync.Mutex
	keyOf   map[string]string // session id -> idempotency key
	count   int               // requests taken
	dupKeys int               // a session delivered under another key
	bad     []string
}

func (h *slowHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	time.Sleep(20 * time.Millisecond) // the subject: a slow endpoint
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := cdr.VerifySignature("kill-test-secret", r.Header, body, time.Minute, time.Now()); err != nil {
		h.bad = append(h.bad, err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var rec cdr.Record
	if json.Unmarshal(body, &rec) != nil || rec.SessionID == "" || rec.ID != r.Header.Get(cdr.HeaderIdempotency) {
		h.bad = append(h.bad, string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if k, ok := h.keyOf[rec.SessionID]; ok && k != rec.ID {
		h.dupKeys++
	}
	h.keyOf[rec.SessionID] = rec.ID
	h.count++
	w.WriteHeader(http.StatusNoContent)
}

func (h *slowHook) state() (distinct, count int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keyOf), h.count
}

// The real binary is killed (SIGKILL) while it delivers 100 session records to a slow
// webhook; restarted on the same spool, it delivers the rest: all 100 arrive, signed, each
// session under one idempotency key (a record taken just before the kill may come twice,
// with the same key).
func TestCDRKillDuringDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	hook := &slowHook{keyOf: map[string]string{}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	spool := filepath.Join(t.TempDir(), "spool")
	env := []string{"NKB_CDR_ENABLED=true", "NKB_CDR_SPOOL_DIR=" + spool, "NKB_CDR_WEBHOOK_URLS=" + srv.URL + "/cdr",
		"NKB_CDR_WEBHOOK_SECRET=kill-test-secret", "NKB_CDR_WEBHOOK_ALLOWED_HOSTS=127.0.0.1", "NKB_CDR_WEBHOOK_RETRY_MIN=50ms"}
	d := startBinary(t, env...)
	ws := d.dial()
	if r := ws.Req("core", "user", "login", map[string]any{"user": "u", "password": "p"}); r["result"] != "ok" {
		t.Fatalf("login = %v", r)
	}
	const n = 100
	for range n {
		r := ws.Req("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})
		sid, _ := r["data"].(map[string]any)["session_id"].(string)
		if sid == "" {
			t.Fatalf("start = %v", r)
		}
		if r := ws.Req("media", "session", "stop", map[string]any{"session_id": sid}); r["result"] != "ok" {
			t.Fatalf("stop = %v", r)
		}
	}
	peers.WaitFor(t, 20*time.Second, "some deliveries", func() bool { got, _ := hook.state(); return got >= 10 })
	if err := d.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-d.done
	d.done <- nil
	before, _ := hook.state()
	if before >= n {
		t.Fatalf("all %d delivered before the kill: the test proves nothing", before)
	}
	t.Logf("%d of %d delivered when killed", before, n)

	d2 := startBinary(t, env...)
	peers.WaitFor(t, 30*time.Second, "all records after the restart", func() bool { got, _ := hook.state(); return got == n })
	// the metrics of the restarted daemon: what it delivered, nothing left queued or dropped
	ep := strings.TrimPrefix(srv.URL, "http://")
	peers.WaitFor(t, 5*time.Second, "queue empty in the metrics", func() bool {
		return d2.scrape()[`nkbridge_cdr_webhook_queued{endpoint="`+ep+`"}`] == 0
	})
	m := d2.scrape()
	if got := m[`nkbridge_cdr_webhook_delivered_total{endpoint="`+ep+`"}`]; got < float64(n-before) || got > n {
		t.Errorf("delivered_total %v after the restart, want %d..%d", got, n-before, n)
	}
	if _, ok := m["nkbridge_cdr_spool_bytes"]; !ok {
		t.Error("no nkbridge_cdr_spool_bytes")
	}
	for k, v := range m {
		if strings.HasPrefix(k, "nkbridge_cdr_dropped_total") && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.bad) > 0 || hook.dupKeys > 0 {
		t.Fatalf("bad requests %v, sessions under two keys: %d", hook.bad, hook.dupKeys)
	}
	t.Logf("%d requests for %d records", hook.count, n)
}
