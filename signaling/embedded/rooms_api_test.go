package embedded_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// newRoomEnv is newEnv with rooms enabled: every type registered, room events on the bus.
func newRoomEnv(t testing.TB) (*env, *embedded.Rooms) {
	t.Helper()
	e := newEnv(t, nil)
	rs, err := e.be.EnableRooms(embedded.RoomsConfig{EmptyGrace: 2 * time.Second, RecordDir: e.recDir,
		OnEvent: e.core.Bus().Publish})
	if err != nil {
		t.Fatal(err)
	}
	e.core.Backends().Register(embedded.Name, e.be, append(embedded.Types(), embedded.RoomTypes()...)...)
	e.core.Backends().RegisterRooms(embedded.Name, rs, signaling.RoomSFU, signaling.RoomMCU)
	return e, rs
}

// tonePower is the Goertzel power of freq in 8 kHz PCM, normalised to its length.
func tonePower(pcm []int16, freq float64) float64 {
	if len(pcm) == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / 8000
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s := float64(x) + c*s1 - s2
		s2, s1 = s1, s
	}
	return (s1*s1 + s2*s2 - c*s1*s2) / float64(len(pcm)) / float64(len(pcm))
}

// hears: the tone is clearly there. A sine of amplitude A has power A²/4 here: the peers
// send A = 8000 (1.6e7); 1e5 is about -22 dB below that, silence and leakage stay far under.
func hears(pcm []int16, freq float64) bool { return tonePower(pcm, freq) > 1e5 }

// listenWindow resets p, waits d and returns what it heard then (minus the first 100 ms).
func listenWindow(p *rtpPeer, d time.Duration) []int16 {
	p.Reset()
	time.Sleep(d) // the subject: the listening window
	pcm, _ := p.Heard()
	if len(pcm) > 800 {
		pcm = pcm[800:]
	}
	return pcm
}

// checkHears listens in 1.2 s windows until p hears every tone of want and none of
// notWant (a change of the mix reaches the ear after the mixer's and the peer's delays).
func checkHears(t *testing.T, what string, p *rtpPeer, want, notWant []float64) {
	t.Helper()
	var wrong []string
	defer func() {
		if t.Failed() && len(wrong) > 0 {
			t.Logf("%s, last window: %s", what, strings.Join(wrong, "; "))
		}
	}()
	peers.WaitFor(t, 10*time.Second, what, func() bool {
		pcm := listenWindow(p, 1200*time.Millisecond)
		wrong = wrong[:0]
		if len(pcm) < 4000 {
			wrong = append(wrong, fmt.Sprintf("heard only %d samples", len(pcm)))
		}
		for _, f := range want {
			if !hears(pcm, f) {
				wrong = append(wrong, fmt.Sprintf("does not hear %.0f Hz (power %.0f)", f, tonePower(pcm, f)))
			}
		}
		for _, f := range notWant {
			if hears(pcm, f) {
				wrong = append(wrong, fmt.Sprintf("hears %.0f Hz (power %.0f), it must not", f, tonePower(pcm, f)))
			}
		}
		return len(wrong) == 0
	})
}

func others(freqs []float64, n, self int) []float64 {
	var out []float64
	for j := 0; j < n; j++ {
		if j != self {
			out = append(out, freqs[j])
		}
	}
	return out
}

func readWAV8k(t *testing.T, path string) []int16 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[0:4]) != "RIFF" || binary.LittleEndian.Uint32(b[24:]) != 8000 {
		t.Fatalf("%s: not an 8 kHz WAV", path)
	}
	n := binary.LittleEndian.Uint32(b[40:])
	if int(n) != len(b)-44 {
		t.Fatalf("%s: data length %d, file has %d", path, n, len(b)-44)
	}
	pcm := make([]int16, n/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[44+2*i:]))
	}
	return pcm
}

