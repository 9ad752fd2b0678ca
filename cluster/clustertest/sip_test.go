package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// sipUsersYAML makes bob a SIP account too (the API user bob's SIP devices).
const sipUsersYAML = "sip:\n  users: [{user: bob, password: " + password + "}]\n"

// trunkYAML makes 127.0.0.1 a trunk (SIPp's INVITEs need no digest).
const trunkYAML = "sip:\n  trunks: [{name: loop, networks: [\"127.0.0.1/32\"]}]\n"

// pcmuPageJS adds T.callRTP: a proxy session with a plain-RTP far side (PCMU only in the
// browser), then a call to target; resolves with the call id once the answer is set.
const pcmuPageJS = `(() => {
  T.mediaPCMU = async () => {
    await T.media();
    const cs = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) =>
      c.mimeType.toLowerCase() === "audio/pcmu" || c.mimeType === "audio/telephone-event");
    T.pc.getTransceivers()[0].setCodecPreferences(cs);
  };
  T.callRTP = async (target) => {
    const s = await T.api.send("media", "session", "start", {type: "proxy", proxy_type: "rtp", offer: {sdp: await T.offer()}});
    T.sid = s.session_id;
    const c = await T.api.send("media", "call", "start", Object.assign({session_id: s.session_id}, target));
    const ev = await T.api.waitEvent((e) => e.subclass === "session" && e.type === "answer" && e.obj_id === T.sid);
    await T.pc.setRemoteDescription({type: "answer", sdp: ev.body.answer.sdp});
    return c.call_id;
  };
  return true;
})()`

// A baresip phone registered on node 2 (bob's SIP account) is called, as the user bob, from a
// browser on node 1: the call goes out through node 2 (the node holding the registration),
// with node 1's RTP address in the SDP. The browser hears the phone's 600 Hz, the phone the
// browser's 1000 Hz; the browser's hangup closes the phone's call.
func TestCrossNodeBrowserCallsPhone(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nats := peers.StartNATS(t, peers.NATSOptions{})
	nodes := startNodes(t, nats.URL(), 2, sipUsersYAML, true)
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=pcmu/8000/1", nodes[1].SIPAddr, password)})
	waitContact(t, nats.URL(), "n2", "bob", "sip")
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	pa := openPage(ctx, t, b1, nodes[0], "alice")
	eval(ctx, t, pa, pcmuPageJS, nil)
	var callID string
	eval(ctx, t, pa, `T.mediaPCMU().then(() => T.callRTP({type: "user", user: "bob"}))`, &callID)
	var r browsertest.Heard
	eval(ctx, t, pa, `T.measure()`, &r)
	browsertest.CheckHeard(t, "alice on n1", r, 600, 1000)
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n := len(bob.Events())
	evalArg(ctx, t, pa, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, callID, nil)
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	samples, rate, err := bob.Heard()
	if err != nil || len(samples) < rate {
		t.Fatalf("baresip's recording: %d samples, %v", len(samples), err)
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), 1000, 600)
	t.Logf("bob's phone on n2 heard %.0f Hz (ratio %.1f, rms %.0f)", f, ratio, audiotest.RMS(tail))
	if f != 1000 || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Errorf("bob's phone heard %.0f Hz (ratio %.1f), want 1000 Hz", f, ratio)
	}
}

// SIPp, a trunk, sends an INVITE for bob into node 1; bob is a web user (a WebRTC PCMU peer
// with the API client) logged in on node 2 only. The call rings bob on node 2, bob answers,
// and bob hears the 1000 Hz tone SIPp streams into node 1; SIPp's BYE ends bob's call.
func TestSIPpIntoNode1ForWebUserOnNode2(t *testing.T) {
	needCluster(t)
	peers.Need(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nats := peers.StartNATS(t, peers.NATSOptions{})
	nodes := startNodes(t, nats.URL(), 2, trunkYAML, true)
	peer := peers.NewPCMUPeer(t, "bob")
	invites := make(chan *nkclient.Invite, 1)
	login(t, nodes[1], "bob", nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { invites <- inv }})
	admin := login(t, nodes[0], "admin", nkclient.Options{})
	waitUserOn(t, admin, "n1", "bob", "n2")

	type res struct {
		r   *peers.SIPpResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		r, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
			Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"), Remote: nodes[0].SIPAddr, Service: "bob", Calls: 1,
			Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
			Args: []string{"-d", "4000"}, Timeout: 40 * time.Second,
		})
		done <- res{r, err}
	}()
	var inv *nkclient.Invite
	select {
	case inv = <-invites:
	case r := <-done:
		t.Fatalf("SIPp ended before bob was rung: %+v %v", r.r, r.err)
	case <-time.After(15 * time.Second):
		t.Fatal("no invite at bob on n2")
	}
	if inv.Offer == nil || !strings.Contains(inv.Offer.SDP, "a=ice-ufrag") {
		t.Fatalf("bob's invite has no WebRTC offer: %+v", inv.Offer)
	}
	answer := peer.Answer(inv.Offer.SDP)
	if err := inv.Accept(ctx, nkclient.SDP{SDP: answer}, ""); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "bob hears SIPp", func() bool { _, n := peer.Heard(); return n > 50 })
	var r res
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("SIPp did not finish")
	}
	if r.err != nil || r.r.ExitCode != 0 || r.r.Stats.SuccessfulCalls != 1 {
		t.Fatalf("SIPp: %v exit %d, %+v\n%s", r.err, r.r.ExitCode, r.r.Stats, r.r.Errors)
	}
	select {
	case <-inv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIPp's BYE did not end bob's call on n2")
	}
	pcm, pkts := peer.Heard()
	f, ratio := audiotest.Dominant(pcm[len(pcm)/3:], 8000, 1000, 600)
	t.Logf("bob on n2 heard %d packets: %.0f Hz (ratio %.1f)", pkts, f, ratio)
	if f != 1000 || ratio < 10 {
		t.Errorf("bob heard %.0f Hz (ratio %.1f), want SIPp's 1000 Hz", f, ratio)
	}
}
