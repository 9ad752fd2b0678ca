package embedded_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// Control-API tests with Go plain-RTP peers (no browser needed): every request
// goes through the real WebSocket API into the core and the embedded backend.

func sdpOf(t testing.TB, d map[string]any, key string) (string, string) {
	t.Helper()
	desc, _ := d[key].(map[string]any)
	sdp, _ := desc["sdp"].(string)
	typ, _ := desc["sdp_type"].(string)
	if sdp == "" {
		t.Fatalf("reply has no %s.sdp: %v", key, d)
	}
	return sdp, typ
}

// checkTone asserts the peer heard freq (not other) in the last part of what it got.
func checkTone(t testing.TB, who string, pcm []int16, n int, freq, other float64) {
	t.Helper()
	if n < 40 || len(pcm) < 8000 {
		t.Fatalf("%s got %d packets (%d samples)", who, n, len(pcm))
	}
	f, ratio := audiotest.Dominant(pcm[len(pcm)/2:], 8000, freq, other)
	rms := audiotest.RMS(pcm[len(pcm)/2:])
	t.Logf("%s: %d packets, dominant %.0f Hz (ratio %.1f), rms %.0f", who, n, f, ratio, rms)
	if f != freq || ratio < 10 || rms < 1000 {
		t.Errorf("%s hears %.0f Hz (ratio %.1f, rms %.0f), want %.0f Hz", who, f, ratio, rms, freq)
	}
}

