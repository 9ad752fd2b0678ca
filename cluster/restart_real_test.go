package cluster

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// The real nats-server (Debian's, when installed) restarted on its store directory: the nodes
// make the buckets again and publish their contacts; a user on one node is found from the
// other again.
func TestRealNATSServerRestart(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if peers.Required() {
			t.Fatal("nats-server not installed")
		}
		t.Skip("nats-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		peers.WaitFor(t, 10*time.Second, "nats-server listening", func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	start()
	t.Cleanup(func() { stop() })
	ns := &natsServer{t: t, port: port}
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	n2.login("bob", nkclient.Options{})
	waitUser(t, n1, "bob", 1)
	stop()
	peers.WaitFor(t, 15*time.Second, "n1 disconnected", func() bool { return !n1.node.connected() })
	start()
	waitUser(t, n1, "bob", 1)
	n2.login("carol", nkclient.Options{})
	waitUser(t, n1, "carol", 1)
}
