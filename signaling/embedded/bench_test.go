package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// BenchmarkStartStop measures the adapter's session life cycle on a real
// engine (no network traffic): start (SDP parse, RTP port pair, answer or far
// offer), set_answer for proxies, then stop until the ports are released.
//
//	go test -run XXX -bench StartStop ./signaling/embedded/
func BenchmarkStartStop(b *testing.B) {
	rtpOffer := func(port int) signaling.Desc {
		return signaling.Desc{"sdp_type": "rtp", "sdp": fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
			"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n", port)}
	}
	for _, tc := range []struct {
		name string
		typ  string
		opts map[string]any
	}{
		{"echo-rtp", "echo", nil},
		{"proxy-rtp-rtp", "proxy", map[string]any{"proxy_type": "rtp"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			base := 30000 + 2*rand.IntN(10000)
			eng, err := media.New(media.Config{BindIP: loopback, RTPPortMin: base, RTPPortMax: base + 400, Quarantine: -1})
			if err != nil {
				b.Fatal(err)
			}
			be := embedded.New(eng, nil)
			defer func() { be.Close(); _ = eng.Close() }()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m, res, err := be.StartMedia(ctx, signaling.MediaRequest{SessionID: fmt.Sprint("s", i), Type: tc.typ,
					Offer: rtpOffer(4000), Options: tc.opts, Reporter: nopReporter{}})
				if err != nil {
					b.Fatal(err)
				}
				if res.Offer != nil {
					if _, err := m.SetAnswer(ctx, rtpOffer(4002)); err != nil {
						b.Fatal(err)
					}
				}
				m.Stop(nil)
				for be.Sessions() != 0 {
					time.Sleep(10 * time.Microsecond) // benchmark: poll interval for the stop
				}
			}
		})
	}
}
