package media

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/pion/rtp"
)

// sendPCM sends 8 kHz PCM as PCMU packets, one per 20 ms, through write.
func sendPCM(ctx context.Context, pcm []int16, write func(*rtp.Packet)) {
	enc, err := codec.NewEncoder(codec.PCMU, 8000)
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 1500)
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for i := 0; i+160 <= len(pcm); i += 160 {
		n, err := enc.Encode(buf, pcm[i:i+160])
		if err != nil {
			panic(err)
		}
		write(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == 0, SequenceNumber: seq, Timestamp: ts, PayloadType: 0},
			Payload: append([]byte(nil), buf[:n]...)})
		seq++
		ts += 160
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// TestInbandDTMFProxy: a plain-RTP caller that negotiated no telephone-event sends digits as
// tones in its PCMU audio; the engine finds them, reports them (OnDTMF, from the caller) and
// sends them as RFC 4733 events to the far side, which negotiated telephone-event. The far
// side's own digits (events) are not searched for in its audio. A steady 1 kHz tone from the
// caller yields nothing.
func TestInbandDTMFProxy(t *testing.T) {
	e := newTestEngine(t, nil)
	a, b := newRTPPeer(t), newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []rune
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: a.description(plainrtp.PCMU).String()}, KindRTP,
		SessionOptions{OnDTMF: func(from Side, d rune) {
			mu.Lock()
			defer mu.Unlock()
			if from == SideCaller {
				got = append(got, d)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off, _ := plainrtp.ParseSDP([]byte(farOffer.SDP))
	ans, _ := plainrtp.Answer(off, loopback, b.Port(), []plainrtp.Codec{plainrtp.PCMU, plainrtp.TelEvent8}, nil)
	b.use(off)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := plainrtp.ParseSDP([]byte(callerAns.SDP))
	if err != nil {
		t.Fatal(err)
	}
	a.use(ad)
	sendTone(ctx, "pcmu", 1000, time.Second, a.WriteRTP)
	const digits = "159#0*D"
	sendPCM(ctx, audiotest.DTMF(digits, 8000, 80, 80, 6000), a.WriteRTP)
	peers.WaitFor(t, 5*time.Second, "digits reported and relayed", func() bool {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		return n >= len(digits) && len(b.Digits()) >= len(digits)
	})
	mu.Lock()
	if string(got) != digits {
		t.Errorf("OnDTMF got %q, want %q", string(got), digits)
	}
	mu.Unlock()
	if d := b.Digits(); d != digits {
		t.Errorf("far side got RFC 4733 digits %q, want %q", d, digits)
	}
}
