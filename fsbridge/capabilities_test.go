package fsbridge_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
)

// TestCapabilitiesDTMFAndHold: a session on FreeSWITCH gets DTMF and hold through the same
// capabilities of package signaling as the embedded engine's (the path the SIP and Verto front
// ends take): digits sent toward FreeSWITCH arrive at its channel as RFC 2833, digits toward a
// plain-RTP client reach it as telephone-events, hold (Verto's, outside SDP) stops the client's
// audio toward FreeSWITCH, and the client's re-offers hold and resume.
func TestCapabilitiesDTMFAndHold(t *testing.T) {
	e := newEnv(t, envOpts{})
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	port := phone.LocalAddr().(*net.UDPAddr).Port
	offer := plainrtp.Offer(netip.MustParseAddr("127.0.0.1"), port, []plainrtp.Codec{plainrtp.PCMU, plainrtp.TelEvent8}, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.core.StartSession(ctx, signaling.SessionRequest{Type: "echo", Backend: "freeswitch",
		Offer: signaling.Desc{"sdp": offer.String(), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	sid := res.SessionID
	ch := e.channelOf(sid)
	e.waitCommand("api uuid_transfer " + ch.UUID + " echo inline")

	// DTMF toward FreeSWITCH's channel.
	d, err := signaling.MediaAs[signaling.DTMFSender](e.core, sid)
	if err != nil {
		t.Fatalf("a FreeSWITCH session has no DTMFSender: %v", err)
	}
	if err := d.SendDTMF(ctx, signaling.SideFar, "12#", 60); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "digits at FreeSWITCH", func() bool {
		if got := e.sip.Digits(ch.UUID); got != "12#" {
			return false
		}
		return true
	})

	// DTMF toward the plain-RTP client: telephone-event 5, end bit set.
	if err := d.SendDTMF(ctx, signaling.SideCaller, "5", 60); err != nil {
		t.Fatal(err)
	}
	if !receivedEvent(t, phone, 101, 5) {
		t.Fatal("the client got no telephone-event 5")
	}

	// Hold outside SDP (Verto's verto.modify): the client's audio stops reaching FreeSWITCH,
	// and flows again once resumed.
	ans, err := plainrtp.ParseSDP([]byte(res.Answer.SDP()))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSending := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() { defer close(sent); sendPCMU(sctx, phone, netip.AddrPortFrom(ans.Addr, uint16(ans.Port))) }()
	defer func() { stopSending(); <-sent }()
	in := func() int { n, _, _ := e.sip.RTPStats(ch.UUID); return n }
	grows := func(what string) {
		t.Helper()
		from := in()
		peers.WaitFor(t, 5*time.Second, what, func() bool {
			return in() >= from+25
		})
	}
	grows("the client's audio reaching FreeSWITCH")
	h, err := signaling.MediaAs[signaling.Holder](e.core, sid)
	if err != nil {
		t.Fatalf("a FreeSWITCH session has no Holder: %v", err)
	}
	if err := h.Hold(ctx, true); err != nil {
		t.Fatal(err)
	}
	held := in()            // a packet or two may still be in flight
	time.Sleep(time.Second) // the window in which nothing may arrive
	if n := in(); n > held+3 {
		t.Fatalf("FreeSWITCH received %d packets in a second while held", n-held)
	}
	if err := h.Hold(ctx, false); err != nil {
		t.Fatal(err)
	}
	grows("the client's audio reaching FreeSWITCH again after the resume")

	// Hold and resume by re-offer from the client; FreeSWITCH's side is not the client's to
	// re-offer.
	r, err := signaling.MediaAs[signaling.RTPReofferer](e.core, sid)
	if err != nil {
		t.Fatalf("a FreeSWITCH session has no RTPReofferer: %v", err)
	}
	reoffer := func(dir string) string {
		t.Helper()
		o := *offer
		o.Direction, o.Version = dir, offer.Version+1
		ans, err := r.ReofferRTP(signaling.SideCaller, o.String())
		if err != nil {
			t.Fatalf("re-offer %s: %v", dir, err)
		}
		a, err := plainrtp.ParseSDP([]byte(ans))
		if err != nil {
			t.Fatalf("re-offer %s answer %q: %v", dir, ans, err)
		}
		return a.Direction
	}
	if got := reoffer(plainrtp.SendOnly); got != plainrtp.RecvOnly {
		t.Fatalf("hold answered %s, want recvonly", got)
	}
	if got := reoffer(plainrtp.SendRecv); got != plainrtp.SendRecv {
		t.Fatalf("resume answered %s, want sendrecv", got)
	}
	if _, err := r.ReofferRTP(signaling.SideFar, offer.String()); signaling.AsError(err) == nil || signaling.AsError(err).Code != signaling.CodeInvalidOperation {
		t.Fatalf("re-offer of FreeSWITCH's side: %v, want 1045", err)
	}
	if _, err := r.ReofferRTP(signaling.SideCaller, "garbage"); signaling.AsError(err) == nil || signaling.AsError(err).Code != signaling.CodeInvalidParameters {
		t.Fatalf("garbage re-offer: %v, want 1048", err)
	}

	// What the backend or this session cannot do is said clearly.
	_, err = signaling.MediaAs[signaling.DTMFObserver](e.core, sid)
	if e := signaling.AsError(err); e == nil || e.Code != signaling.CodeNotImplemented || !strings.Contains(e.Text, "freeswitch backend cannot report DTMF") {
		t.Fatalf("MediaAs[DTMFObserver]: %v", err)
	}
	ra, err := signaling.MediaAs[signaling.Reattacher](e.core, sid)
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.CanReattach(signaling.SideCaller); signaling.AsError(err) == nil || signaling.AsError(err).Code != signaling.CodeInvalidOperation {
		t.Fatalf("CanReattach of a plain-RTP client: %v, want 1045", err)
	}
	if err := e.core.StopSession(sid, nil); err != nil {
		t.Fatal(err)
	}
	e.noLeaks()
}

// receivedEvent reads conn until an RFC 4733 end packet of event ev with payload type pt
// arrives (true) or 5 s pass.
func receivedEvent(t *testing.T, conn *net.UDPConn, pt uint8, ev byte) bool {
	t.Helper()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			return false
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil || p.PayloadType != pt || len(p.Payload) < 4 {
			continue
		}
		if p.Payload[0] == ev && p.Payload[1]&0x80 != 0 {
			return true
		}
	}
	return false
}

// sendPCMU sends 20 ms PCMU packets of silence from conn to to until ctx ends.
func sendPCMU(ctx context.Context, conn *net.UDPConn, to netip.AddrPort) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = 0xff
	}
	for seq := uint16(1); ; seq++ {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 77}, Payload: payload}).Marshal()
		_, _ = conn.WriteToUDPAddrPort(b, to)
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// TestCapabilitiesReattachOnFreeSWITCH: a WebRTC page in echo on FreeSWITCH loses its
// PeerConnection (a Verto page reload); the session is detached, a new page is re-attached in
// place through signaling.Reattacher, and hears its own new tone echoed by FreeSWITCH, whose
// channel never changed.
func TestCapabilitiesReattachOnFreeSWITCH(t *testing.T) {
	e := newEnv(t, envOpts{mediaTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	page := peers.NewPCMUPeer(t, "page")
	res, err := e.core.StartSession(ctx, signaling.SessionRequest{Type: "echo", Backend: "freeswitch",
		Offer: signaling.Desc{"sdp": page.Offer(), "sdp_type": "webrtc"}})
	if err != nil {
		t.Fatal(err)
	}
	page.SetAnswer(res.Answer.SDP())
	sid := res.SessionID
	ch := e.channelOf(sid)
	e.waitCommand("api uuid_transfer " + ch.UUID + " echo inline")
	hears := func(p *peers.PCMUPeer, what string, tone float64) {
		t.Helper()
		p.SendTone(ctx, tone, 1500*time.Millisecond)
		peers.WaitFor(t, 10*time.Second, what, func() bool {
			pcm, _ := p.Heard()
			if len(pcm) < 8000 {
				return false
			}
			if f, _ := audiotest.Dominant(pcm[len(pcm)-4000:], 8000, 600, 1000); f != tone {
				return false
			}
			return true
		})
	}
	hears(page, "the page hears its tone echoed by FreeSWITCH", 600)

	r, err := signaling.MediaAs[signaling.Reattacher](e.core, sid)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CanReattach(signaling.SideFar); signaling.AsError(err) == nil || signaling.AsError(err).Code != signaling.CodeInvalidOperation {
		t.Fatalf("CanReattach of FreeSWITCH's side: %v, want 1045", err)
	}
	if err := r.DeferPeerClose(signaling.SideCaller, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	page.Close()
	if err := r.Detach(signaling.SideCaller, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // past the media timeout: the detached session must stay
	if _, ok := e.core.LookupSession(sid); !ok {
		t.Fatal("the detached session stopped")
	}
	page2 := peers.NewPCMUPeer(t, "page2")
	off, err := r.ReattachOffer(ctx, signaling.SideCaller)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReattachAnswer(ctx, signaling.SideCaller, page2.Answer(off)); err != nil {
		t.Fatal(err)
	}
	hears(page2, "the new page hears its tone echoed by FreeSWITCH", 1000)
	if got := e.channelOf(sid); got.UUID != ch.UUID {
		t.Fatalf("FreeSWITCH's channel changed: %s, was %s", got.UUID, ch.UUID)
	}
	if err := e.core.StopSession(sid, nil); err != nil {
		t.Fatal(err)
	}
	e.noLeaks()
}