// TestMCURTPConference: three plain-RTP participants (PCMU) with distinct tones in one mcu
// room through the API: each hears both others and never itself; muting one removes its tone
// for the others; talk events are published; a parked fourth caller hears none of them, then
// update session_type mcu brings it into the room (it hears the three, they hear it); the
// room's mix recording contains every tone; destroying the room stops every session with
// 2032; everything is released.
func TestMCURTPConference(t *testing.T) {
	e, _ := newRoomEnv(t)
	c := dialAPI(t, e, "alice")
	watch := dialAPI(t, e, "watch")
	if _, err := watch.send("core", "event", "subscribe", map[string]any{"class": "media", "subclass": "room"}); err != nil {
		t.Fatal(err)
	}
	freqs := []float64{500, 800, 1200, 1700}
	peers := make([]*rtpPeer, 4)
	ids := make([]string, 4)
	roomID := ""
	for i := 0; i < 3; i++ {
		peers[i] = newRTPPeer(t)
		req := map[string]any{"type": "mcu", "offer": map[string]any{"sdp": peers[i].SDP(""), "sdp_type": "rtp"}}
		if i == 0 {
			req["record"] = true
		} else {
			req["room_id"] = roomID
		}
		res, err := c.media("session/start", req)
		if err != nil {
			t.Fatalf("mcu %d: %v", i, err)
		}
		ids[i] = res["session_id"].(string)
		if i == 0 {
			roomID, _ = res["room_id"].(string)
			if roomID == "" {
				t.Fatalf("no room_id in %v", res)
			}
		} else if res["room_id"] != roomID {
			t.Fatalf("room %v, want %s", res["room_id"], roomID)
		}
		peers[i].UseSDP(res["answer"].(map[string]any)["sdp"].(string))
	}
	if _, err := c.media("session/start", map[string]any{"type": "mcu", "room_id": "no-such-room",
		"offer": map[string]any{"sdp": newRTPPeer(t).SDP(""), "sdp_type": "rtp"}}); codeOf(err) != 2030 {
		t.Errorf("mcu in an unknown room: %v, want 2030", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	send := func(i int) {
		wg.Add(1)
		go func() { defer wg.Done(); peers[i].SendToneFor(ctx, 0, "pcmu", freqs[i], 30*time.Second) }()
	}
	for i := 0; i < 3; i++ {
		send(i)
	}
	time.Sleep(400 * time.Millisecond) // the mixer's delay before the first window (checkHears then polls)
	for i := 0; i < 3; i++ {
		checkHears(t, fmt.Sprintf("participant %.0f Hz", freqs[i]), peers[i], others(freqs, 3, i), freqs[i:i+1])
	}
	watch.waitEvent("talking", roomID)
	info, err := c.media("room/info", map[string]any{"room_id": roomID})
	if err != nil {
		t.Fatal(err)
	}
	if pubs, _ := info["publishers"].(map[string]any); len(pubs) != 3 || info["class"] != "mcu" || info["backend"] != "media" {
		t.Errorf("room info %v", info)
	} else {
		for id, v := range pubs {
			if m, _ := v.(map[string]any); m["user"] != "alice" {
				t.Errorf("room info: publisher %s has user %v, want alice", id, m["user"])
			}
		}
	}
	if lay, err := c.media("session/update", map[string]any{"session_id": ids[0], "type": "mcu_layout", "mcu_layout": "2x2"}); err != nil || lay["mcu_layout"] != "audio_only" || lay["video"] != false {
		t.Errorf("mcu_layout: %v %v, want it accepted with a clear audio_only answer", lay, err)
	}

	// Mute participant 1 (800 Hz): the others no longer hear it.
	if _, err := c.media("session/update", map[string]any{"session_id": ids[1], "type": "media", "use_audio": false}); err != nil {
		t.Fatal(err)
	}
	checkHears(t, "participant 500 Hz with 800 muted", peers[0], []float64{1200}, []float64{500, 800})
	if _, err := c.media("session/update", map[string]any{"session_id": ids[1], "type": "media", "use_audio": true}); err != nil {
		t.Fatal(err)
	}

	// A parked caller hears nobody, then joins the room by session_type.
	peers[3] = newRTPPeer(t)
	res, err := c.media("session/start", map[string]any{"type": "park", "offer": map[string]any{"sdp": peers[3].SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatalf("park: %v", err)
	}
	ids[3] = res["session_id"].(string)
	peers[3].UseSDP(res["answer"].(map[string]any)["sdp"].(string))
	send(3)
	checkHears(t, "parked", peers[3], nil, freqs)
	if _, n := peers[3].Heard(); n == 0 {
		t.Error("parked caller gets no packets (silence must still be sent)")
	}
	checkHears(t, "participant 500 Hz while 1700 is parked", peers[0], []float64{800, 1200}, []float64{500, 1700})
	res, err = c.media("session/update", map[string]any{"session_id": ids[3], "type": "session_type", "session_type": "mcu", "room_id": roomID})
	if err != nil {
		t.Fatalf("park -> mcu: %v", err)
	}
	if res["room_id"] != roomID {
		t.Errorf("update reply %v", res)
	}
	c.waitEvent("updated_type", ids[3])
	checkHears(t, "joined from park", peers[3], freqs[:3], freqs[3:])
	checkHears(t, "participant 500 Hz after the join", peers[0], []float64{800, 1200, 1700}, []float64{500})
	// mcu -> echo: it hears itself only.
	if _, err := c.media("session/update", map[string]any{"session_id": ids[3], "type": "session_type", "session_type": "echo"}); err != nil {
		t.Fatalf("mcu -> echo: %v", err)
	}
	checkHears(t, "moved to echo", peers[3], []float64{1700}, freqs[:3])
	if _, err := c.media("session/update", map[string]any{"session_id": ids[3], "type": "session_type", "session_type": "listen"}); codeOf(err) != 1045 {
		t.Errorf("to listen: %v, want 1045", err)
	}

	if list := e.core.ListRooms(); len(list) != 1 || list[0].RoomID != roomID || list[0].Class != "mcu" {
		t.Errorf("room list %+v", list)
	}
	info, _ = c.media("room/info", map[string]any{"room_id": roomID})
	paths, _ := info["record_paths"].([]any)
	if len(paths) != 1 {
		t.Fatalf("record paths %v", info)
	}
	if _, err := c.media("room/destroy", map[string]any{"room_id": roomID}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ev := c.waitEvent("stop", ids[i])
		if code, _ := ev.Body["code"].(float64); code != 2032 {
			t.Errorf("session %d stopped with %v, want 2032", i, ev.Body)
		}
	}
	watch.waitEvent("destroyed", roomID)
	rec := readWAV8k(t, paths[0].(string))
	if len(rec) < 8000*2 {
		t.Fatalf("recording has %d samples", len(rec))
	}
	for _, f := range freqs[:3] {
		if !hears(rec[len(rec)/4:], f) {
			t.Errorf("recording lacks %.0f Hz (power %.0f)", f, tonePower(rec[len(rec)/4:], f))
		}
	}
	if _, err := c.media("session/stop", map[string]any{"session_id": ids[3]}); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	e.waitIdle("after destroy")
}

// TestRoomsBadInput: clear errors for bad room requests, and nothing is left behind.
func TestRoomsBadInput(t *testing.T) {
	e, rs := newRoomEnv(t)
	c := dialAPI(t, e, "alice")
	rtpOffer := func() map[string]any { return map[string]any{"sdp": newRTPPeer(t).SDP(""), "sdp_type": "rtp"} }
	cases := []struct {
		what string
		cmd  string
		data map[string]any
		code int
	}{
		{"listen without publisher", "session/start", map[string]any{"type": "listen"}, 1047},
		{"listen unknown publisher", "session/start", map[string]any{"type": "listen", "publisher_id": "nobody"}, 2034},
		{"listen with an offer", "session/start", map[string]any{"type": "listen", "publisher_id": "x", "offer": rtpOffer()}, 2011},
		{"publish plain RTP", "session/start", map[string]any{"type": "publish", "offer": rtpOffer()}, 1048},
		{"publish no offer", "session/start", map[string]any{"type": "publish"}, 2010},
		{"mcu bad sdp", "session/start", map[string]any{"type": "mcu", "offer": map[string]any{"sdp": "garbage", "sdp_type": "rtp"}}, 1048},
		{"mcu bad room id", "session/start", map[string]any{"type": "mcu", "room_id": 42, "offer": rtpOffer()}, 1048},
		{"mcu bad codec", "session/start", map[string]any{"type": "mcu", "audio_codec": "g729", "offer": rtpOffer()}, 1048},
		{"create bad class", "room/create", map[string]any{"class": "party"}, 1048},
		{"create no class", "room/create", map[string]any{}, 1047},
		{"destroy unknown", "room/destroy", map[string]any{"room_id": "nope"}, 2030},
		{"info unknown", "room/info", map[string]any{"room_id": "nope"}, 2030},
	}
	for _, tc := range cases {
		if _, err := c.media(tc.cmd, tc.data); codeOf(err) != tc.code {
			t.Errorf("%s: %v, want %d", tc.what, err, tc.code)
		} else {
			t.Logf("%s: %v", tc.what, err)
		}
	}
	// An sfu room refuses mcu participants, and the reverse.
	if _, err := c.media("room/create", map[string]any{"class": "sfu", "room_id": "sfu-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.media("session/start", map[string]any{"type": "mcu", "room_id": "sfu-1", "offer": rtpOffer()}); codeOf(err) != 1045 {
		t.Errorf("mcu into an sfu room: %v", err)
	}
	// session_type errors leave the session as it was (an echo: it still hears itself).
	p := newRTPPeer(t)
	res, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": p.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	sid := res["session_id"].(string)
	p.UseSDP(res["answer"].(map[string]any)["sdp"].(string))
	for _, tc := range []struct {
		data map[string]any
		code int
	}{
		{map[string]any{"session_type": "bogus"}, 2002},
		{map[string]any{"session_type": "publish"}, 1045},
		{map[string]any{"session_type": "mcu", "room_id": "sfu-1"}, 1045},
		{map[string]any{"session_type": "mcu", "room_id": "missing"}, 2030},
		{map[string]any{}, 1047},
	} {
		tc.data["session_id"] = sid
		tc.data["type"] = "session_type"
		if _, err := c.media("session/update", tc.data); codeOf(err) != tc.code {
			t.Errorf("session_type %v: %v, want %d", tc.data, err, tc.code)
		}
	}
	if _, err := c.media("session/update", map[string]any{"session_id": sid, "type": "listen_switch", "publisher_id": "x"}); codeOf(err) != 1045 {
		t.Errorf("listen_switch on echo: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.SendToneFor(ctx, 0, "pcmu", 700, 5*time.Second) }()
	time.Sleep(300 * time.Millisecond) // the tone reaches the peer before the window
	pcm := listenWindow(p, 800*time.Millisecond)
	cancel()
	<-done
	if !hears(pcm, 700) {
		t.Errorf("echo broken after refused type changes (700 Hz power %.0f)", tonePower(pcm, 700))
	}
	if _, err := c.media("session/stop", map[string]any{"session_id": sid}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.media("room/destroy", map[string]any{"room_id": "sfu-1"}); err != nil {
		t.Fatal(err)
	}
	if n := len(rs.Manager().List()); n != 0 {
		t.Errorf("%d rooms left", n)
	}
	e.waitIdle("bad input")
}