// TestEchoRTP: a plain-RTP caller starts an echo session through the API and
// hears its tone back; use_audio mutes it; record writes the tone to a WAV;
// DTMF both ways; stop releases everything.
func TestEchoRTP(t *testing.T) {
	e := newEnv(t, nil)
	c := dialAPI(t, e, "alice")
	peer := newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := r["session_id"].(string)
	ans, typ := sdpOf(t, r, "answer")
	if typ != "rtp" {
		t.Errorf("answer sdp_type %q, want rtp", typ)
	}
	peer.UseSDP(ans)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go peer.SendToneFor(ctx, 0, "pcmu", 1000, 30*time.Second)

	pcm, n := peer.WaitHeard(16000, 10*time.Second)
	checkTone(t, "echo caller", pcm, n, 1000, 600)

	// use_audio false: nothing comes back; true: the tone again.
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "use_audio": false}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // what was in flight
	peer.Reset()
	time.Sleep(time.Second) // the subject: a muted second
	pcm, n = peer.Heard()
	if rms := audiotest.RMS(pcm); n > 5 && rms > 100 {
		t.Errorf("muted echo still returns audio: %d packets, rms %.0f", n, rms)
	}
	t.Logf("muted: %d packets, rms %.0f", n, audiotest.RMS(pcm))
	if _, err := c.media("session/update", map[string]any{"session_id": id, "update_type": "media", "use_audio": true}); err != nil {
		t.Fatal(err)
	}
	peer.Reset()
	pcm, n = peer.WaitHeard(12000, 10*time.Second)
	checkTone(t, "unmuted echo caller", pcm, n, 1000, 600)

	// record: the reply and an info event name the files; the caller's file holds the tone.
	r, err = c.media("session/update", map[string]any{"session_id": id, "type": "media", "record": true})
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := r["record_paths"].([]any)
	if len(paths) == 0 {
		t.Fatalf("record reply %v has no record_paths", r)
	}
	info := c.waitEvent("info", id)
	if ip, _ := info.Body["info"].(map[string]any); ip == nil || ip["record_paths"] == nil {
		t.Errorf("info event %v has no record_paths", info.Body)
	}
	time.Sleep(1500 * time.Millisecond) // the subject: 1.5 s recorded
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "record": false}); err != nil {
		t.Fatal(err)
	}
	p := paths[0].(string)
	if filepath.Dir(p) != e.recDir {
		t.Errorf("recording %s is not in the record dir %s", p, e.recDir)
	}
	samples, rate, err := audiotest.ReadWAV(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < rate {
		t.Fatalf("recording %s: %d samples at %d Hz", p, len(samples), rate)
	}
	f, ratio := audiotest.Dominant(samples, float64(rate), 1000, 600)
	t.Logf("recording %s: %.1f s, %.0f Hz ratio %.1f", filepath.Base(p), float64(len(samples))/float64(rate), f, ratio)
	if f != 1000 || ratio < 10 {
		t.Errorf("recording holds %.0f Hz (ratio %.1f), want 1000", f, ratio)
	}

	// DTMF from the caller: media/session/info {info: {dtmf, side}}.
	peer.SendDigit('7', 101, 8000)
	c.Event(nkclient.Selector{Type: "info", ObjID: id}, func(body map[string]any) bool {
		inf, _ := body["info"].(map[string]any)
		return inf["dtmf"] == "7" && inf["side"] == "caller"
	})

	time.Sleep(400 * time.Millisecond) // let the echoed '7' end before sending more digits
	// DTMF toward the caller through the capability the SIP/Verto front ends use.
	m, ok := e.be.Media(id)
	if !ok || m.SessionID() != id || m.CallerKind() != media.KindRTP || m.Type() != "echo" {
		t.Fatalf("Media(%s) = %v, %v", id, m, ok)
	}
	d, err := signaling.MediaAs[signaling.DTMFSender](e.core, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signaling.MediaAs[signaling.DTMFSender](e.core, "no-such-session"); codeOf2(err) != signaling.CodeSessionNotFound {
		t.Fatalf("MediaAs of an unknown session: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := d.SendDTMF(dctx, signaling.SideCaller, "42#", 80); err != nil {
		t.Fatal(err)
	}
	dcancel()
	peers.WaitFor(t, 2*time.Second, "digits at the caller", func() bool { return peer.Digits() == "742#" }) // its own 7 echoed, then 42#
	t.Logf("caller received digits %q", peer.Digits())

	// stop: the stop event, and nothing left in the engine.
	if _, err := c.media("session/stop", map[string]any{"session_id": id}); err != nil {
		t.Fatal(err)
	}
	st := c.waitEvent("stop", id)
	if code, _ := st.Body["code"].(float64); code != signaling.CodeUserStop {
		t.Errorf("stop event %v, want code 1013", st.Body)
	}
	e.waitIdle("after stop")
	if _, ok := e.be.Media(id); ok {
		t.Error("Media still found after stop")
	}
}

// TestProxyRTPToRTP: an RTP caller and an RTP far side bridged by a proxy
// session (the far answer set with set_answer), each hearing the other.
func TestProxyRTPToRTP(t *testing.T) {
	e := newEnv(t, nil)
	c := dialAPI(t, e, "alice")
	caller, far := newRTPPeer(t), newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
		"offer": map[string]any{"sdp": caller.SDP(""), "sdp_type": "rtp", "caller_id": "1001", "caller_name": "Alice", "record": true}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := r["session_id"].(string)
	farOffer, typ := sdpOf(t, r, "offer")
	if off, _ := r["offer"].(map[string]any); typ != "rtp" || off["caller_id"] != "1001" || off["caller_name"] != "Alice" {
		t.Errorf("far offer %v: want sdp_type rtp with the caller's id and name", off)
	}
	// Before the answer: update is refused (2015).
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "use_audio": false}); codeOf(err) != signaling.CodeAnswerNotSet {
		t.Errorf("update before answer: %v, want 2015", err)
	}
	// A WebRTC answer to an RTP offer is refused clearly, and the session survives.
	if _, err := c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": far.SDP(""), "sdp_type": "webrtc"}}); codeOf(err) != signaling.CodeInvalidParameters || !strings.Contains(err.Error(), "sdp_type") {
		t.Errorf("answer of the wrong kind: %v, want 1048 about sdp_type", err)
	}
	far.UseSDP(farOffer)
	// No sdp_type in the answer: the kind of the far offer (rtp) is assumed.
	r, err = c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": far.SDP("")}})
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := sdpOf(t, r, "answer")
	caller.UseSDP(ans)
	if ev := c.waitEvent("answer", id); ev.Body["answer"] == nil {
		t.Errorf("answer event %v", ev.Body)
	}
	if _, err := c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": far.SDP(""), "sdp_type": "rtp"}}); codeOf(err) != signaling.CodeAnswerAlreadySet {
		t.Errorf("second set_answer: %v, want 2016", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go caller.SendToneFor(ctx, 0, "pcmu", 1000, 10*time.Second)
	go far.SendToneFor(ctx, 0, "pcmu", 600, 10*time.Second)
	far.WaitHeard(12000, 10*time.Second)
	caller.WaitHeard(12000, 10*time.Second)
	pcm, n := far.Heard()
	checkTone(t, "far side", pcm, n, 1000, 600)
	pcm, n = caller.Heard()
	checkTone(t, "caller", pcm, n, 600, 1000)

	// record: true in the offer recorded each side from the answer on.
	cancel()
	m, _ := e.be.Media(id)
	paths := m.Session().RecordPaths()
	if len(paths) != 2 {
		t.Fatalf("record paths %v, want caller and far", paths)
	}
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "record": false}); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		want, other := 1000.0, 600.0 // what the side sent
		if strings.Contains(filepath.Base(p), "-far-") {
			want, other = 600, 1000
		}
		samples, rate, err := audiotest.ReadWAV(p)
		if err != nil || filepath.Dir(p) != e.recDir || !strings.HasPrefix(filepath.Base(p), id) {
			t.Fatalf("recording %s: %v", p, err)
		}
		f, ratio := audiotest.Dominant(samples, float64(rate), want, other)
		t.Logf("recording %s: %.1f s, %.0f Hz ratio %.1f", filepath.Base(p), float64(len(samples))/float64(rate), f, ratio)
		if f != want || ratio < 10 || len(samples) < rate {
			t.Errorf("recording %s holds %.0f Hz (ratio %.1f), want %.0f", p, f, ratio, want)
		}
	}

	// The far side puts the call on hold by re-INVITE (as the SIP glue would apply it).
	if m.FarKind() != media.KindRTP || m.Held() {
		t.Fatalf("far kind %q held %v", m.FarKind(), m.Held())
	}
	sdp, err := m.ReofferRTP(signaling.SideFar, far.SDP("sendonly"))
	if err != nil || !m.Held() || !strings.Contains(sdp, "recvonly") {
		t.Errorf("hold re-offer: held %v err %v answer:\n%s", m.Held(), err, sdp)
	}
	if _, err := m.ReofferRTP(signaling.SideFar, far.SDP("sendrecv")); err != nil || m.Held() {
		t.Errorf("resume re-offer: held %v err %v", m.Held(), err)
	}
	if _, err := m.ReofferRTP(signaling.SideFar, "garbage"); codeOf2(err) != signaling.CodeInvalidParameters {
		t.Errorf("bad re-offer: %v, want 1048", err)
	}
	_ = c.C.Close()
	e.waitIdle("after disconnect")
}

