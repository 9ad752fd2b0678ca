package securitytest

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"github.com/nkbridge/nkbridge/verto"
)

// rebindHeaders is what a browser sends from a page on a domain that the
// attacker rebinds to 127.0.0.1: the page is same-origin to itself.
func rebindHeaders(addr string) http.Header {
	_, port, _ := net.SplitHostPort(addr)
	h := http.Header{}
	h.Set("Host", "rebind.attacker.example:"+port)
	h.Set("Origin", "http://rebind.attacker.example:"+port)
	return h
}

// dialHost upgrades with the given headers (Host included) and returns the
// HTTP status of a refusal (0 when the upgrade succeeded).
func dialHost(t *testing.T, url string, hdr http.Header) int {
	t.Helper()
	if st := apitest.UpgradeStatus(t, url, hdr); st != http.StatusSwitchingProtocols {
		return st
	}
	return 0
}

// #13.2: in open mode (no users, loopback) the API and Verto accept only
// loopback Host names, so a rebinding page cannot log in anonymously.
func TestDNSRebindingOpenMode(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{}, nil)
	if st := dialHost(t, "ws://"+e.addr+"/", rebindHeaders(e.addr)); st != http.StatusForbidden {
		t.Errorf("API upgrade from a rebinding page: status %d, want 403", st)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "LOCALHOST", "127.9.9.9"} {
		_, port, _ := net.SplitHostPort(e.addr)
		h := http.Header{"Host": {host + ":" + port}, "Origin": {"http://" + host + ":" + port}}
		if st := dialHost(t, "ws://"+e.addr+"/", h); st != 0 {
			t.Errorf("API upgrade with Host %s: status %d", host, st)
		}
	}
	// With users, names are checked by passwords: any Host is fine.
	eu := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, nil)
	if st := dialHost(t, "ws://"+eu.addr+"/", rebindHeaders(eu.addr)); st != 0 {
		t.Errorf("API with users: status %d", st)
	}

	vaddr := startVerto(t, verto.Config{LoopbackHostOnly: true}, openAuth{}, refuseCalls{})
	if st := dialHost(t, "ws://"+vaddr+"/", rebindHeaders(vaddr)); st != http.StatusForbidden {
		t.Errorf("Verto upgrade from a rebinding page: status %d, want 403", st)
	}
}

// allowed_origins "*" without users is a configuration error naming the setting.
func TestAnyOriginNeedsUsers(t *testing.T) {
	core := signaling.New(signaling.Options{})
	defer core.Close()
	srv := wsapi.New(wsapi.Config{AllowedOrigins: []string{"*"}}, core, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "api.allowed_origins") {
		t.Fatalf("Serve with allowed_origins * and no users: %v", err)
	}
}

type openAuth struct{}

func (openAuth) Authenticate(_ context.Context, cr verto.Credentials) (string, error) {
	return cr.User, nil
}

type refuseCalls struct{ verto.CallHandler }
