package securitytest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/verto"
	"github.com/nkbridge/nkbridge/verto/vertogw"
)

// startVerto runs a Verto server on 127.0.0.1:0 with the given
// authenticator (nil: nkbridge's over the test users) and call handler.
func startVerto(t *testing.T, cfg verto.Config, a verto.Authenticator, h verto.CallHandler) string {
	t.Helper()
	if a == nil {
		a = vertogw.NewAuth(testUsers(t, 0), nil)
	}
	vs, err := verto.New(cfg, a, h, peers.TestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- vs.Serve(context.Background(), ln) }()
	t.Cleanup(func() { vs.Close(); <-done })
	return ln.Addr().String()
}

func dialVerto(addr, src string) (*websocket.Conn, error) {
	d := *websocket.DefaultDialer
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	d.NetDialContext = nd.DialContext
	ws, _, err := d.Dial("ws://"+addr+"/", nil)
	return ws, err
}

// vertoLogin sends verto's login and returns the error message ("" for success).
func vertoLogin(ws *websocket.Conn, user, pass string) (string, error) {
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "login",
		"params": map[string]any{"login": user, "passwd": pass, "sessid": "s-" + user}}); err != nil {
		return "", err
	}
	for {
		var m struct {
			ID    any `json:"id"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
			Method string `json:"method"`
		}
		if err := ws.ReadJSON(&m); err != nil {
			return "", err
		}
		if m.Method != "" {
			continue // a server request (verto.clientReady, ...)
		}
		if m.Error != nil {
			return m.Error.Message, nil
		}
		return "", nil
	}
}

// #13.4 and #13.6 for Verto: logins from one address are checked a few at a
// time (the rest refused before hashing), and one address holds a bounded
// number of sockets.
func TestVertoLoginFloodAndSockets(t *testing.T) {
	addr := startVerto(t, verto.Config{MaxConnectionsPerIP: 30}, nil, refuseCalls{})
	var socks []*websocket.Conn
	for range 24 {
		ws, err := dialVerto(addr, "127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		socks = append(socks, ws)
	}
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		hashed, refused int
	)
	for _, ws := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, err := vertoLogin(ws, "alice", "guess")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("login: %v", err)
			case strings.Contains(msg, "too many"):
				refused++
			case msg != "":
				hashed++
			default:
				t.Error("a wrong password was accepted")
			}
		}()
	}
	wg.Wait()
	t.Logf("24 wrong Verto logins at once: %d hashed, %d refused before hashing", hashed, refused)
	if hashed > 2 {
		t.Errorf("%d concurrent wrong Verto logins from one address were hashed, want at most 2 (verto.max_logins_per_ip)", hashed)
	}
	// Another address logs in.
	ws, err := dialVerto(addr, "127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if msg, err := vertoLogin(ws, "bob", testPassword); err != nil || msg != "" {
		t.Fatalf("bob from another address: %q %v", msg, err)
	}
	// Sockets per address.
	for range 10 {
		ws, err := dialVerto(addr, "127.0.0.2")
		if err != nil {
			break
		}
		defer ws.Close()
		socks = append(socks, ws)
	}
	if len(socks) != 30 {
		t.Errorf("%d sockets from one address, want 30 (verto.max_connections_per_ip)", len(socks))
	}
}

// panicCalls is a CallHandler that panics on every invite.
type panicCalls struct{}

func (panicCalls) HandleInvite(context.Context, verto.Invite, *verto.Call) (verto.CallEvents, error) {
	panic("call handler exploded")
}

// #13.11 for Verto: a panic behind a Verto request rejects that call only;
// the socket and the server go on.
func TestVertoPanicContained(t *testing.T) {
	addr := startVerto(t, verto.Config{}, vertogw.NewAuth(testUsers(t, 1), nil), panicCalls{})
	ws, err := dialVerto(addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if msg, err := vertoLogin(ws, "alice", testPassword); err != nil || msg != "" {
		t.Fatalf("login: %q %v", msg, err)
	}
	for i := range 2 {
		if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 10 + i, "method": "verto.invite", "params": map[string]any{
			"sessid": "s-alice", "sdp": rtpOffer()["sdp"],
			"dialogParams": map[string]any{"callID": "call-" + string(rune('a'+i)), "destination_number": "echo"}}}); err != nil {
			t.Fatal(err)
		}
		for {
			var m struct {
				ID    any `json:"id"`
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
				Method string `json:"method"`
			}
			if err := ws.ReadJSON(&m); err != nil {
				t.Fatalf("invite %d: the socket died: %v", i, err)
			}
			if m.Method != "" {
				continue
			}
			if m.Error == nil {
				t.Fatalf("invite %d accepted", i)
			}
			break
		}
	}
}
