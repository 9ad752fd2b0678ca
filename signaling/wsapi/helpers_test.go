package wsapi_test

import (
	"log/slog"
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// testLogger logs at debug level to t.Log until the test is over.
func testLogger(t testing.TB) *slog.Logger { return peers.TestLogger(t) }

type testEnv struct {
	t    testing.TB
	core *signaling.Core
	srv  *wsapi.Server
	url  string
	stop func()
}

// startServer runs a real API server on 127.0.0.1:0.
func startServer(t testing.TB, cfg wsapi.Config, opts signaling.Options) *testEnv {
	t.Helper()
	log := testLogger(t)
	if _, ok := t.(*testing.B); ok {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Logger = log
	core := signaling.New(opts)
	srv := wsapi.New(cfg, core, log)
	addr, stopAPI := apitest.ServeServer(t, srv)
	var once sync.Once
	stop := func() { once.Do(func() { stopAPI(); core.Close() }) }
	t.Cleanup(stop)
	return &testEnv{t: t, core: core, srv: srv, url: "ws://" + addr + "/", stop: stop}
}

type msg = map[string]any

// client is the wire-level API client of these tests.
type client = apitest.Raw

func dial(t testing.TB, url string) *client { t.Helper(); return apitest.DialRaw(t, url) }

func body(d msg) msg {
	b, _ := d["body"].(map[string]any)
	return b
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}
