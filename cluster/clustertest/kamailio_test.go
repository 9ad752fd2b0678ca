package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// sipRequestsIn reads nkbridge_sip_requests_total{method, direction="in"} from node's metrics.
func sipRequestsIn(t *testing.T, node *peers.Node, method string) int {
	t.Helper()
	resp, err := http.Get("http://" + node.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "nkbridge_sip_requests_total{") && strings.Contains(l, `direction="in"`) && strings.Contains(l, `method="`+method+`"`) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	return 0
}

// Kamailio (testdata/kamailio/kamailio.cfg, Debian kamailio 5.6) in front of two cluster
// nodes: 10 SIPp calls to the echo extension through Kamailio all complete (ACK and BYE follow
// the Record-Route set) and are spread round robin, 5 INVITEs per node; 8 SIP users register
// through it, each user's REGISTERs (two: the challenge and the answer) on one node, users on
// both nodes.
func TestKamailioDispatchesToNodes(t *testing.T) {
	needCluster(t)
	peers.Need(t, "kamailio")
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nats := peers.StartNATS(t, peers.NATSOptions{})
	var users []string
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := range 8 {
		u := fmt.Sprintf("phone%d", i+1)
		users = append(users, fmt.Sprintf("{user: %s, password: pw%d}", u, i+1))
		fmt.Fprintf(&csv, "%s;[authentication username=%s password=pw%d]\n", u, u, i+1)
	}
	// Kamailio's address is a trunk of the nodes (its INVITEs need no digest; REGISTERs do).
	nodes := startNodes(t, nats.URL(), 2, "sip:\n  users: ["+strings.Join(users, ", ")+"]\n  trunks: [{name: kamailio, networks: [\"127.0.0.1/32\"]}]\n", true)
	dir := t.TempDir()
	list := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(list, []byte(fmt.Sprintf("1 sip:%s\n1 sip:%s\n", nodes[0].SIPAddr, nodes[1].SIPAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	root := peers.RepoRoot(t)
	k := peers.StartKamailio(t, peers.KamailioOptions{
		Config:  filepath.Join(root, "testdata", "kamailio", "kamailio.cfg"),
		Defines: map[string]string{"DS_LIST": strconv.Quote(list)},
	})
	inv0 := []int{sipRequestsIn(t, nodes[0], "INVITE"), sipRequestsIn(t, nodes[1], "INVITE")}
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: filepath.Join(root, "testdata", "kamailio", "uac-proxy.xml"), Remote: k.Addr(), Service: "echo",
		Calls: 10, Rate: 20, Limit: 5, Timeout: 60 * time.Second,
	})
	if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 10 {
		t.Fatalf("calls through Kamailio: %v, exit %d, %+v\n%s\n%s", err, res.ExitCode, res.Stats, res.Errors, k.Process().Output())
	}
	per := []int{sipRequestsIn(t, nodes[0], "INVITE") - inv0[0], sipRequestsIn(t, nodes[1], "INVITE") - inv0[1]}
	t.Logf("INVITEs per node: n1 %d, n2 %d", per[0], per[1])
	if per[0] != 5 || per[1] != 5 {
		t.Errorf("INVITEs per node %v, want 5 and 5 (round robin)", per)
	}

	csvFile := filepath.Join(dir, "users.csv")
	if err := os.WriteFile(csvFile, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	reg0 := []int{sipRequestsIn(t, nodes[0], "REGISTER"), sipRequestsIn(t, nodes[1], "REGISTER")}
	res, err = peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: filepath.Join(root, "testdata", "kamailio", "register-proxy.xml"), Remote: k.Addr(),
		InfFile: csvFile, Calls: 8, Rate: 20, Limit: 1, Timeout: 60 * time.Second,
	})
	if err != nil || res.ExitCode != 0 || res.Stats.SuccessfulCalls != 8 {
		t.Fatalf("REGISTERs through Kamailio: %v, exit %d, %+v\n%s", err, res.ExitCode, res.Stats, res.Errors)
	}
	regs := []int{sipRequestsIn(t, nodes[0], "REGISTER") - reg0[0], sipRequestsIn(t, nodes[1], "REGISTER") - reg0[1]}
	t.Logf("REGISTERs per node: n1 %d, n2 %d", regs[0], regs[1])
	// Each user's two REGISTERs reach one node (an odd count would mean a user was split).
	if regs[0]+regs[1] != 16 || regs[0]%2 != 0 || regs[0] == 0 || regs[1] == 0 {
		t.Errorf("REGISTERs per node %v: want 16 in all, in pairs, on both nodes", regs)
	}
}
