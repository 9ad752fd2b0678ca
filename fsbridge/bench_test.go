package fsbridge_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
)

// rtpOffer is a plain-RTP client offer (sdp_type rtp) for a port nobody listens on.
func rtpOffer(port int) signaling.Desc {
	d := plainrtp.Offer(netip.MustParseAddr("127.0.0.1"), port, []plainrtp.Codec{plainrtp.PCMU, plainrtp.TelEvent8}, 1)
	return signaling.Desc{"sdp": d.String(), "sdp_type": "rtp"}
}

// A plain-RTP client (sdp_type rtp) works too: its answer is plain RTP.
func TestPlainRTPClient(t *testing.T) {
	e := newEnv(t, envOpts{})
	res, err := e.core.StartSession(context.Background(), signaling.SessionRequest{Type: "echo", Backend: "freeswitch", Offer: rtpOffer(40002)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Answer.SDPType() != "rtp" || !strings.Contains(res.Answer.SDP(), "RTP/AVP") {
		t.Fatalf("answer for a plain-RTP client: %v", res.Answer)
	}
	ch := e.channelOf(res.SessionID)
	e.waitCommand("api uuid_transfer " + ch.UUID + " echo inline")
	if err := e.core.StopSession(res.SessionID, nil); err != nil {
		t.Fatal(err)
	}
	e.noLeaks()
}

// BenchmarkStartStopPark measures one park session's whole life on FreeSWITCH (the fake):
// media proxy session, SIP INVITE/200/ACK, channel events, uuid_transfer, then
// uuid_kill and BYE.
//
// The fake's sessions-per-second limit is off, as on a FreeSWITCH whose switch.conf.xml
// raised it: stock FreeSWITCH would refuse all but 29 calls a second.
func BenchmarkStartStopPark(b *testing.B) {
	e := newEnv(b, envOpts{fake: fakefs.Options{SessionsPerSecond: -1}})
	ctx := context.Background()
	offer := rtpOffer(40004)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := e.core.StartSession(ctx, signaling.SessionRequest{Type: "park", Backend: "freeswitch", Offer: offer})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.core.StopSession(res.SessionID, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	e.noLeaks()
}
