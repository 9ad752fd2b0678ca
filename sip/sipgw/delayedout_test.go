package sipgw_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip"
)

// TestBaresipTrunkDelayedOffer: alice's baresip calls a SIP URL through a trunk with
// delayed_offer, whose far end is carol's baresip. nkbridge's INVITE to carol has no SDP,
// carol offers in her 200, nkbridge answers in the ACK from the media's prepared offer and
// hands carol's offer to the media as the far answer: each phone hears the other's tone.
func TestBaresipTrunkDelayedOffer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	carol := peers.StartBaresip(t, peers.BaresipOptions{User: "carol", ToneHz: 600})
	carolAddr := fmt.Sprintf("127.0.0.1:%d", carol.SIPPort())
	e := newEnv(t, envOpts{sip: func(c *sip.Config) {
		c.Trunks = []sip.Trunk{{Name: "carrier", Host: carolAddr, DelayedOffer: true}}
	}})
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	if err := alice.Dial(ctx, fmt.Sprintf("sip:sip-carol%%40%s@%s", strings.ReplaceAll(carolAddr, ":", "%3A"), e.addr)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatalf("%v\n%s", err, carol.Process().Output())
	}
	if err := carol.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// carol's SDP was an offer (in her 200), not an answer: the INVITE had none.
	offered := false
	for _, ev := range carol.Events() {
		if ev.Type == "CALL_LOCAL_SDP" {
			t.Logf("carol's local SDP: %s", ev.Param)
			offered = offered || ev.Param == "offer"
		}
	}
	if !offered {
		t.Errorf("carol did not offer: the INVITE to the delayed-offer trunk carried SDP (events %+v)", carol.Events())
	}
	adaptHeard(t, "carol (delayed-offer trunk)", carol, 1000, 600)
	adaptHeard(t, "alice", alice, 600, 1000)
	n := len(carol.Events())
	if err := alice.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := carol.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Sessions() == 0
	})
}
