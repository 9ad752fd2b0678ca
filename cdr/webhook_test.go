package cdr

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

const testSecret = "s3cret-for-tests"

// receiver is a webhook endpoint that checks signatures and counts deliveries per key.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	byKey    map[string]int
	records  map[string]Record
	bad      []string
	requests atomic.Int64
}

func newReceiver(t *testing.T) *receiver {
	return &receiver{t: t, byKey: map[string]int{}, records: map[string]Record{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := VerifySignature(testSecret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var rec Record
	if err := json.Unmarshal(body, &rec); err != nil || rec.ID == "" || r.Header.Get(HeaderIdempotency) != rec.ID || r.Header.Get(HeaderEvent) != rec.Event {
		rc.bad = append(rc.bad, fmt.Sprintf("record %q key %q: %v", body, r.Header.Get(HeaderIdempotency), err))
		http.Error(w, "bad record", http.StatusBadRequest)
		return
	}
	rc.byKey[rec.ID]++
	rc.records[rec.ID] = rec
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) distinct() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.byKey)
}

type countObs struct{ recorded, dropped, delivered, failed atomic.Int64 }

func (o *countObs) Recorded(string)  { o.recorded.Add(1) }
func (o *countObs) Dropped(string)   { o.dropped.Add(1) }
func (o *countObs) Delivered(string) { o.delivered.Add(1) }
func (o *countObs) Failed(string)    { o.failed.Add(1) }

func endedCall(i int) signaling.CallRecord {
	now := time.Now()
	return signaling.CallRecord{ID: fmt.Sprintf("call-%d", i), Type: "user", Callee: "bob",
		Caller: signaling.CallerInfo{User: "alice"}, Start: now.Add(-3 * time.Second), Answer: now.Add(-2500 * time.Millisecond),
		End: now, Code: 1013, Reason: "User stop", Outcome: signaling.OutcomeAnswered, HangupBy: signaling.HangupByCaller}
}

// TestWebhookEndpointDown: 100 records made while the endpoint is down all arrive once it is
// back, each signed, each with its idempotency key; none arrives twice under another key.
func TestWebhookEndpointDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused
	obs := &countObs{}
	svc, err := New(Options{Node: "n1", SpoolDir: t.TempDir(), Observer: obs, Spool: SpoolOptions{Fsync: true},
		Webhooks: []WebhookOptions{{URL: "http://" + addr + "/cdr", Secret: testSecret, AllowedHosts: []string{"127.0.0.1"},
			RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for i := range 100 {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	peers.WaitFor(t, 10*time.Second, "failed attempts", func() bool { return obs.failed.Load() >= 3 })
	if obs.delivered.Load() != 0 {
		t.Fatal("delivered while down")
	}
	// 100 cdr records and 100 call.ended events (skipped by this endpoint once read); the
	// writer spools them in batches: wait for the last
	peers.WaitFor(t, 10*time.Second, "199 or more pending", func() bool { return svc.Pending()[addr] >= 199 })
	if obs.delivered.Load() != 0 {
		t.Fatal("delivered while down")
	}

	rc := newReceiver(t)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(rc)
	srv.Listener = ln2
	srv.Start()
	defer srv.Close()
	peers.WaitFor(t, 20*time.Second, "100 records delivered", func() bool { return rc.distinct() == 100 })
	peers.WaitFor(t, 5*time.Second, "queue empty", func() bool { return svc.Pending()[addr] == 0 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Fatalf("bad requests: %v", rc.bad)
	}
	calls := map[string]bool{}
	for _, r := range rc.records {
		if r.Event != EventCDR || r.Kind != KindCall || r.Node != "n1" || r.Code != 1013 || r.Billable != 3 || r.Caller == nil || r.Caller.User != "alice" {
			t.Fatalf("record %+v", r)
		}
		if calls[r.CallID] {
			t.Fatalf("call %s delivered under two idempotency keys", r.CallID)
		}
		calls[r.CallID] = true
	}
	if int(rc.requests.Load()) != 100 {
		t.Logf("%d requests for 100 records (redeliveries keep their key)", rc.requests.Load())
	}
}

func TestWebhookSignatureAndTLS(t *testing.T) {
	certFile, keyFile, pool := peers.SelfSignedCert(t)
	rc := newReceiver(t)
	srv := httptest.NewUnstartedServer(rc)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	url := "https://" + host + "/hook"

	// an untrusted certificate is refused: nothing delivered
	obs := &countObs{}
	svc, err := New(Options{SpoolDir: t.TempDir(), Observer: obs,
		Webhooks: []WebhookOptions{{URL: url, Secret: testSecret, AllowedHosts: []string{"127.0.0.1"}, RetryMin: 20 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	svc.CallEvent(signaling.CallEnded, endedCall(1))
	peers.WaitFor(t, 5*time.Second, "TLS failures", func() bool { return obs.failed.Load() >= 2 })
	svc.Close()
	if rc.distinct() != 0 {
		t.Fatal("delivered to a server whose certificate is not trusted")
	}

	// trusted: delivered, signature checked by the receiver; a wrong secret is refused
	svc, err = New(Options{SpoolDir: t.TempDir(),
		Webhooks: []WebhookOptions{{URL: url, Secret: testSecret, AllowedHosts: []string{"127.0.0.1"}, RootCAs: pool,
			Events: []string{EventCDR, EventCallRinging}}}})
	if err != nil {
		t.Fatal(err)
	}
	svc.CallEvent(signaling.CallRinging, signaling.CallRecord{ID: "c2", Start: time.Now(), Ringing: time.Now()})
	svc.CallEvent(signaling.CallEnded, endedCall(2))
	peers.WaitFor(t, 5*time.Second, "2 records", func() bool { return rc.distinct() == 2 })
	svc.Close()
	body := []byte(`{"id":"x"}`)
	h := http.Header{}
	ts := time.Now().Unix()
	h.Set(HeaderTimestamp, fmt.Sprint(ts))
	h.Set(HeaderSignature, SignBody("other", ts, body))
	if VerifySignature(testSecret, h, body, time.Minute, time.Now()) == nil {
		t.Fatal("wrong secret accepted")
	}
	h.Set(HeaderSignature, SignBody(testSecret, ts, body))
	if VerifySignature(testSecret, h, body, time.Minute, time.Now().Add(2*time.Minute)) == nil {
		t.Fatal("stale timestamp accepted")
	}
}

func TestWebhookAllowList(t *testing.T) {
	cases := []struct {
		url     string
		allowed []string
		want    string
	}{
		{"https://hooks.example.com/x", nil, "cdr.webhook_allowed_hosts is empty"},
		{"https://hooks.example.com/x", []string{"other.example.com"}, "not in cdr.webhook_allowed_hosts"},
		{"http://hooks.example.com/x", []string{"hooks.example.com"}, "use https"},
		{"ftp://127.0.0.1/x", []string{"127.0.0.1"}, "scheme must be https"},
		{"https://u:p@hooks.example.com/x", []string{"hooks.example.com"}, "no credentials"},
		{"https://hooks.example.com/x", []string{"hooks.example.com"}, ""},
		{"http://127.0.0.1:9/x", []string{"127.0.0.1"}, ""},
	}
	for _, c := range cases {
		_, err := CheckWebhookURL(c.url, c.allowed)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: err %v, want %q", c.url, c.allowed, err, c.want)
		}
	}
	if _, err := New(Options{SpoolDir: t.TempDir(), Webhooks: []WebhookOptions{{URL: "http://127.0.0.1:9/", AllowedHosts: []string{"127.0.0.1"}}}}); err == nil || !strings.Contains(err.Error(), "cdr.webhook_secret") {
		t.Fatalf("no secret: %v", err)
	}
	// a listed name that resolves to loopback is refused at connection time unless loopback is listed
	if err := guardedAddr(net.ParseIP("127.0.0.1"), []string{"hooks.example.com"}); err == nil {
		t.Fatal("loopback address reached through a name")
	}
	if err := guardedAddr(net.ParseIP("169.254.169.254"), []string{"hooks.example.com"}); err == nil {
		t.Fatal("link-local (metadata) address reached")
	}
	if err := guardedAddr(net.ParseIP("127.0.0.1"), []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := guardedAddr(net.ParseIP("192.0.2.7"), []string{"hooks.example.com"}); err != nil {
		t.Fatal(err)
	}
}

// A slow endpoint (slower than the attempt timeout) fails the attempt; the record is retried
// and taken once the endpoint answers in time.
func TestWebhookSlowEndpointRetried(t *testing.T) {
	rc := newReceiver(t)
	var calls atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // the first attempt hangs past the client's timeout
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release)
	obs := &countObs{}
	svc, err := New(Options{SpoolDir: t.TempDir(), Observer: obs,
		Webhooks: []WebhookOptions{{URL: srv.URL, Secret: testSecret, AllowedHosts: []string{"127.0.0.1"},
			Timeout: 200 * time.Millisecond, RetryMin: 10 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svc.CallEvent(signaling.CallEnded, endedCall(7))
	peers.WaitFor(t, 10*time.Second, "delivery after the slow attempt", func() bool { return rc.distinct() == 1 })
	if obs.failed.Load() < 1 || calls.Load() < 2 {
		t.Fatalf("failed %d, attempts %d", obs.failed.Load(), calls.Load())
	}
}

// A full spool drops new records (counted, reason spool_full) and keeps the earlier ones.
func TestSpoolFullDropsCounted(t *testing.T) {
	obs := &countObs{}
	svc, err := New(Options{SpoolDir: t.TempDir(), Observer: obs, Spool: SpoolOptions{MaxBytes: 3000},
		Webhooks: []WebhookOptions{{URL: "http://127.0.0.1:9/", Secret: "x", AllowedHosts: []string{"127.0.0.1"}, RetryMin: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	peers.WaitFor(t, 5*time.Second, "drops counted", func() bool { return obs.dropped.Load() > 0 })
	svc.Close()
	if b := svc.SpoolBytes(); b == 0 || b > 3000 {
		t.Fatalf("spool %d bytes", b)
	}
	if obs.recorded.Load() != 40 {
		t.Fatalf("recorded %d, want 40", obs.recorded.Load())
	}
}
