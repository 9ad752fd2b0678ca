package esl_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
)

// brokenWrites is a connection whose writes fail with EPIPE once broken is set, while its
// reads go on: the peer went away and our reader has not seen it yet.
type brokenWrites struct {
	net.Conn
	broken *atomic.Bool
}

func (c brokenWrites) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
	return c.Conn.Write(p)
}

// A command whose write fails because the peer is gone reports esl.ErrClosed (callers retry
// an idempotent command on the next connection), and the connection is closed.
func TestWriteFailureIsClosed(t *testing.T) {
	s := startFake(t)
	var broken atomic.Bool
	c := dial(t, s, func(o *esl.Options) {
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return brokenWrites{nc, &broken}, nil
		}
	})
	if _, err := c.API(ctx5(t), "status"); err != nil {
		t.Fatalf("before: %v", err)
	}
	broken.Store(true)
	_, err := c.API(ctx5(t), "status")
	if !errors.Is(err, esl.ErrClosed) || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a gone peer: %v, want esl.ErrClosed wrapping EPIPE", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed after a failed write")
	}
}
