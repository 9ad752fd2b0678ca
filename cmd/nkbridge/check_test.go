package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// -check-config builds every section's configuration without binding ports: each invalid
// value makes the real binary exit non-zero with a message naming the key, and the same
// check runs at start-up (TestRunFlags covers that path).
func TestCheckConfigRefusesBadValues(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	const fs = "freeswitch:\n  esl_addr: 127.0.0.1:8021\n  esl_password: ClueCon\n"
	for _, tc := range []struct {
		name, yaml string
		env        []string
		key        string
	}{
		{"esl password with a newline", "freeswitch:\n  esl_addr: 127.0.0.1:8021\n  esl_password: \"Clue\\nevent plain ALL\"\n", nil, "freeswitch.esl_password"},
		{"esl password with a space", "freeswitch:\n  esl_addr: 127.0.0.1:8021\n  esl_password: \"a b\"\n", nil, "freeswitch.esl_password"},
		{"esl without password", "freeswitch:\n  esl_addr: 127.0.0.1:8021\n", nil, "freeswitch.esl_password"},
		{"esl addr port", "freeswitch:\n  esl_addr: 127.0.0.1:80210\n  esl_password: x\n", nil, "freeswitch.esl_addr"},
		{"fs sip_addr", fs + "  sip_addr: fs.example:5090\n", nil, "freeswitch.sip_addr"},
		{"fs types", fs + "  types: [bogus]\n", nil, "freeswitch.types"},
		{"fs command_timeout", fs + "  command_timeout: -1s\n", nil, "freeswitch.command_timeout"},
		{"fs without media", fs + "media:\n  enabled: false\n", nil, "media.enabled"},
		{"media bind_ip", "media:\n  bind_ip: notanip\n", nil, "media.bind_ip"},
		{"media bind_ip env", "", []string{"NKB_MEDIA_BIND_IP=notanip"}, "media.bind_ip"},
		{"media public_ip", "media:\n  public_ip: nat.example\n", nil, "media.public_ip"},
		{"media udp_port", "media:\n  udp_port: 70000\n", nil, "media.udp_port"},
		{"media rtp_port_min", "media:\n  rtp_port_min: 80\n", nil, "media.rtp_port_min"},
		{"media max_sessions", "media:\n  max_sessions: -1\n", nil, "media.max_sessions"},
		{"media ice_timeout", "media:\n  ice_timeout: -1s\n", nil, "media.ice_timeout"},
		{"media park_file", "media:\n  park_file: /nonexistent/park.wav\n", nil, "media.park_file"},
		{"sip user_far_side", "sip:\n  user_far_side: bogus\n", nil, "user_far_side"},
		{"sip trunk CIDR", "sip:\n  trunks: [{name: t, networks: [\"203.0.113.0/99\"]}]\n", nil, "sip.trunks[0].networks"},
		{"sip listen port", "sip:\n  listen: 127.0.0.1:65536\n", nil, "sip.listen"},
		{"sip trunk srtp", "sip:\n  trunks: [{name: t, networks: [\"203.0.113.0/24\"], srtp: always}]\n", nil, "sip.trunks[0].srtp"},
		{"sip trunk delayed_offer with srtp", "sip:\n  trunks: [{name: t, host: \"127.0.0.1:5\", srtp: optional, delayed_offer: true}]\n", nil, "sip.trunks[0].delayed_offer"},
		{"sip user srtp", "sip:\n  users: [{user: a, password: b, srtp: \"yes\"}]\n", nil, "sip.users[0].srtp"},
		{"sip ws_listen", "sip:\n  ws_listen: nohostport\n", nil, "sip.ws_listen"},
		{"sip tls_listen without cert", "sip:\n  tls_listen: 127.0.0.1:5061\n", nil, "sip.tls_listen"},
		{"sip min_expires", "sip:\n  min_expires: -1s\n", nil, "sip.min_expires"},
		{"sip request_rate", "sip:\n  request_rate: -2\n", nil, "sip.request_rate"},
		{"sip extension type", "sip:\n  extensions: {x: nosuchtype}\n", nil, "sip (extensions"},
		{"api listen port", "api:\n  listen: 127.0.0.1:70000\n", nil, "api.listen"},
		{"api listen empty", "api:\n  listen: \"\"\n", nil, "api.listen"},
		{"api listen off loopback without users", "api:\n  listen: 0.0.0.0:9010\n", nil, "api.listen"},
		{"api ping_interval", "api:\n  ping_interval: -1s\n", nil, "api.ping_interval"},
		{"api max_connections", "api:\n  max_connections: -1\n", nil, "api.max_connections"},
		{"api request_rate", "", []string{"NKB_API_REQUEST_RATE=-1"}, "api.request_rate"},
		{"api origin", "api:\n  allowed_origins: [\"not an origin\"]\n", nil, "api.allowed_origins"},
		{"cluster nats_url", "", []string{"NKB_CLUSTER_NATS_URL=127.0.0.1:4222"}, "cluster.nats_url"},
		{"cluster node_id", "cluster:\n  nats_url: nats://127.0.0.1:4222\n  node_id: \"a.b\"\n", nil, "cluster.node_id"},
		{"cluster presence_ttl", "", []string{"NKB_CLUSTER_NATS_URL=nats://127.0.0.1:4222", "NKB_CLUSTER_PRESENCE_TTL=10ms"}, "cluster.presence_ttl"},
		{"cluster creds_file", "", []string{"NKB_CLUSTER_NATS_URL=nats://127.0.0.1:4222", "NKB_CLUSTER_CREDS_FILE=/nonexistent.creds"}, "cluster.creds_file"},
		{"cluster tls pair", "", []string{"NKB_CLUSTER_NATS_URL=nats://127.0.0.1:4222", "NKB_CLUSTER_TLS_CERT=/x.pem"}, "cluster.tls_cert"},
		{"any origin without users", "api:\n  allowed_origins: [\"*\"]\n", nil, "api.allowed_origins"},
		{"api tls files", "api:\n  tls_cert: /nonexistent.pem\n  tls_key: /nonexistent.key\n", nil, "api.tls_cert"},
		{"users hash", "users: [{user: a, password_hash: nothash}]\n", nil, "users"},
		{"sessions wait_timeout", "sessions:\n  wait_timeout: -5s\n", nil, "sessions.wait_timeout"},
		{"sessions backend", "sessions:\n  backends: {park: nosuch}\n", nil, "sessions.backends"},
		{"calls ring_time", "calls:\n  ring_time: -1s\n", nil, "calls.ring_time"},
		{"drain_timeout", "drain_timeout: -1s\n", nil, "drain_timeout"},
		{"metrics listen", "metrics:\n  listen: 127.0.0.1:99999\n", nil, "metrics.listen"},
		{"health max_cpu", "health:\n  max_cpu: 200\n", nil, "max_cpu"},
		{"verto listen", "verto:\n  listen: 127.0.0.1:-1\n", nil, "verto.listen"},
		{"verto detach_grace", "verto:\n  detach_grace: -1s\n", nil, "verto.detach_grace"},
		{"verto origin", "verto:\n  allowed_origins: [\"https://a.example/path\"]\n", nil, "verto.allowed_origins"},
		{"verto extension type", "verto:\n  extensions: {x: nosuchtype}\n", nil, "nosuchtype"},
		{"log level", "log:\n  level: loud\n", nil, "log.level"},
		{"cdr webhook without spool", "cdr:\n  enabled: true\n  webhook_urls: [\"https://127.0.0.1:9/cdr\"]\n  webhook_secret: s\n", nil, "cdr.spool_dir"},
		{"cdr event", "cdr:\n  enabled: true\n  webhook_events: [bogus]\n", nil, "cdr.webhook_events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "-check-config", "-config", file)
			cmd.Env = append(os.Environ(), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("accepted (%v): %s", err, stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.key) {
				t.Errorf("message does not name %s: %s", tc.key, stderr.String())
			}
		})
	}
	// The defaults and a config using every section pass.
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(fs+"  types: [park]\nsessions:\n  backends: {mcu: media}\napi:\n  allowed_origins: [\"https://a.example:8443\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-check-config"}, {"-check-config", "-config", good}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("%v refused: %v\n%s", args, err, out)
		}
	}
}
