package sip

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tortureWant lists, per RFC 4475 message, the acceptable outcomes: SIP status codes, or 0 for
// "dropped without a response". nkbridge is the UAS/registrar here and 127.0.0.1 is not a trunk,
// so well-formed INVITEs are challenged (407) and well-formed REGISTERs get 401.
var tortureWant = map[string][]int{
	// 3.1.1 valid messages
	"wsinv":      {407, 400}, // sipgo cannot read "tag = x" (spaces around =): no From tag for the RFC 2543 key, so 400
	"intmeth":    {405, 400, 0},
	"esc01":      {407},
	"escnull":    {401},
	"lwsdisp":    {200},
	"longreq":    {407, 0},      // over UDP the 407 (all 34 Vias copied) exceeds the MTU: sipgo will not send it
	"dblreq":     {401, 407, 0}, // over TCP the stream holds two requests (REGISTER → 401, INVITE → 407), answered concurrently in either order
	"semiuri":    {200},
	"transports": {200},
	"unreason":   {0}, // stray responses are dropped
	"noreason":   {0},
	// 3.1.2 invalid messages
	"badinv01":   {400, 0},
	"clerr":      {400, 0},
	"scalar02":   {400, 0},
	"scalarlg":   {0},
	"nkb-negcl":  {400, 0},
	"quotbal":    {400, 0},
	"ltgtruri":   {400, 416, 0},
	"lwsruri":    {400, 0},
	"lwsstart":   {400, 0},
	"trws":       {200, 400, 0},
	"escruri":    {407, 400},
	"baddate":    {407, 400},
	"regbadct":   {401, 400},
	"badaspec":   {200, 400, 0},
	"baddn":      {400, 0, 200}, // sipgo's parser accepts the unquoted comma; harmless for a UAS
	"badvers":    {505, 400, 0},
	"mismatch01": {400},
	"mismatch02": {400, 405, 0},
	"bigcode":    {0},
	"nkb-binary": {400, 407, 0}, // authentication is checked before the body
	// 3.3 transaction layer
	"badbranch": {200, 400},
	// 3.4 application layer
	"insuf":    {400, 0},
	"unkscm":   {416, 400, 0},
	"novelsc":  {416, 400, 0},
	"unksm2":   {400, 401, 404, 0},
	"bext01":   {420},
	"invut":    {407, 415},
	"regaut01": {401},
	"multi01":  {400, 0},
	"mcl01":    {400, 0},
	"zeromf":   {200, 483},
	"cparam01": {401},
	"cparam02": {401},
	"regescrt": {401},
	"sdp01":    {407},
	"inv2543":  {400, 407},
}

var clAuto = regexp.MustCompile(`(?mi)^((?:Content-Length|l)[ \t]*:[ \t]*)AUTO[ \t]*$`)

var branchRe = regexp.MustCompile(`branch=\s*z9hG4bK`)

// loadTorture reads a torture message; tag is spliced into every branch so that messages (and
// the UDP and TCP copies of one message) never match each other's transactions.
func loadTorture(t *testing.T, path, tag string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	head, body, _ := strings.Cut(s, "\n\n")
	if !strings.HasSuffix(path, "nkb-binary.sip") {
		body = strings.ReplaceAll(body, "\n", "\r\n")
	}
	head = clAuto.ReplaceAllString(head, "${1}"+strconv.Itoa(len(body)))
	head = strings.ReplaceAll(head, "\n", "\r\n")
	head = branchRe.ReplaceAllString(head, "branch=z9hG4bK"+tag+"-")
	return []byte(head + "\r\n\r\n" + body)
}

var statusLine = regexp.MustCompile(`(?m)^SIP/2\.0 (\d{3}) `)

func codesIn(b []byte) []int {
	var out []int
	for _, m := range statusLine.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		if n >= 200 || n == 100 && false {
			out = append(out, n)
		}
	}
	return out
}

func sendUDP(t *testing.T, addr string, msg []byte, wait time.Duration) []int {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var all []byte
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	for {
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		all = append(all, buf[:n]...)
		if len(codesIn(all)) > 0 {
			break
		}
	}
	return codesIn(all)
}