func codeOf2(err error) int {
	if se, ok := err.(*signaling.Error); ok {
		return se.Code
	}
	return 0
}

// TestMediaTimeoutAndHold: a session whose peer sends nothing stops with 1005
// and a clear reason, but not while it is on hold.
func TestMediaTimeoutAndHold(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.MediaTimeout = time.Second })
	c := dialAPI(t, e, "alice")
	peer := newRTPPeer(t)
	start := func() string {
		r, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
		if err != nil {
			t.Fatal(err)
		}
		return r["session_id"].(string)
	}
	id := start()
	t0 := time.Now()
	ev := c.waitEvent("stop", id)
	code, _ := ev.Body["code"].(float64)
	reason, _ := ev.Body["reason"].(string)
	t.Logf("stopped after %v: %v %q", time.Since(t0).Round(100*time.Millisecond), code, reason)
	if code != signaling.CodeTimeout || !strings.Contains(reason, "Media timeout") || !strings.Contains(reason, "no RTP") {
		t.Errorf("stop %v %q, want 1005 Media timeout: no RTP ...", code, reason)
	}
	e.waitIdle("after media timeout")

	id = start()
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "hold": true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the subject: held, silent past the media timeout
	for _, ev := range c.Pending() {
		if ev.Type == "stop" && ev.ObjID == id {
			t.Errorf("held session stopped: %s", ev.Body)
		}
	}
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "hold": false}); err != nil {
		t.Fatal(err)
	}
	ev = c.waitEvent("stop", id)
	if code, _ := ev.Body["code"].(float64); code != signaling.CodeTimeout {
		t.Errorf("resumed session stop %v, want 1005", ev.Body)
	}
	e.waitIdle("after resumed timeout")
}

