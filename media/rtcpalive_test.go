package media

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// A plain-RTP peer with silence suppression stops sending RTP but keeps sending RTCP receiver
// reports (to the RTCP port, as SIP phones do): the media timeout does not stop the session.
// Once the reports stop too, it does. Garbage and RTCP BYE do not count as liveness.
func TestRTCPKeepsPlainRTPLegAlive(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 600 * time.Millisecond })
	p := newRTPPeer(t)
	stopped := make(chan StopInfo, 1)
	s := startRTPEcho(t, e, p, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p.sendTone(ctx, plainrtp.PCMU, 1000, 400*time.Millisecond) // talk, then silence
	rtcpTo := &net.UDPAddr{IP: p.Remote().Addr().AsSlice(), Port: int(p.Remote().Port()) + 1}
	send := func(pkts ...rtcp.Packet) {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Conn().WriteToUDP(b, rtcpTo); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond { // > 4 media timeouts of RTP silence
		send(&rtcp.ReceiverReport{SSRC: 0x1234}, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 0x1234,
			Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "phone"}}}}})
		select {
		case i := <-stopped:
			t.Fatalf("session with RTCP but no RTP stopped after %s: %+v", time.Since(start), i)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if st := s.Stats()[SideCaller]; st.PacketsIn < 10 {
		t.Fatalf("peer's RTP not received: %+v", st)
	}
	// Now only a BYE and garbage: not liveness, the timeout fires.
	send(&rtcp.Goodbye{Sources: []uint32{0x1234}})
	if _, err := p.Conn().WriteToUDP([]byte{0x80, 0xc9, 0xff}, rtcpTo); err != nil {
		t.Fatal(err)
	}
	silent := time.Now()
	select {
	case i := <-stopped:
		if i.Cause != CauseMediaTimeout {
			t.Fatalf("stop %+v", i)
		}
		t.Logf("stopped %s after the last report: %s", time.Since(silent), i.Reason)
	case <-time.After(5 * time.Second):
		t.Fatal("no media timeout once RTCP stopped")
	}
}
