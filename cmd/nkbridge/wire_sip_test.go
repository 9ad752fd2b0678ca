package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
)

// The daemon's SIP wiring: a SIP user from the sip section authenticates an
// INVITE (digest) to the echo extension, answered by the embedded media
// engine; SIPp (uac_auth_answer.xml) completes the call.
func TestSIPWiringEchoWithDigest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	cfgFile := filepath.Join(t.TempDir(), "nkb.yaml")
	if err := os.WriteFile(cfgFile, []byte("sip:\n  users:\n    - {user: alice, password: alice-pw}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := testEnv(map[string]string{
		"NKB_SIP_ENABLED": "true", "NKB_SIP_LISTEN": fmt.Sprintf("127.0.0.1:%d", sipPort),
		"NKB_MEDIA_RTP_PORT_MIN": fmt.Sprint(rtp), "NKB_MEDIA_RTP_PORT_MAX": fmt.Sprint(rtp + 19),
	})
	logs := &syncBuf{}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, nil, []string{"-config", cfgFile, "-api-listen", "127.0.0.1:0", "-metrics-listen", ""}, nil, &syncBuf{}, logs, env)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	for !strings.Contains(logs.String(), "SIP started") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("SIP did not start:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: filepath.Join(peers.RepoRoot(t), "testdata", "sipp", "uac_auth_answer.xml"),
		Remote:   fmt.Sprintf("127.0.0.1:%d", sipPort), Service: "echo", Calls: 1,
		Args: []string{"-au", "alice", "-ap", "alice-pw"}, Timeout: 30 * time.Second,
	})
	if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp: %v %+v\n%s\n%s", err, res, res.Errors, logs.String())
	}
	if !strings.Contains(logs.String(), "inbound SIP call answered") {
		t.Fatalf("no echo answer in the logs:\n%s", logs.String())
	}
}

func TestSIPConfigChecks(t *testing.T) {
	hash, err := auth.HashPassword("pw", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		yaml, want string
	}{
		{"sip:\n  tls_listen: 127.0.0.1:5061\n", "need sip.tls_cert"},
		{"sip:\n  users: [{user: a}]\n", "user and password are required"},
		{"sip:\n  trunks: [{name: t, networks: [\"10.0.0.0/33\"]}]\n", "not a CIDR"},
		{"sip:\n  users: [{user: a, password: b}]\n  sip_callers: [zed]\nusers: [{user: x, password_hash: \"" + hash + "\"}]\n", "neither an API user nor a SIP user"},
		{"sip:\n  user_far_side: carrier-pigeon\n", "user far side"},
		{"sip:\n  registrations: [{name: itsp, registrar: 127.0.0.1:5070, username: u, trunk: nosuch}]\n", "unknown trunk \"nosuch\""},
		{"sip:\n  registrations: [{name: itsp, registrar: \"sip:x@y\", username: u}]\n", "want host[:port]"},
	} {
		f := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(f, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(f, envMap(map[string]string{"NKB_SIP_LISTEN": "127.0.0.1:0", "NKB_VERTO_LISTEN": "", "NKB_MEDIA_ENABLED": "false"}))
		if err == nil {
			core := signaling.New(signaling.Options{})
			h := &hooks{}
			err = wireSIP(context.Background(), cfg, newLogger(LogConfig{Level: "error", Format: "text"}, &syncBuf{}), core, h)
			h.stop()
			core.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
