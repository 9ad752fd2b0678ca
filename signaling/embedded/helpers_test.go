package embedded_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = netip.MustParseAddr("127.0.0.1")

// testLogger logs at info level to t.Log until the test is over.
func testLogger(t testing.TB) *slog.Logger { return peers.TestLoggerLevel(t, slog.LevelInfo) }

// env is an in-process nkbridge: the signalling core, the real WebSocket API
// on 127.0.0.1:0 (also serving the test page at /page.html) and the embedded
// backend on a real media engine.
type env struct {
	t      testing.TB
	eng    *media.Engine
	be     *embedded.Backend
	core   *signaling.Core
	base   string // http://127.0.0.1:port
	ws     string // ws://127.0.0.1:port/
	stop   func()
	recDir string
}

func newEnv(t testing.TB, mod func(*media.Config)) *env {
	t.Helper()
	log := testLogger(t)
	base := 30000 + 2*rand.IntN(15000)
	rec := t.TempDir()
	cfg := media.Config{BindIP: loopback, RTPPortMin: base, RTPPortMax: base + 100, Quarantine: 200 * time.Millisecond,
		MediaTimeout: 20 * time.Second, RecordDir: rec, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	eng, err := media.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	be := embedded.New(eng, log)
	backends := signaling.NewBackends()
	backends.Register(embedded.Name, be, embedded.Types()...)
	core := signaling.New(signaling.Options{Logger: log, Backends: backends})
	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, apiTestPage)
	})
	srv := wsapi.New(wsapi.Config{Handler: mux, Admins: []string{"watcher", "watch"}}, core, log)
	addr, stopAPI := apitest.ServeServer(t, srv)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopAPI()
			core.Close()
			be.Close()
			_ = eng.Close()
		})
	}
	t.Cleanup(stop)
	return &env{t: t, eng: eng, be: be, core: core, base: "http://" + addr,
		ws: "ws://" + addr + "/", stop: stop, recDir: rec}
}

// waitIdle waits until the engine and the backend hold no session.
func (e *env) waitIdle(what string) {
	e.t.Helper()
	peers.WaitFor(e.t, 5*time.Second, what+": engine and backend idle", func() bool {
		return e.eng.Sessions() == 0 && e.be.Sessions() == 0
	})
}

// ---- a Go control-API client (gorilla/websocket) ----

// apiEvent is an event the API connection received.
type apiEvent struct {
	Type, ObjID string
	Body        map[string]any
}

// apiClient is an API connection (apitest) with the request helpers these tests use.
type apiClient struct{ *apitest.Conn }

func dialAPI(t testing.TB, e *env, user string) *apiClient {
	t.Helper()
	c := apitest.Dial(t, e.ws, nkclient.Options{})
	c.Login(user, "x")
	return &apiClient{c}
}

// send makes a request and returns its data (nil if not an object), or an *nkclient.APIError.
func (c *apiClient) send(class, subclass, cmd string, data map[string]any) (map[string]any, error) {
	var raw json.RawMessage
	if err := c.Req(class, subclass, cmd, data, &raw); err != nil {
		return nil, err
	}
	var d map[string]any
	_ = json.Unmarshal(raw, &d)
	return d, nil
}

func (c *apiClient) media(cmd string, data map[string]any) (map[string]any, error) {
	sub, cmd, _ := strings.Cut(cmd, "/")
	return c.send("media", sub, cmd, data)
}

// waitEvent takes the next event of type typ about objID (apitest.EventTimeout).
func (c *apiClient) waitEvent(typ, objID string) apiEvent {
	return apiEvent{Type: typ, ObjID: objID, Body: c.Event(nkclient.Selector{Type: typ, ObjID: objID}, nil)}
}

func codeOf(err error) int {
	var e *nkclient.APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// ---- a plain RTP peer: peers.RTPPeer, PCMU + telephone-event (PT 101) ----

type rtpPeer = peers.RTPPeer

func newRTPPeer(t testing.TB) *rtpPeer {
	t.Helper()
	p := peers.NewRTPPeer(t)
	p.Learn(0, "pcmu")
	p.Learn(101, "telephone-event")
	return p
}
