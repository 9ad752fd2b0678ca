package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// The real binary registers at a SIPp registrar (digest, 2 s bindings refreshed in time) and
// keeps a trunk host alive with OPTIONS: /metrics shows the registration registered and the
// dead trunk host down; on SIGTERM the daemon removes its binding (SIPp requires the
// authenticated Expires: 0 to finish successfully).
func TestBinaryRegistrationAndTrunkHealthMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs SIPp")
	}
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	regPort, deadPort := peers.FreePort(t), peers.FreePort(t)
	registrar := peers.StartSIPp(t, peers.SIPpOptions{Scenario: filepath.Join(peers.RepoRoot(t), "testdata", "sipp", "registrar_refresh.xml"),
		Port: regPort, Calls: 1, Timeout: 60 * time.Second})
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	yaml := fmt.Sprintf(`sip:
  trunks: [{name: provider, hosts: ["127.0.0.1:%d"], options_interval: 200ms, options_timeout: 100ms, down_after: 2}]
  registrations: [{name: itsp, registrar: "127.0.0.1:%d", username: pbxuser, password: pbxsecret,
                   contact_user: pbxcontact, trunk: provider, expires: 60s, retry_min: 200ms}]
`, deadPort, regPort)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startBinary(t, "NKB_CONFIG="+conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", peers.FreePort(t)),
		"NKB_MEDIA_ENABLED=false")
	want := map[string]float64{
		`nkbridge_sip_registration_state{name="itsp",state="registered"}`:                         1,
		`nkbridge_sip_registration_state{name="itsp",state="registering"}`:                        0,
		fmt.Sprintf(`nkbridge_sip_trunk_host_up{host="127.0.0.1:%d",trunk="provider"}`, deadPort): 0,
	}
	if !peers.PollEvery(20*time.Second, 100*time.Millisecond, func() bool {
		got := d.scrape()
		for k, v := range want {
			if g, present := got[k]; !present || g != v {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("metrics never showed %v; logs:\n%s", want, d.logs.String())
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	res, err := registrar.Wait(ctx)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("registrar: %v %+v\n%s\nlogs:\n%s", err, res, res.Errors, d.logs.String())
	}
	d.waitExit(30 * time.Second)
}
