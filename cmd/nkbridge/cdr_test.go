package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/cdr"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// readRecords returns the records of a JSON-lines file (none if it does not exist yet).
func readRecords(t *testing.T, path string) []cdr.Record {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []cdr.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r cdr.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// A real SIP call through the daemon: SIPp (alice, digest) calls a SIP URL, nkbridge
// rings a second SIPp that answers and echoes RTP; alice streams a 1 kHz PCMU tone for 2 s
// and hangs up. The daemon writes one call record with both legs: answer after ringing,
// about 2 s billed, the BYE's code, PCMU on both legs, packets each way, a MOS.
func TestCDRRealSIPCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs SIPp")
	}
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recFile := filepath.Join(t.TempDir(), "cdr", "calls.jsonl")
	d, sipAddr := sipDaemon(t, "NKB_SIP_OUTBOUND_DOMAINS=127.0.0.1", "NKB_SIP_SIP_CALLERS=alice",
		"NKB_CDR_ENABLED=true", "NKB_CDR_FILE="+recFile, "NKB_CDR_NODE=node-a")

	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: filepath.Join("testdata", "uas_answer_wait_bye.xml"), Calls: 1,
		Args: []string{"-rtp_echo"}, Timeout: 60 * time.Second})
	tone := peers.PCMUToneFile(t, 1000, 5)
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: filepath.Join("testdata", "uac_auth_rtp.xml"), Remote: sipAddr, Calls: 1,
		Service: fmt.Sprintf("sip-bob%%40127.0.0.1:%d", uas.Port()),
		Keys:    map[string]string{"rtp_stream": tone + ",-1,0"},
		Args:    []string{"-au", "alice", "-ap", "alice-pw", "-d", "2000", "-cid_str", "nkb-cdr-%u@sipp.test"}, Timeout: 30 * time.Second,
	})
	if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp caller: %v %+v\n%s\n%s", err, res, res.Errors, d.logs.String())
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp callee: %v %+v\n%s", err, r, d.logs.String())
	}
	var call *cdr.Record
	peers.WaitFor(t, 10*time.Second, "the call record", func() bool {
		for _, r := range readRecords(t, recFile) {
			if r.Kind == cdr.KindCall {
				call = &r
				return true
			}
		}
		return false
	})
	recs := readRecords(t, recFile)
	b, _ := json.MarshalIndent(call, "", "  ")
	t.Logf("record:\n%s", b)
	if len(recs) != 1 {
		t.Fatalf("%d records, want the call's only (its sessions are in it): %+v", len(recs), recs)
	}
	r := *call
	if r.Event != cdr.EventCDR || r.Node != "node-a" || r.CallType != "sip" || !strings.Contains(r.Callee, "bob@127.0.0.1") ||
		!strings.HasPrefix(r.SIPCallID, "nkb-cdr-") || r.Caller == nil || r.Caller.User != "alice" || !strings.Contains(r.Caller.URI, "alice") {
		t.Fatalf("ids and parties: %+v", r)
	}
	if r.Start == nil || r.Ringing == nil || r.Answer == nil || r.End == nil ||
		r.Ringing.Before(*r.Start) || !r.Answer.After(*r.Ringing) || !r.End.After(*r.Answer) {
		t.Fatalf("times: %v %v %v %v", r.Start, r.Ringing, r.Answer, r.End)
	}
	if bill := r.End.Sub(*r.Answer); bill < 1800*time.Millisecond || bill > 4*time.Second || r.Billable < 2 || r.Billable > 4 || r.Duration < 2 {
		t.Fatalf("billed %v (%d s), duration %v", bill, r.Billable, r.Duration)
	}
	if r.HangupBy != "caller" || r.Outcome != "answered" || r.Code == 0 || r.Reason == "" {
		t.Fatalf("end: by %q outcome %q code %d reason %q", r.HangupBy, r.Outcome, r.Code, r.Reason)
	}
	if len(r.Legs) != 2 {
		t.Fatalf("legs %+v", r.Legs)
	}
	for _, l := range r.Legs {
		// 2 s at 50 packets/s: about 100 packets in from alice, echoed by bob
		if l.Kind != "rtp" || !strings.EqualFold(l.Codec, "pcmu/8000") || l.PacketsIn < 60 || l.PacketsOut < 60 || l.MOS < 4 {
			t.Fatalf("leg %+v", l)
		}
	}
}
