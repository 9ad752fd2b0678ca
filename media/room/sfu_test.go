package room

import (
	"context"
	"sync"
	"testing"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media"
)

// fakeEP is an Endpoint that records what is written to it.
type fakeEP struct {
	id    string
	audio []media.Format
	mu    sync.Mutex
	tap   media.Tap
	got   []rtp.Header
	pay   [][]byte
	kf    int
	done  chan struct{}
}

func newFake(id string) *fakeEP {
	return &fakeEP{id: id, audio: []media.Format{{PT: 111, Name: "opus", Rate: 48000, Channels: 2}}, done: make(chan struct{})}
}
func (f *fakeEP) ID() string { return f.id }
func (f *fakeEP) Attach(t media.Tap) error {
	f.mu.Lock()
	f.tap = t
	f.mu.Unlock()
	return nil
}
func (f *fakeEP) CallerFormats() ([]media.Format, []media.Format) { return f.audio, nil }
func (f *fakeEP) CallerReady(bool) bool                           { return true }
func (f *fakeEP) WriteCaller(_ bool, h *rtp.Header, p []byte) error {
	f.mu.Lock()
	f.got = append(f.got, *h)
	f.pay = append(f.pay, append([]byte(nil), p...))
	f.mu.Unlock()
	return nil
}
func (f *fakeEP) RequestKeyframe()                     { f.mu.Lock(); f.kf++; f.mu.Unlock() }
func (f *fakeEP) KeepAlive()                           {}
func (f *fakeEP) EchoPosition() (media.Position, bool) { return media.Position{}, false }
func (f *fakeEP) Done() <-chan struct{} {
	return f.done
}

// TestSFUSwitch: a listener gets only its current publisher's packets, with a continuous
// sequence across a switch, and the new publisher is asked for a keyframe.
func TestSFUSwitch(t *testing.T) {
	m := NewManager(Config{EmptyGrace: -1})
	defer m.Close()
	pa, pb, l := newFake("a"), newFake("b"), newFake("l")
	var tapA, tapB media.Tap
	r, _, err := m.Publish(context.Background(), "", false, Options{}, "a", func(t media.Tap) (Endpoint, error) { tapA = t; return pa, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Publish(context.Background(), r.ID(), false, Options{}, "b", func(t media.Tap) (Endpoint, error) { tapB = t; return pb, nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Listen(context.Background(), "", "a", "l", func(a, v []media.Format, t media.Tap) (Endpoint, error) { return l, nil }); err != nil {
		t.Fatal(err)
	}
	opus := media.Format{PT: 111, Name: "opus", Rate: 48000}
	send := func(tp media.Tap, tag byte, i int) {
		h := rtp.Header{PayloadType: 111, SequenceNumber: uint16(100*int(tag) + i), Timestamp: uint32(i * 960)}
		tp.Media(false, opus, &h, []byte{tag})
	}
	for i := 0; i < 5; i++ {
		send(tapA, 'a', i)
		send(tapB, 'b', i)
	}
	if err := m.Switch("l", "b"); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		send(tapA, 'a', i)
		send(tapB, 'b', i)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) != 10 {
		t.Fatalf("listener got %d packets, want 10", len(l.got))
	}
	for i, p := range l.pay {
		want := byte('a')
		if i >= 5 {
			want = 'b'
		}
		if p[0] != want {
			t.Errorf("packet %d from %c, want %c", i, p[0], want)
		}
		if i > 0 && l.got[i].SequenceNumber != l.got[i-1].SequenceNumber+1 {
			t.Errorf("seq jump at %d: %d after %d", i, l.got[i].SequenceNumber, l.got[i-1].SequenceNumber)
		}
	}
	if pb.kf == 0 {
		t.Error("no keyframe request to the new publisher")
	}
	if err := m.Switch("l", "nobody"); err != ErrNoPublisher {
		t.Errorf("switch to unknown: %v", err)
	}
}
