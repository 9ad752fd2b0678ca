package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// sipDaemon starts the real binary with SIP on a free port, SIP user alice
// (digest) and the embedded media engine on a private RTP range; env adds variables.
func sipDaemon(t *testing.T, env ...string) (*daemon, string) {
	t.Helper()
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte("sip:\n  users: [{user: alice, password: alice-pw}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append([]string{"NKB_CONFIG=" + conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+19)}, env...)
	d := startBinary(t, env...)
	return d, fmt.Sprintf("127.0.0.1:%d", sipPort)
}

// One SIPp OPTIONS, one REGISTER with digest (challenge, register,
// challenge, unregister) and one digest-authenticated INVITE to echo that
// streams PCMU for 3 s: the SIP counters of /metrics move by exactly the
// messages exchanged, the RTP counters move while the call lasts (not only
// at its end), and the JSON logs of the call share its ids across the sip,
// sipgw and signaling layers.
func TestBinarySIPMetricsAndLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs SIPp")
	}
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, sipAddr := sipDaemon(t)
	before := d.scrape()

	run := func(o peers.SIPpOptions) {
		t.Helper()
		o.Remote, o.Calls = sipAddr, 1
		if o.Timeout == 0 {
			o.Timeout = 30 * time.Second
		}
		res, err := peers.RunSIPp(ctx, t, o)
		if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 1 {
			t.Fatalf("sipp %s: %v %+v\n%s\n%s", filepath.Base(o.Scenario), err, res, res.Errors, d.logs.String())
		}
	}
	run(peers.SIPpOptions{Scenario: peers.Scenario(t, "options-uac.xml"), Service: "nkbridge", Keys: map[string]string{"probe": "1"}})
	run(peers.SIPpOptions{Scenario: filepath.Join(peers.RepoRoot(t), "testdata", "sipp", "register_auth.xml"),
		Service: "alice", Args: []string{"-au", "alice", "-ap", "alice-pw"}})
	mid := d.scrape()
	checkDelta(t, before, mid, map[string]float64{
		`nkbridge_sip_requests_total{direction="in",method="OPTIONS"}`:               1,
		`nkbridge_sip_responses_total{code="200",direction="out",method="OPTIONS"}`:  1,
		`nkbridge_sip_requests_total{direction="in",method="REGISTER"}`:              4,
		`nkbridge_sip_responses_total{code="401",direction="out",method="REGISTER"}`: 2,
		`nkbridge_sip_responses_total{code="200",direction="out",method="REGISTER"}`: 2,
		`nkbridge_sip_register_total{result="unauthorized"}`:                         2,
		`nkbridge_sip_register_total{result="ok"}`:                                   1,
		`nkbridge_sip_register_total{result="unregistered"}`:                         1,
		`nkbridge_sip_registrations`:                                                 0,
	})

	// The call: 3 s of a 1 kHz tone (50 packets/s) to the echo extension.
	tone := peers.PCMUToneFile(t, 1000, 5)
	sp := peers.StartSIPp(t, peers.SIPpOptions{
		Scenario: filepath.Join("testdata", "uac_auth_rtp.xml"), Remote: sipAddr, Calls: 1, Service: "echo",
		Keys: map[string]string{"rtp_stream": tone + ",-1,0"},
		// A Call-ID of our choosing, to find it in the logs.
		Args: []string{"-au", "alice", "-ap", "alice-pw", "-d", "3000", "-cid_str", "nkb-metrics-%u@sipp.test"}, Timeout: 30 * time.Second,
	})
	const (
		pin  = `nkbridge_rtp_packets_total{direction="in"}`
		pout = `nkbridge_rtp_packets_total{direction="out"}`
		bin  = `nkbridge_rtp_bytes_total{direction="in"}`
		bout = `nkbridge_rtp_bytes_total{direction="out"}`
	)
	var during []map[string]float64
	peers.PollEvery(20*time.Second, 200*time.Millisecond, func() bool { // checked below
		m := d.scrape()
		if m[`nkbridge_media_sessions{backend="media"}`] == 1 && m[pin]-mid[pin] >= 25 && m[pout]-mid[pout] >= 25 &&
			(len(during) == 0 || m[pin]-during[0][pin] >= 25) {
			during = append(during, m)
		}
		return len(during) >= 2
	})
	if len(during) < 2 {
		t.Fatalf("RTP counters did not move during the call: %v -> %v in, %v -> %v out", mid[pin], d.scrape()[pin], mid[pout], d.scrape()[pout])
	}
	res, err := sp.Wait(ctx)
	if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp call: %v %+v\n%s\n%s", err, res, res.Errors, d.logs.String())
	}
	var after map[string]float64
	peers.PollEvery(5*time.Second, 100*time.Millisecond, func() bool { // the session stops just after the BYE's 200
		after = d.scrape()
		return after[`nkbridge_media_sessions{backend="media"}`] == 0
	})
	checkDelta(t, mid, after, map[string]float64{
		`nkbridge_sip_requests_total{direction="in",method="INVITE"}`:              2,
		`nkbridge_sip_responses_total{code="407",direction="out",method="INVITE"}`: 1,
		`nkbridge_sip_responses_total{code="100",direction="out",method="INVITE"}`: 1,
		`nkbridge_sip_responses_total{code="200",direction="out",method="INVITE"}`: 1,
		`nkbridge_sip_requests_total{direction="in",method="ACK"}`:                 2, // the 407 is stateless: its ACK is a request too
		`nkbridge_sip_requests_total{direction="in",method="BYE"}`:                 1,
		`nkbridge_sip_responses_total{code="200",direction="out",method="BYE"}`:    1,
		`nkbridge_sip_requests_total{direction="out",method="INVITE"}`:             0,
		`nkbridge_sessions_started_total{backend="media",type="echo"}`:             1,
	})
	// 3 s at 50 packets/s of 160-byte PCMU, all echoed: about 150 each way.
	in, out := after[pin]-mid[pin], after[pout]-mid[pout]
	if in < 120 || in > 200 || out < 0.9*in || out > in {
		t.Fatalf("RTP packets in %v out %v, want about 150 each", in, out)
	}
	t.Logf("call: RTP in %v out %v (during: %v then %v in), jitter max %v s", in, out,
		during[0][pin]-mid[pin], during[1][pin]-mid[pin], during[1][`nkbridge_rtp_jitter_max_seconds{backend="media"}`])
	if b := after[bin] - mid[bin]; b != 160*in {
		t.Errorf("RTP bytes in %v, want 160 per packet (%v)", b, 160*in)
	}
	if b := after[bout] - mid[bout]; b != 160*out {
		t.Errorf("RTP bytes out %v, want 160 per packet (%v)", b, 160*out)
	}
	if l := after[`nkbridge_rtp_packets_lost_total`] - mid[`nkbridge_rtp_packets_lost_total`]; l != 0 {
		t.Errorf("%v packets lost on loopback", l)
	}
	if j := during[1][`nkbridge_rtp_jitter_max_seconds{backend="media"}`]; j <= 0 || j > 0.05 {
		t.Errorf("jitter during the call %v s, want a small positive figure", j)
	}
	if s := during[1][`nkbridge_rtp_receive_streams{backend="media"}`]; s != 1 {
		t.Errorf("receive streams during the call = %v, want 1", s)
	}

	_ = d.cmd.Process.Signal(syscall.SIGINT)
	d.waitExit(10 * time.Second)
	checkCallLogs(t, d.logs.String(), "nkb-metrics-1@sipp.test")
}

