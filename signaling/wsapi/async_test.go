package wsapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// slowBackend blocks StartMedia until released or the request's context ends.
type slowBackend struct {
	release  chan struct{}
	entered  chan struct{} // told (if not nil) when a StartMedia begins
	canceled chan struct{}
	stopped  chan *signaling.Error
}

func (b *slowBackend) StartMedia(ctx context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	select {
	case <-b.release:
		return slowMedia{b}, signaling.MediaResult{Answer: signaling.Desc{"sdp": "slow-answer"}}, nil
	case <-ctx.Done():
		b.canceled <- struct{}{}
		return nil, signaling.MediaResult{}, ctx.Err()
	}
}

type slowMedia struct{ b *slowBackend }

func (slowMedia) SetAnswer(context.Context, signaling.Desc) (signaling.Desc, error) { return nil, nil }
func (slowMedia) Update(context.Context, string, map[string]any) (map[string]any, error) {
	return nil, nil
}
func (slowMedia) Candidate(context.Context, signaling.Candidate) error { return nil }
func (m slowMedia) Stop(e *signaling.Error)                            { m.b.stopped <- e }

// A session start that waits on its backend is acknowledged at once, other
// requests on the connection keep being served, and the final reply follows;
// if the client goes away meanwhile the backend's context is cancelled and
// nothing is left behind.
func TestSlowBackendAckAndCancel(t *testing.T) {
	sb := &slowBackend{release: make(chan struct{}), canceled: make(chan struct{}, 1), stopped: make(chan *signaling.Error, 1)}
	bs := signaling.NewBackends()
	bs.Register("slow", sb, signaling.TypePark)
	env := startServer(t, wsapi.Config{}, signaling.Options{Backends: bs})
	c := dial(t, env.url)
	c.Login("u", "")
	startTid := c.NewTID()
	c.Send(msg{"class": "media", "subclass": "session", "cmd": "start", "tid": startTid, "data": msg{"type": "park", "offer": msg{"sdp": "x"}}})
	c.Next(func(m msg) bool { return m["ack"] != nil && num(m["ack"]) == startTid }, 2*time.Second, "ack")
	c.OK("core", "user", "list", nil) // served while the start waits
	close(sb.release)
	r := c.Next(apitest.TIDIs(startTid), 2*time.Second, "start reply")
	d, _ := r["data"].(map[string]any)
	if r["result"] != "ok" || d["answer"].(map[string]any)["sdp"] != "slow-answer" {
		t.Fatalf("start = %v", r)
	}
	sid := d["session_id"].(string)
	c.OK("media", "session", "stop", msg{"session_id": sid})
	if e := <-sb.stopped; e.Code != signaling.CodeUserStop {
		t.Fatalf("media stop = %v", e)
	}

	sb2 := &slowBackend{release: make(chan struct{}), entered: make(chan struct{}, 1), canceled: make(chan struct{}, 1), stopped: make(chan *signaling.Error, 1)}
	bs.Register("slow", sb2, signaling.TypePark)
	c2 := dial(t, env.url)
	c2.Login("u2", "")
	c2.Send(msg{"class": "media", "subclass": "session", "cmd": "start", "tid": 99, "data": msg{"type": "park", "offer": msg{"sdp": "x"}}})
	c2.Next(func(m msg) bool { return num(m["ack"]) == 99 }, 2*time.Second, "ack")
	// The ack may come before the start reaches the backend (a start whose
	// connection is already gone never does): leave once the backend waits.
	select {
	case <-sb2.entered:
	case <-time.After(2 * time.Second):
		t.Fatal("the start did not reach the backend")
	}
	c2.WS.Close()
	select {
	case <-sb2.canceled:
	case <-time.After(2 * time.Second):
		t.Fatal("backend context not cancelled")
	}
	peers.WaitFor(t, 2*time.Second, "no session left", func() bool { return len(env.core.ListSessions()) == 0 })
}
