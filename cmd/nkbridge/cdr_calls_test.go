package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// callHook is a webhook endpoint that verifies signatures and keeps the call records.
type callHook struct {
	mu       sync.Mutex
	keyOf    map[string]string // call id -> idempotency key
	requests int
	dupKeys  int
	bad      []string
}

func (h *callHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	var rec cdr.Record
	if err := cdr.VerifySignature("calls-secret", r.Header, body, time.Minute, time.Now()); err != nil ||
		json.Unmarshal(body, &rec) != nil || rec.Kind != cdr.KindCall || rec.CallID == "" || rec.ID != r.Header.Get(cdr.HeaderIdempotency) {
		h.bad = append(h.bad, fmt.Sprintf("%v: %s", err, body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if k, ok := h.keyOf[rec.CallID]; ok && k != rec.ID {
		h.dupKeys++
	}
	h.keyOf[rec.CallID] = rec.ID
	w.WriteHeader(http.StatusNoContent)
}

func (h *callHook) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keyOf)
}

// TestCDRWebhookDownDuring100Calls: the real binary, the webhook endpoint down (connections
// refused) while SIPp places 100 real SIP calls through nkbridge to a second SIPp; when the
// endpoint comes back every one of the 100 call records arrives, signed, each call under one
// idempotency key; nothing is dropped or dead-lettered.
func TestCDRWebhookDownDuring100Calls(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs SIPp")
	}
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the endpoint is down
	spool := filepath.Join(t.TempDir(), "spool")
	rtp := peers.FreeUDPRange(t, 200)
	d, sipAddr := sipDaemon(t, "NKB_SIP_OUTBOUND_DOMAINS=127.0.0.1", "NKB_SIP_SIP_CALLERS=alice", "NKB_SIP_CALLER_INVITE_RATE=1000",
		"NKB_SIP_CALLER_INVITE_BURST=1000", "NKB_SIP_CALLEE_INVITE_RATE=1000", "NKB_SIP_CALLEE_INVITE_BURST=1000",
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+199),
		"NKB_MEDIA_QUARANTINE=1ms", "NKB_MEDIA_RTP_PORTS_PER_USER=-1",
		"NKB_CDR_ENABLED=true", "NKB_CDR_SPOOL_DIR="+spool, "NKB_CDR_WEBHOOK_URLS=http://"+addr+"/cdr",
		"NKB_CDR_WEBHOOK_SECRET=calls-secret", "NKB_CDR_WEBHOOK_ALLOWED_HOSTS=127.0.0.1",
		"NKB_CDR_WEBHOOK_RETRY_MIN=100ms", "NKB_CDR_WEBHOOK_RETRY_MAX=500ms")
	const n = 100
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: filepath.Join("testdata", "uas_answer_wait_bye.xml"), Calls: n,
		Timeout: 2 * time.Minute})
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: filepath.Join(peers.RepoRoot(t), "testdata", "sipp", "uac_call_auth.xml"), Remote: sipAddr, Calls: n,
		Rate: 20, Limit: 10, Service: fmt.Sprintf("sip-bob%%40127.0.0.1:%d", uas.Port()),
		Args: []string{"-au", "alice", "-ap", "alice-pw"}, Timeout: 2 * time.Minute,
	})
	if err != nil || res.Stats.SuccessfulCalls != n {
		t.Fatalf("sipp caller: %v %+v\n%s\n%s", err, res, res.Errors, d.logs.String())
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp callee: %v %+v", err, r)
	}
	ep := addr
	peers.WaitFor(t, 20*time.Second, "100 call records queued for the endpoint", func() bool {
		return d.scrape()[`nkbridge_cdr_webhook_queued{endpoint="`+ep+`"}`] >= n
	})
	m := d.scrape()
	if m[`nkbridge_cdr_webhook_failed_total{endpoint="`+ep+`"}`] < 1 || m[`nkbridge_cdr_webhook_delivered_total{endpoint="`+ep+`"}`] != 0 {
		t.Fatalf("while down: failed %v delivered %v", m[`nkbridge_cdr_webhook_failed_total{endpoint="`+ep+`"}`],
			m[`nkbridge_cdr_webhook_delivered_total{endpoint="`+ep+`"}`])
	}

	hook := &callHook{keyOf: map[string]string{}}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(hook)
	srv.Listener = ln2
	srv.Start()
	defer srv.Close()
	peers.WaitFor(t, 60*time.Second, "the 100 call records delivered", func() bool { return hook.distinct() == n })
	peers.WaitFor(t, 10*time.Second, "queue empty", func() bool {
		return d.scrape()[`nkbridge_cdr_webhook_queued{endpoint="`+ep+`"}`] == 0
	})
	m = d.scrape()
	for k, v := range m {
		if (strings.HasPrefix(k, "nkbridge_cdr_dropped_total") || strings.HasPrefix(k, "nkbridge_cdr_webhook_dead_letter_total")) && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.bad) > 0 || hook.dupKeys > 0 {
		t.Fatalf("bad requests %v; calls under two keys: %d", hook.bad, hook.dupKeys)
	}
	t.Logf("%d requests for %d call records; %v failed attempts while down", hook.requests, n, m[`nkbridge_cdr_webhook_failed_total{endpoint="`+ep+`"}`])
}
