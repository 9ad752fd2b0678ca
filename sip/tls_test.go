package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLSAndWSListeners(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := testConfig()
	cfg.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tls", Addr: "127.0.0.1:0"},
		{Transport: "ws", Addr: "127.0.0.1:0"}, {Transport: "wss", Addr: "127.0.0.1:0"}}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// TLS
	c, err := tls.Dial("tcp", s.target("tls"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(optionsMsg("TLS", "tls1")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") || !strings.Contains(string(buf[:n]), "Allow: INVITE") {
		t.Fatalf("TLS OPTIONS answer %q", buf[:n])
	}

	// WS and WSS (RFC 7118, subprotocol "sip")
	for _, tp := range []string{"ws", "wss"} {
		d := websocket.Dialer{Subprotocols: []string{"sip"}, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, HandshakeTimeout: 3 * time.Second}
		conn, _, err := d.Dial(tp+"://"+s.target(tp), nil)
		if err != nil {
			t.Fatalf("%s dial: %v", tp, err)
		}
		if err := conn.WriteMessage(websocket.TextMessage, optionsMsg(strings.ToUpper(tp), tp+"1")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, msg, err := conn.ReadMessage()
		conn.Close()
		if err != nil || !strings.HasPrefix(string(msg), "SIP/2.0 200") {
			t.Fatalf("%s OPTIONS answer %q %v", tp, msg, err)
		}
	}
}

func TestTLSListenerNeedsCertificate(t *testing.T) {
	cfg := testConfig()
	cfg.Listen = []Listen{{Transport: "tls", Addr: "127.0.0.1:0"}}
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("tls without certificate: %v", err)
	}
	cfg.Listen = []Listen{{Transport: "udp", Addr: "0.0.0.0:5060"}}
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("wildcard listen without ExternalHost accepted")
	}
}