// TestBadInputThroughAPI: bad offers and requests get clear errors while a
// live echo session keeps echoing; nothing is left behind.
func TestBadInputThroughAPI(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.RecordDir = "" })
	c := dialAPI(t, e, "alice")
	peer := newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	live, _ := r["session_id"].(string)
	ans, _ := sdpOf(t, r, "answer")
	peer.UseSDP(ans)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go peer.SendToneFor(ctx, 0, "pcmu", 1000, 60*time.Second)

	var huge strings.Builder
	huge.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	for i := 0; i < 10000; i++ {
		huge.WriteString("a=x-filler:0123456789\r\n")
	}
	videoOnly := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
	webrtcNoAudio := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\na=setup:actpass\r\na=sctp-port:5000\r\n"
	badFP := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 ZZ:not:hex\r\na=setup:actpass\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
	cases := []struct {
		name string
		data map[string]any
		code int
		text string
	}{
		{"no offer", map[string]any{"type": "echo"}, signaling.CodeMissingOffer, "offer"},
		{"empty sdp", map[string]any{"type": "echo", "offer": map[string]any{"sdp": ""}}, signaling.CodeMissingOffer, "offer"},
		{"garbage", map[string]any{"type": "echo", "offer": map[string]any{"sdp": "hello\x00world", "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "Invalid offer"},
		{"rtp no audio", map[string]any{"type": "echo", "offer": map[string]any{"sdp": videoOnly, "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "no audio"},
		{"webrtc no audio", map[string]any{"type": "proxy", "offer": map[string]any{"sdp": webrtcNoAudio}}, signaling.CodeInvalidParameters, "Invalid offer"},
		{"bad fingerprint", map[string]any{"type": "echo", "offer": map[string]any{"sdp": badFP}}, signaling.CodeInvalidParameters, "Invalid offer"},
		{"absurd port", map[string]any{"type": "echo", "offer": map[string]any{"sdp": strings.Replace(peer.SDP(""), fmt.Sprintf("m=audio %d", peer.Port()), "m=audio 99999", 1), "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "Invalid offer"},
		{"10k lines", map[string]any{"type": "echo", "offer": map[string]any{"sdp": huge.String(), "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "Invalid offer"},
		{"no common codec", map[string]any{"type": "echo", "offer": map[string]any{"sdp": strings.NewReplacer(" 0 101", " 18", "a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000").Replace(peer.SDP("")), "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "codec"},
		{"bad sdp_type", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "sip"}}, signaling.CodeInvalidParameters, "sdp_type"},
		{"bad proxy_type", map[string]any{"type": "proxy", "proxy_type": "carrier-pigeon", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "proxy_type"},
		{"proxy_type not a string", map[string]any{"type": "proxy", "proxy_type": 7, "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}}, signaling.CodeInvalidParameters, "proxy_type"},
		{"answer given", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}, "answer": map[string]any{"sdp": peer.SDP("")}}, signaling.CodeInvalidParameters, "answer"},
		{"record without record dir", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp", "record": true}}, signaling.CodeNotImplemented, "record_dir"},
		{"bad use_audio", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp", "use_audio": "yes"}}, signaling.CodeInvalidParameters, "use_audio"},
	}
	for _, tc := range cases {
		_, err := c.media("session/start", tc.data)
		t.Logf("%s: %v", tc.name, err)
		if codeOf(err) != tc.code || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: got %v, want code %d mentioning %q", tc.name, err, tc.code, tc.text)
		}
	}
	// Bad updates on the live session.
	for _, tc := range []struct {
		data map[string]any
		code int
	}{
		{map[string]any{"type": "media", "record": true}, signaling.CodeNotImplemented}, // no record dir
		{map[string]any{"type": "media", "bitrate": -5}, signaling.CodeInvalidParameters},
		{map[string]any{"type": "media", "bitrate": 1.5}, signaling.CodeInvalidParameters},
		{map[string]any{"type": "media", "hold": "please"}, signaling.CodeInvalidParameters},
		{map[string]any{"type": "mcu_layout", "mcu_layout": "2x2"}, signaling.CodeInvalidOperation}, // not an mcu session
		{map[string]any{"type": "no_such_update"}, signaling.CodeNotImplemented},
	} {
		tc.data["session_id"] = live
		if _, err := c.media("session/update", tc.data); codeOf(err) != tc.code {
			t.Errorf("update %v: %v, want %d", tc.data, err, tc.code)
		}
	}
	if _, err := c.media("session/set_answer", map[string]any{"session_id": live, "answer": map[string]any{"sdp": peer.SDP("")}}); codeOf(err) != signaling.CodeAnswerAlreadySet {
		t.Errorf("set_answer on echo: %v, want 2016", err)
	}
	if _, err := c.media("session/set_candidate", map[string]any{"session_id": live, "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}); codeOf(err) != signaling.CodeInvalidOperation {
		t.Errorf("candidate on an RTP leg: %v, want 1045", err)
	}
	// The live session still echoes, and is the only one.
	peer.Reset()
	pcm, n := peer.WaitHeard(12000, 10*time.Second)
	checkTone(t, "live echo after bad input", pcm, n, 1000, 600)
	if got := e.eng.Sessions(); got != 1 {
		t.Errorf("engine has %d sessions, want only the live one", got)
	}
	cancel()
	_ = c.C.Close()
	e.waitIdle("after disconnect")
	if st := e.eng.Stats(); st.RTPPortsInUse != 0 {
		t.Errorf("RTP ports still in use: %+v", st)
	}
}

// TestDisconnectReleases: sessions of every kind die with their API
// connection (1012) and release their ports; engine shutdown stops the rest
// with a clear reason.
func TestDisconnectReleases(t *testing.T) {
	e := newEnv(t, nil)
	c := dialAPI(t, e, "alice")
	watcher := dialAPI(t, e, "watcher")
	if _, err := watcher.send("core", "event", "subscribe", map[string]any{"class": "media", "subclass": "session", "type": "stop"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 4; i++ {
		p := newRTPPeer(t)
		data := map[string]any{"type": "echo", "offer": map[string]any{"sdp": p.SDP(""), "sdp_type": "rtp"}}
		if i%2 == 1 {
			data = map[string]any{"type": "proxy", "proxy_type": "rtp", "offer": map[string]any{"sdp": p.SDP(""), "sdp_type": "rtp"}}
		}
		r, err := c.media("session/start", data)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r["session_id"].(string))
	}
	if e.eng.Sessions() != 4 || e.be.Sessions() != 4 || e.eng.Stats().RTPPortsInUse != 6 {
		t.Fatalf("engine %+v, backend %d sessions", e.eng.Stats(), e.be.Sessions())
	}
	_ = c.C.Close()
	for _, id := range ids {
		ev := watcher.waitEvent("stop", id)
		if code, _ := ev.Body["code"].(float64); code != signaling.CodeRegisteredDown {
			t.Errorf("session %s stop %v, want 1012", id, ev.Body)
		}
	}
	e.waitIdle("after disconnect")
	if st := e.eng.Stats(); st.RTPPortsInUse != 0 {
		t.Errorf("ports in use after disconnect: %+v", st)
	}

	// Engine shutdown: a live session stops with 1061 "Media engine stopped".
	c2 := dialAPI(t, e, "bob")
	p := newRTPPeer(t)
	r, err := c2.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": p.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	_ = e.eng.Close()
	ev := c2.waitEvent("stop", id)
	if code, _ := ev.Body["code"].(float64); code != signaling.CodeSessionStop || ev.Body["reason"] != "Media engine stopped" {
		t.Errorf("stop on engine shutdown: %v", ev.Body)
	}
	e.waitIdle("after engine close")
	if _, err := c2.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": p.SDP(""), "sdp_type": "rtp"}}); codeOf(err) != signaling.CodeNoMediaserver {
		t.Errorf("start on a closed engine: %v, want 2001", err)
	}
}

// TestHoldByReofferNoTimeout: a proxy call put on hold by a SIP-style re-offer
// (sendonly) survives silence longer than the media timeout; once resumed,
// silence stops it with 1005.
func TestHoldByReofferNoTimeout(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.MediaTimeout = time.Second })
	c := dialAPI(t, e, "alice")
	caller, far := newRTPPeer(t), newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
		"offer": map[string]any{"sdp": caller.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	farOffer, _ := sdpOf(t, r, "offer")
	far.UseSDP(farOffer)
	r, err = c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": far.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := sdpOf(t, r, "answer")
	caller.UseSDP(ans)
	m, ok := e.be.Media(id)
	if !ok {
		t.Fatal("no media")
	}
	if _, err := m.ReofferRTP(signaling.SideFar, far.SDP("sendonly")); err != nil || !m.Held() {
		t.Fatalf("hold: %v held %v", err, m.Held())
	}
	time.Sleep(2500 * time.Millisecond) // the subject: nobody sends anything, past the media timeout
	select {
	case <-m.Done():
		t.Fatal("held call stopped by the media timeout")
	default:
	}
	if _, err := m.ReofferRTP(signaling.SideFar, far.SDP("sendrecv")); err != nil || m.Held() {
		t.Fatalf("resume: %v held %v", err, m.Held())
	}
	ev := c.waitEvent("stop", id)
	if code, _ := ev.Body["code"].(float64); code != signaling.CodeTimeout {
		t.Errorf("resumed silent call stop %v, want 1005", ev.Body)
	}
	t.Logf("stop after resume: %v", ev.Body)
	e.waitIdle("after timeout")
}
