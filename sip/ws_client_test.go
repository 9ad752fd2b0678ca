package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gorilla/websocket"
	"github.com/icholy/digest"
)

// wsPhone is a minimal SIP-over-WebSocket client (RFC 7118), like a browser softphone: its
// Contact is an unroutable ".invalid" name, so it can only be reached over its connection.
type wsPhone struct {
	t    *testing.T
	conn *websocket.Conn
}

func (p *wsPhone) send(m sip.Message) {
	p.t.Helper()
	if err := p.conn.WriteMessage(websocket.TextMessage, []byte(m.String())); err != nil {
		p.t.Fatal(err)
	}
}

func (p *wsPhone) read() sip.Message {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := p.conn.ReadMessage()
	if err != nil {
		p.t.Fatal(err)
	}
	m, err := sip.ParseMessage(b)
	if err != nil {
		p.t.Fatalf("parse %q: %v", b, err)
	}
	return m
}

func (p *wsPhone) register(user, pw string) {
	p.t.Helper()
	mk := func(cseq uint32, auth string) *sip.Request {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
		v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "WS", Host: "df7jal23ls0d.invalid", Params: sip.NewParams()}
		v.Params.Add("branch", sip.GenerateBranch())
		req.AppendHeader(v)
		from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1"}, Params: sip.NewParams()}
		from.Params.Add("tag", "wsreg")
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1"}})
		cid := sip.CallIDHeader("ws-reg-1")
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
		req.AppendHeader(sip.NewHeader("Contact", "<sip:"+user+"@df7jal23ls0d.invalid;transport=ws>"))
		req.AppendHeader(sip.NewHeader("Expires", "300"))
		if auth != "" {
			req.AppendHeader(sip.NewHeader("Authorization", auth))
		}
		req.SetBody(nil)
		return req
	}
	p.send(mk(1, ""))
	res := p.read().(*sip.Response)
	if res.StatusCode != 401 {
		p.t.Fatalf("want 401, got %s", res.StartLine())
	}
	ch, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		p.t.Fatal(err)
	}
	cred, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: "sip:127.0.0.1", Username: user, Password: pw})
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(mk(2, cred.String()))
	if res := p.read().(*sip.Response); res.StatusCode != 200 {
		p.t.Fatalf("register: %s", res.StartLine())
	}
}

func TestWSPhoneRegisteredIsReachedOverItsConnection(t *testing.T) {
	cfg := testConfig()
	cfg.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "ws", Addr: "127.0.0.1:0"}}
	s, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := websocket.Dialer{Subprotocols: []string{"sip"}, HandshakeTimeout: 3 * time.Second}
	conn, _, err := d.Dial("ws://"+s.target("ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	phone := &wsPhone{t: t, conn: conn}
	phone.register("bob", "hunter2")
	bs := s.Registrar().Lookup("bob")
	if len(bs) != 1 || bs[0].Transport != "ws" || !strings.Contains(bs[0].Contact, ".invalid") {
		t.Fatalf("bindings %+v", bs)
	}

	type result struct {
		c   *Call
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		c, err := s.Dial(ctx, DialOptions{Binding: &bs[0], Offer: []byte(testSDP)})
		done <- result{c, err}
	}()
	inv := phone.read().(*sip.Request)
	if inv.Method != sip.INVITE || !strings.Contains(string(inv.Body()), "m=audio") {
		t.Fatalf("phone got %s", inv.StartLine())
	}
	ok := sip.NewResponseFromRequest(inv, 200, "OK", []byte(strings.Replace(testSDP, "40000", "41000", 1)))
	ok.AppendHeader(sip.NewHeader("Contact", "<sip:bob@df7jal23ls0d.invalid;transport=ws>"))
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	phone.send(ok)
	if ack := phone.read().(*sip.Request); ack.Method != sip.ACK {
		t.Fatalf("want ACK, got %s", ack.StartLine())
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if !strings.Contains(string(r.c.RemoteSDP()), "41000") {
		t.Fatal("answer SDP not kept")
	}
	hung := make(chan error, 1)
	go func() { hung <- r.c.Hangup(ctx) }()
	bye := phone.read().(*sip.Request)
	if bye.Method != sip.BYE {
		t.Fatalf("want BYE, got %s", bye.StartLine())
	}
	phone.send(sip.NewResponseFromRequest(bye, 200, "OK", nil))
	if err := <-hung; err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if e := r.c.End(); e.Cause != CauseLocalHangup {
		t.Fatalf("end %+v", e)
	}
}
