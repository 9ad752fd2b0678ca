package verto

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/verto/vertotest"
)

func BenchmarkDecodeFrame(b *testing.B) {
	frame := []byte(`{"jsonrpc":"2.0","id":"5b0c9e2a-6f57-4a3b-9d4e-1f2a3b4c5d6e","method":"verto.info","params":{"sessid":"s","dtmf":"1","dialogParams":{"callID":"c","destination_number":"echo","audio":true,"video":false,"useStereo":false,"userVariables":{}}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip measures request/reply over a real loopback WebSocket (verto.ping and a
// full invite + bye).
func BenchmarkRoundTrip(b *testing.B) {
	h := &testHandler{calls: make(chan *inboundCall, 1)}
	srv, err := New(Config{RequestRate: 1e9, RequestBurst: 1 << 30, InviteRate: 1e9, InviteBurst: 1 << 30},
		testAuth{"alice": "secret"}, h, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()
	ctx := context.Background()
	c, err := vertotest.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http"), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.AutoAck = false
	if _, err := c.LoginSW(ctx, "alice", "secret"); err != nil {
		b.Fatal(err)
	}
	b.Run("ping", func(b *testing.B) {
		for b.Loop() {
			if m, err := c.Call(ctx, "verto.ping", nil); err != nil || m.Code() != 0 {
				b.Fatal(err, m)
			}
		}
	})
	b.Run("invite-bye", func(b *testing.B) {
		for b.Loop() {
			id := uuid.NewString()
			if m, err := c.Invite(ctx, id, "ring", offerSDP); err != nil || m.Code() != 0 {
				b.Fatal(err, m)
			}
			<-h.calls
			if m, err := c.Bye(ctx, id, ""); err != nil || m.Code() != 0 {
				b.Fatal(err, m)
			}
		}
	})
}
