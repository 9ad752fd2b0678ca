package wsapi_test

import (
	"context"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
)

// recBackend is a test Backend: it answers offers with a fixed SDP (or, for
// proxy, returns an offer for the far side) and records what it is asked.
// It stands in for the media engine, which lives in another package.
type recBackend struct {
	mu      sync.Mutex
	started []signaling.MediaRequest
	updates []string
	stops   []*signaling.Error
	media   []*recMedia
}

type recMedia struct {
	b   *recBackend
	req signaling.MediaRequest
}

func (b *recBackend) StartMedia(_ context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	if len(req.Offer) == 0 && req.Type != signaling.TypeListen {
		return nil, signaling.MediaResult{}, signaling.Errorf(signaling.CodeMissingOffer, "Missing offer")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = append(b.started, req)
	m := &recMedia{b: b, req: req}
	b.media = append(b.media, m)
	if req.Type == signaling.TypeProxy {
		return m, signaling.MediaResult{Offer: signaling.Desc{"sdp": "v=0 proxy-offer"}}, nil
	}
	return m, signaling.MediaResult{Answer: signaling.Desc{"sdp": "v=0 " + req.Type + "-answer"}}, nil
}

func (m *recMedia) SetAnswer(_ context.Context, a signaling.Desc) (signaling.Desc, error) {
	return signaling.Desc{"sdp": "v=0 answer-for-caller", "far": a.SDP()}, nil
}

func (m *recMedia) Update(_ context.Context, kind string, opts map[string]any) (map[string]any, error) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.updates = append(m.b.updates, kind)
	if kind == "bad" {
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Bad update")
	}
	return nil, nil
}

func (m *recMedia) Candidate(context.Context, signaling.Candidate) error { return nil }

func (m *recMedia) Stop(reason *signaling.Error) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.stops = append(m.b.stops, reason)
}

func (b *recBackend) snapshot() (started int, updates []string, stops []*signaling.Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.started), append([]string(nil), b.updates...), append([]*signaling.Error(nil), b.stops...)
}

func (b *recBackend) lastMedia() *recMedia {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.media[len(b.media)-1]
}
