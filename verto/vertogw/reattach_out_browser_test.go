package vertogw

import (
	"net"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// TestBrowserVertoIsCalledAdaptedNotKept: a plain-RTP caller calls a Verto login through the
// core's offer adapter (the client's WebRTC leg is the far side of the router's auxiliary
// session, not of the caller's session): the SW client rings and answers, but that call is not
// kept across a page reload: it ends (2130 NORMAL_CLEARING) when the page goes, the new page
// gets no verto.attach, and nothing is left.
func TestBrowserVertoIsCalledAdaptedNotKept(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	e.core.Backends().SetOfferAdapter(embedded.NewAdapter(e.emb))
	v := e.browser(vertoTone, "/page")
	v.vertoLogin("alice")

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	offer := plainrtp.Offer(addr.Addr(), int(addr.Port()), []plainrtp.Codec{plainrtp.PCMU}, 1)
	ctx := testCtx(t, 60*time.Second)
	res, err := e.core.StartSession(ctx, signaling.SessionRequest{
		Type: signaling.TypeProxy, Owner: "test",
		Offer:   signaling.Desc{"sdp": string(offer.Marshal()), "sdp_type": "rtp"},
		Options: map[string]any{"proxy_type": "rtp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	callID, err := e.core.StartCall(ctx, signaling.CallRequest{
		Type: "verto", Callee: "alice", SessionID: res.SessionID,
		Caller: signaling.CallerInfo{ID: "2000", Name: "RTP phone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	v.waitState("ringing")
	v.eval(`window.call.answer(), true`, nil)
	v.waitState("active")
	peers.WaitFor(t, 10*time.Second, "the call answered", func() bool {
		info, err := e.core.CallInfo(callID)
		return err == nil && info["state"] == "answered"
	})
	if n := e.emb.Sessions(); n != 2 { // the caller's session and the adapter's auxiliary one
		t.Fatalf("want the caller's and the auxiliary session, engine has %d", n)
	}

	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	e.idle()
	v.vertoLogin("alice")
	time.Sleep(time.Second) // a verto.attach would come right after the login
	var attached bool
	v.eval(`!!window.call`, &attached)
	if attached {
		t.Fatal("the new page was offered a call that cannot be re-attached")
	}
}