// checkCallLogs follows the echo call through the JSON logs: the SIP layer
// names its Call-ID (sipCallID, the one the peer sent), the gateway ties that Call-ID to the session id, and the
// signaling core logs the session's start and stop under that id.
func checkCallLogs(t *testing.T, logs, sipCallID string) {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON log line: %q", l)
		}
		lines = append(lines, m)
	}
	find := func(msg string, match map[string]any) map[string]any {
		for _, m := range lines {
			if m["msg"] != msg {
				continue
			}
			ok := true
			for k, v := range match {
				if m[k] != v {
					ok = false
				}
			}
			if ok {
				return m
			}
		}
		t.Fatalf("no log line %q with %v in:\n%s", msg, match, logs)
		return nil
	}
	gw := find("inbound SIP call answered", map[string]any{"component": "sipgw", "sip_call_id": sipCallID})
	sid, _ := gw["session_id"].(string)
	if sid == "" {
		t.Fatalf("gateway line without a session id: %v", gw)
	}
	sipLine := find("sip inbound call", map[string]any{"component": "sip", "sip_call_id": sipCallID})
	find("sip call ended", map[string]any{"component": "sip", "sip_call_id": sipCallID, "call": sipLine["call"]})
	find("inbound SIP call ended", map[string]any{"component": "sipgw", "sip_call_id": sipCallID, "session_id": sid})
	find("session started", map[string]any{"session_id": sid, "type": "echo"})
	find("session stopped", map[string]any{"session_id": sid})
}
