package media

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
)

type countTap struct{ n atomic.Int64 }

func (c *countTap) Media(bool, Format, *rtp.Header, []byte) { c.n.Add(1) }
func (c *countTap) KeyframeRequest()                        {}

// Attach racing with Close (run with -race): every Attach either lands before the stop or
// fails with ErrState, and once Close has returned no pipes are published, so no media can
// reach a tap of a stopped session.
func TestAttachConcurrentWithStop(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Quarantine = -1 }) // ports reused at once
	for i := 0; i < 300; i++ {
		p := newRTPPeer(t)
		s := startRTPEcho(t, e, p, SessionOptions{})
		var wg sync.WaitGroup
		var attached, refused atomic.Int64
		start := make(chan struct{})
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for k := 0; k < 50; k++ {
					err := s.Attach(&countTap{})
					switch {
					case err == nil:
						attached.Add(1)
					case errors.Is(err, ErrState):
						refused.Add(1)
						return
					default:
						t.Errorf("attach: %v", err)
						return
					}
				}
			}()
		}
		close(start)
		s.Close()
		wg.Wait()
		if ps := s.pipes.Load(); ps != nil {
			t.Fatalf("iteration %d: pipes published after the session stopped (%d attached)", i, attached.Load())
		}
		if err := s.Attach(&countTap{}); !errors.Is(err, ErrState) {
			t.Fatalf("attach after stop: %v", err)
		}
		if err := s.Echo(nil); !errors.Is(err, ErrState) {
			t.Fatalf("echo after stop: %v", err)
		}
		p.Conn().Close()
	}
	if e.Sessions() != 0 {
		t.Fatalf("%d sessions left", e.Sessions())
	}
}
