package securitytest

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// apiEnv is an in-process nkbridge: the signalling core, the real control
// API on 127.0.0.1:0 and the embedded backend (with rooms) on a real media
// engine.
type apiEnv struct {
	t    testing.TB
	eng  *media.Engine
	be   *embedded.Backend
	core *signaling.Core
	srv  *wsapi.Server
	addr string // 127.0.0.1:port
}

// testPassword is every test user's password; the hashes use few
// iterations unless a test wants the real cost.
const testPassword = "s3cret"

// testUsers returns users alice, bob and root (admin) with cheap hashes.
func testUsers(t testing.TB, iterations int, names ...string) *auth.Users {
	t.Helper()
	hashes := map[string]string{}
	for _, n := range append([]string{"alice", "bob", "root"}, names...) {
		h, err := auth.HashPassword(testPassword, iterations)
		if err != nil {
			t.Fatal(err)
		}
		hashes[n] = h
	}
	u, err := auth.NewUsers(hashes, "root")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newAPIEnv starts the environment; mod may adjust the API configuration
// and register more backends.
func newAPIEnv(t testing.TB, cfg wsapi.Config, mod func(*signaling.Backends)) *apiEnv {
	t.Helper()
	log := peers.TestLoggerLevel(t, slog.LevelInfo)
	base := 30000 + 2*rand.IntN(15000)
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 200,
		Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	be := embedded.New(eng, log)
	backends := signaling.NewBackends()
	backends.Register(embedded.Name, be, append(embedded.Types(), embedded.RoomTypes()...)...)
	bus := signaling.NewBus()
	rs, err := be.EnableRooms(embedded.RoomsConfig{EmptyGrace: time.Minute, CreateMissing: true, OnEvent: bus.Publish})
	if err != nil {
		t.Fatal(err)
	}
	backends.RegisterRooms(embedded.Name, rs, signaling.RoomSFU, signaling.RoomMCU)
	if mod != nil {
		mod(backends)
	}
	core := signaling.New(signaling.Options{Logger: log, Bus: bus, Backends: backends})
	srv := wsapi.New(cfg, core, log)
	addr, stopAPI := apitest.ServeServer(t, srv)
	t.Cleanup(func() {
		stopAPI()
		core.Close()
		be.Close()
		_ = eng.Close()
	})
	return &apiEnv{t: t, eng: eng, be: be, core: core, srv: srv, addr: addr}
}

// rtpOffer is a plain-RTP offer (nobody sends to it: these tests are about
// signalling).
func rtpOffer() map[string]any {
	return map[string]any{"sdp_type": "rtp", "sdp": "v=0\r\no=phone 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"}
}

// ---- the control-API client: apitest.Raw ----

type client = apitest.Raw

func codeOf(err error) int {
	var ae *nkclient.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

// dialFrom connects to the API from the local address src ("" = any).
func dialFrom(t testing.TB, addr, src string, hdr http.Header) (*client, error) {
	return apitest.DialRawWith(t, "ws://"+addr+"/", apitest.RawOptions{Source: src, Header: hdr})
}

// login dials and logs user in with the test password.
func login(t testing.TB, e *apiEnv, user string) *client {
	t.Helper()
	c, err := dialFrom(t, e.addr, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call("core", "user", "login", map[string]any{"user": user, "password": testPassword}); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}
