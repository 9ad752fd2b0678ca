package vertogw

import (
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
	"github.com/nkbridge/nkbridge/verto/vertotest"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// pionOffer makes a loopback-only WebRTC audio offer (complete, with candidates).
func pionOffer(t *testing.T) string {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ICE gathering timeout")
	}
	return pc.LocalDescription().SDP
}

// TestEchoDetachGraceExpires: an echo call whose page never comes back ends when the detach
// grace runs out; meanwhile its session waits with the caller's leg detached.
func TestEchoDetachGraceExpires(t *testing.T) {
	e := newEnv(t, envOpts{verto: verto.Config{DetachGrace: time.Second}})
	ctx := testCtx(t, 20*time.Second)
	c := e.dial("alice")
	id := uuid.NewString()
	if m, err := c.Invite(ctx, id, "echo", pionOffer(t)); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	if ans := next(t, c, "verto.answer"); ans.Str("sdp") == "" {
		t.Fatalf("answer %+v", ans.Params)
	}
	if e.emb.Sessions() != 1 {
		t.Fatalf("engine sessions %d", e.emb.Sessions())
	}
	c.Drop()
	peers.WaitFor(t, 5*time.Second, "the leg detached", func() bool {
		sid := e.core.ListSessions()
		if len(sid) != 1 {
			return false
		}
		m, err := e.core.SessionMedia(sid[0])
		if err != nil {
			return false
		}
		d, ok := m.(interface{ Detached(signaling.Side) bool })
		return ok && d.Detached(signaling.SideCaller)
	})
	if e.gw.Calls() != 1 || e.emb.Sessions() != 1 {
		t.Fatalf("the detached call is gone too early (%d calls, %d engine sessions)", e.gw.Calls(), e.emb.Sessions())
	}
	e.idle() // after the 1 s grace: RECOVERY_ON_TIMER_EXPIRE, the session released

	// The same user comes back with the same sessid after the grace: nothing to re-attach.
	c2, err := vertotest.Dial(ctx, e.vertoURL(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SessID = c.SessID
	if m, err := c2.LoginSW(ctx, "alice@nkbridge", testPassword); err != nil || m.Code() != 0 {
		t.Fatalf("login: %v %+v", err, m)
	}
	if ready := next(t, c2, "verto.clientReady"); len(ready.Params["reattached_sessions"].([]any)) != 0 {
		t.Fatalf("clientReady %+v", ready.Params)
	}
}