func sendTCP(t *testing.T, addr string, msg []byte, wait time.Duration) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return nil
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var all bytes.Buffer
	r := bufio.NewReader(c)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		all.Write(buf[:n])
		if err != nil || len(codesIn(all.Bytes())) > 0 {
			break
		}
	}
	return codesIn(all.Bytes())
}

func optionsMsg(tp, branch string) []byte {
	return []byte(fmt.Sprintf("OPTIONS sip:nkbridge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.1:9;rport;branch=z9hG4bK%s\r\n"+
		"From: <sip:probe@127.0.0.1>;tag=p%s\r\nTo: <sip:nkbridge@127.0.0.1>\r\nCall-ID: probe-%s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", tp, branch, branch, branch))
}

func TestTortureMessages(t *testing.T) {
	rec := newRecorder(answerAfterRinging)
	cfg := testConfig()
	cfg.Domain = "example.com" // the RFC's REGISTERs are for example.com
	s := startServer(t, cfg, rec)
	files, err := filepath.Glob(filepath.Join("..", "testdata", "sipp", "torture", "*.sip"))
	if err != nil || len(files) < 40 {
		t.Fatalf("torture files: %d %v", len(files), err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sip")
		want, ok := tortureWant[name]
		if !ok {
			t.Errorf("%s: no expectation", name)
			continue
		}
		for _, tp := range []string{"udp", "tcp"} {
			msg := loadTorture(t, f, name+tp)
			var got []int
			if tp == "udp" {
				got = sendUDP(t, s.target("udp"), msg, 300*time.Millisecond)
			} else {
				got = sendTCP(t, s.target("tcp"), msg, 300*time.Millisecond)
			}
			code := 0
			if len(got) > 0 {
				code = got[0]
			}
			if !slices.Contains(want, code) {
				t.Errorf("%s over %s: got %d (%v), want one of %v", name, tp, code, got, want)
			}
		}
	}
	// Oversize message: dropped (UDP) or connection closed (TCP), never processed.
	big := optionsMsg("UDP", "big")
	big = bytes.Replace(big, []byte("Content-Length: 0\r\n"), []byte("X-Pad: "+strings.Repeat("a", 20000)+"\r\nContent-Length: 0\r\n"), 1)
	if got := sendUDP(t, s.target("udp"), big, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("oversize UDP message answered %v", got)
	}
	if got := sendTCP(t, s.target("tcp"), bytes.Replace(big, []byte("UDP"), []byte("TCP"), 1), 300*time.Millisecond); len(got) != 0 {
		t.Errorf("oversize TCP message answered %v", got)
	}
	// Still alive and clean.
	for _, tp := range []string{"udp", "tcp"} {
		var got []int
		if tp == "udp" {
			got = sendUDP(t, s.target("udp"), optionsMsg("UDP", "afterudp"), time.Second)
		} else {
			got = sendTCP(t, s.target("tcp"), optionsMsg("TCP", "aftertcp"), time.Second)
		}
		if len(got) != 1 || got[0] != 200 {
			t.Fatalf("OPTIONS over %s after torture: %v", tp, got)
		}
	}
	select {
	case c := <-rec.calls:
		t.Fatalf("a torture message reached the call handler: %+v", c.Info())
	default:
	}
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}

func TestTCPConnectionLimitPerSource(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxConnsPerIP = 3
	s := startServer(t, cfg, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", s.target("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The fourth connection is accepted by the kernel but closed by the server at once.
	c, err := net.Dial("tcp", s.target("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("fourth connection from one source was served")
	}
	// Closing one frees a slot: OPTIONS over a new connection is answered.
	conns[0].Close()
	conns = conns[1:]
	time.Sleep(100 * time.Millisecond) // the server sees the close asynchronously and exposes no count to wait on
	if got := sendTCP(t, s.target("tcp"), optionsMsg("TCP", "lim"), 2*time.Second); len(got) != 1 || got[0] != 200 {
		t.Fatalf("OPTIONS after a slot was freed: %v", got)
	}
}
