package embedded_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

type nopReporter struct{}

func (nopReporter) Stopped(*signaling.Error)     {}
func (nopReporter) Event(string, map[string]any) {}

// FuzzStart feeds arbitrary session/start data (type, offer, proxy_type,
// media options), then an update, a candidate and an answer, to the backend
// on a real engine: every failure must be a clear *signaling.Error and every
// started session must release its media.
func FuzzStart(f *testing.F) {
	rtpOffer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	seed := func(v map[string]any) {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	seed(map[string]any{"type": "echo", "offer": map[string]any{"sdp": rtpOffer, "sdp_type": "rtp"}, "update": map[string]any{"use_audio": false, "bitrate": 32000}})
	seed(map[string]any{"type": "proxy", "proxy_type": "rtp", "offer": map[string]any{"sdp": rtpOffer, "sdp_type": "rtp"}, "answer": map[string]any{"sdp": rtpOffer, "sdp_type": "rtp"}})
	seed(map[string]any{"type": "proxy", "offer": map[string]any{"sdp": rtpOffer, "sdp_type": "rtp"}, "answer": map[string]any{"sdp": "v=0"}})
	seed(map[string]any{"type": "echo", "offer": map[string]any{"sdp": "v=0\r\nm=audio 99999 RTP/AVP 0\r\n", "sdp_type": "rtp"}})
	seed(map[string]any{"type": "echo", "offer": map[string]any{"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 XX\r\n"}})
	seed(map[string]any{"type": "mcu", "offer": map[string]any{"sdp": rtpOffer}})
	seed(map[string]any{"type": "echo", "offer": map[string]any{"sdp": rtpOffer, "sdp_type": 5, "use_video": "x"}})

	eng, err := media.New(media.Config{BindIP: loopback, RTPPortMin: 47000, RTPPortMax: 47100, Quarantine: -1, MaxSessions: 8})
	if err != nil {
		f.Fatal(err)
	}
	b := embedded.New(eng, nil)
	f.Cleanup(func() { b.Close(); _ = eng.Close() })

	check := func(t *testing.T, what string, err error) {
		if err == nil {
			return
		}
		var se *signaling.Error
		if !errors.As(err, &se) || se.Code == 0 || se.Text == "" {
			t.Fatalf("%s: error %T %v is not a clear API error", what, err, err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 70000 {
			return
		}
		var req map[string]any
		if json.Unmarshal(data, &req) != nil {
			return
		}
		typ, _ := req["type"].(string)
		offer, _ := req["offer"].(map[string]any)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, res, err := b.StartMedia(ctx, signaling.MediaRequest{SessionID: "fuzz", Type: typ, Offer: signaling.Desc(offer), Options: req, Reporter: nopReporter{}})
		check(t, "start", err)
		if err != nil {
			return
		}
		if len(res.Answer)+len(res.Offer) == 0 {
			t.Fatal("started without answer or offer")
		}
		if ans, ok := req["answer"].(map[string]any); ok {
			_, err := m.SetAnswer(ctx, signaling.Desc(ans))
			check(t, "set_answer", err)
		}
		if up, ok := req["update"].(map[string]any); ok {
			_, err := m.Update(ctx, "media", up)
			check(t, "update", err)
		}
		if c, ok := req["candidate"].(string); ok {
			check(t, "candidate", m.Candidate(ctx, signaling.Candidate{Candidate: c}))
		}
		m.Stop(nil)
		peers.WaitFor(t, 5*time.Second, "the session released by the backend and the engine", func() bool {
			return b.Sessions() == 0 && eng.Sessions() == 0
		})
	})
}
