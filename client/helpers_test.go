package nkclient_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// apiServer is an in-process nkbridge: the signalling core and the real
// WebSocket API on 127.0.0.1:0, with the embedded media backend (echo,
// proxy, rooms) on a real media engine when withMedia is set.
type apiServer struct {
	URL    string // ws://127.0.0.1:port/
	Core   *signaling.Core
	cancel context.CancelFunc
	done   chan error
	eng    *media.Engine
	be     *embedded.Backend
}

// startAPIServer starts one; log may be nil. Close stops it.
func startAPIServer(cfg wsapi.Config, withMedia bool, log *slog.Logger) (*apiServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &apiServer{done: make(chan error, 1)}
	backends := signaling.NewBackends()
	if withMedia {
		base := 30000 + 2*rand.IntN(15000)
		eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 40,
			Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
		if err != nil {
			return nil, err
		}
		s.eng, s.be = eng, embedded.New(eng, log)
		backends.Register(embedded.Name, s.be, embedded.Types()...)
	}
	s.Core = signaling.New(signaling.Options{Logger: log, Backends: backends})
	srv := wsapi.New(cfg, s.Core, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.closeBackends()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- srv.Serve(ctx, ln) }()
	s.URL = "ws://" + ln.Addr().String() + "/"
	return s, nil
}

func (s *apiServer) closeBackends() {
	if s.be != nil {
		s.be.Close()
		_ = s.eng.Close()
	}
}

// Close stops the server and everything it runs.
func (s *apiServer) Close() error {
	s.cancel()
	err := <-s.done
	s.Core.Close()
	s.closeBackends()
	return err
}

// newServer starts an API server for a test (no media backend unless
// withMedia), stopped when the test ends.
func newServer(t testing.TB, cfg wsapi.Config, withMedia bool, log *slog.Logger) *apiServer {
	t.Helper()
	s, err := startAPIServer(cfg, withMedia, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return s
}
