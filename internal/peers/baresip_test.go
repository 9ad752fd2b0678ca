package peers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

func TestBaresipControl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := peers.StartBaresip(t, peers.BaresipOptions{User: "carol"})
	out, err := b.Command(ctx, "reginfo", "")
	if err != nil {
		t.Fatalf("reginfo: %v", err)
	}
	if !strings.Contains(out, "sip:carol@127.0.0.1") {
		t.Errorf("reginfo does not list the account: %q", out)
	}
	if _, err := b.Command(ctx, "no-such-command", ""); err == nil {
		t.Errorf("unknown command: no error")
	}
	if got, want := b.URI(), "sip:carol@127.0.0.1:"; !strings.HasPrefix(got, want) {
		t.Errorf("URI %q", got)
	}
}

// TestBaresipCallsBaresip has two baresip instances call each other directly on loopback,
// each sending its own tone, and checks from the recordings that each heard the other.
func TestBaresipCallsBaresip(t *testing.T) {
	for _, codec := range []string{"pcmu", "opus"} {
		t.Run(codec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", Codec: codec, ToneHz: 1000})
			bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: codec, ToneHz: 600})

			if err := alice.Dial(ctx, bob.URI()); err != nil {
				t.Fatal(err)
			}
			for _, b := range []*peers.Baresip{alice, bob} {
				if _, _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
					t.Fatal(err)
				}
			}
			for _, b := range []*peers.Baresip{alice, bob} { // talk
				if err := b.WaitHeard(ctx, 1500*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			if err := alice.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			for _, b := range []*peers.Baresip{alice, bob} {
				if _, _, err := b.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Millisecond) // let sndfile close the files

			for _, c := range []struct {
				who       *peers.Baresip
				name      string
				want, not float64
			}{{alice, "alice", 600, 1000}, {bob, "bob", 1000, 600}} {
				heard, rate, err := c.who.Heard()
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if rate != c.who.Rate() {
					t.Errorf("%s: recording at %d Hz, want %d", c.name, rate, c.who.Rate())
				}
				secs := float64(len(heard)) / float64(rate)
				f, ratio := audiotest.Dominant(heard, float64(rate), c.want, c.not)
				rms := audiotest.RMS(heard)
				t.Logf("%s heard %.2f s: dominant %v Hz (ratio %.0f), rms %.0f", c.name, secs, f, ratio, rms)
				if secs < 1 {
					t.Errorf("%s: only %.2f s recorded", c.name, secs)
				}
				if f != c.want || ratio < 100 {
					t.Errorf("%s heard %v Hz (ratio %.1f), want the other party's %v Hz", c.name, f, ratio, c.want)
				}
				if rms < 1000 {
					t.Errorf("%s: recording too quiet (rms %.0f)", c.name, rms)
				}
			}
		})
	}
}
