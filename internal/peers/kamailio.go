package peers

import (
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// KamailioOptions describes one Kamailio (Debian kamailio 5.6) run in the foreground.
type KamailioOptions struct {
	// Config is the configuration file (e.g. testdata/kamailio/kamailio.cfg).
	Config string
	// Defines are -A NAME=VALUE preprocessor defines besides LISTEN, which StartKamailio sets
	// to udp:127.0.0.1:<Port> (the config must use it in listen=). String values need their
	// quotes: {"DS_LIST": `"/path/dispatcher.list"`}.
	Defines map[string]string
	// Port is the UDP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Logger receives Kamailio's output at debug level; default: t.Log.
	Logger *slog.Logger
}

// Kamailio is a running Kamailio bound to a test's lifetime.
type Kamailio struct {
	proc *Process
	port int
}

// StartKamailio checks the configuration (kamailio -c), starts Kamailio and returns once its
// UDP socket is bound. It skips or fails (NKB_REQUIRE_PEERS=1) the test when kamailio is
// missing.
func StartKamailio(t testing.TB, o KamailioOptions) *Kamailio {
	t.Helper()
	bin := Need(t, "kamailio")
	if o.Logger == nil {
		o.Logger = TestLogger(t)
	}
	if o.Port == 0 {
		o.Port = FreeUDPPort(t)
	}
	cfg, err := filepath.Abs(o.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"-f", cfg, "-A", fmt.Sprintf("LISTEN=udp:127.0.0.1:%d", o.Port)}
	for k, v := range o.Defines {
		args = append(args, "-A", k+"="+v)
	}
	if out, err := exec.Command(bin, append([]string{"-c"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("peers.StartKamailio: kamailio -c: %v\n%s", err, out)
	}
	args = append(args, "-DD", "-E", "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"))
	p, err := StartProcess(t, "kamailio", exec.Command(bin, args...), o.Logger)
	if err != nil {
		t.Fatalf("peers.StartKamailio: %v", err)
	}
	k := &Kamailio{proc: p, port: o.Port}
	deadline := time.Now().Add(15 * time.Second)
	for !Listening("udp", o.Port) {
		select {
		case <-p.Done():
			t.Fatalf("peers.StartKamailio: exited (%d):\n%s", p.ExitCode(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers.StartKamailio: not listening on %d after 15 s:\n%s", o.Port, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return k
}

// Addr is Kamailio's SIP address, 127.0.0.1:port.
func (k *Kamailio) Addr() string { return fmt.Sprintf("127.0.0.1:%d", k.port) }

// Process is Kamailio's main process (its children are in its process group).
func (k *Kamailio) Process() *Process { return k.proc }
