package vertogw

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"github.com/nkbridge/nkbridge/verto"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPassword is every test user's password.
const testPassword = "secret"

// env is a whole nkbridge in one test: core, embedded media engine (backend "media" for echo
// and proxy), the control API and the Verto server with the gateway, all on one 127.0.0.1 HTTP
// server (/verto, /api, pages and browser assets) so pages are same-origin.
type env struct {
	t    *testing.T
	log  *slog.Logger
	core *signaling.Core
	eng  *media.Engine
	emb  *embedded.Backend
	api  *wsapi.Server
	srv  *verto.Server
	gw   *Gateway
	ts   *httptest.Server
	mux  *http.ServeMux
}

type envOpts struct {
	noMedia      bool          // no media backend registered (p2p fallback)
	mediaTimeout time.Duration // the engine's (0: its default)
	users        []string      // configured users (nil: alice, bob, carol)
	open         bool          // no users at all
	verto        verto.Config
	gw           Config
}

func testUsers(t testing.TB, names []string) *auth.Users {
	t.Helper()
	m := map[string]string{}
	for _, n := range names {
		h, err := auth.HashPassword(testPassword, 1000)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = h
	}
	u, err := auth.NewUsers(m)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	log := peers.TestLogger(t)
	e := &env{t: t, log: log}
	backends := signaling.NewBackends()
	if !o.noMedia {
		base := peers.FreeUDPRange(t, 100)
		eng, err := media.New(media.Config{
			BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 99,
			Quarantine: -1, MediaTimeout: o.mediaTimeout, Logger: log.With("component", "media"),
		})
		if err != nil {
			t.Fatal(err)
		}
		e.eng = eng
		e.emb = embedded.New(eng, log)
		backends.Register(embedded.Name, e.emb, embedded.Types()...)
	}
	e.core = signaling.New(signaling.Options{Logger: log, Backends: backends, RingTime: 20 * time.Second})
	var users *auth.Users
	if !o.open {
		names := o.users
		if names == nil {
			names = []string{"alice", "bob", "carol"}
		}
		users = testUsers(t, names)
	}
	e.api = wsapi.New(wsapi.Config{Listen: "127.0.0.1:0", Users: users}, e.core, log)
	gw, err := New(o.gw, e.core, log)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	srv, err := verto.New(o.verto, NewAuth(users, log), gw, log)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	gw.Attach(srv)
	e.mux = http.NewServeMux()
	e.mux.Handle("/verto", srv)
	e.mux.Handle("/api", e.api)
	e.mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, swPage)
	})
	e.mux.HandleFunc("/apipage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8"><title>api</title></head><body></body></html>`)
	})
	e.ts = httptest.NewServer(e.mux)
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	e.srv.Close()
	e.gw.Close()
	e.api.Close()
	e.core.Close()
	if e.emb != nil {
		e.emb.Close()
		_ = e.eng.Close()
	}
	e.ts.Close()
}

func (e *env) vertoURL() string { return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/verto" }
func (e *env) apiURL() string   { return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api" }

// idle waits until the core holds no session or call and the gateway no call.
func (e *env) idle() {
	e.t.Helper()
	peers.WaitFor(e.t, 10*time.Second, "everything ended", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.gw.Calls() == 0 && (e.emb == nil || e.emb.Sessions() == 0)
	})
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// swPage loads the @signalwire/js bundle; every local SDP the Verto client reads is rewritten
// to loopback (nkb.loopbackSDP, as real-peers.md requires).
const swPage = `<!doctype html><html><head><meta charset="utf-8"><title>verto sw</title>
<script>
(function () {
  const d = Object.getOwnPropertyDescriptor(RTCPeerConnection.prototype, "localDescription");
  Object.defineProperty(RTCPeerConnection.prototype, "localDescription", {
    configurable: true,
    get() {
      const v = d.get.call(this);
      if (!v) return v;
      return new RTCSessionDescription({ type: v.type, sdp: nkb.loopbackSDP(v.sdp) });
    },
  });
})();
</script>
<script src="/assets/verto.min.js"></script></head><body></body></html>`
