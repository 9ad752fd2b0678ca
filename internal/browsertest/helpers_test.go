package browsertest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

func TestCheckCommandLine(t *testing.T) {
	feats := append([]string{"PaintHolding"}, browsertest.LoopbackDisabledFeatures()...)
	good := append([]string{"/usr/lib/chromium/chromium", "--headless", "--use-file-for-fake-audio-capture=/t/a.wav",
		"--disable-features=" + strings.Join(feats, ",")}, browsertest.LoopbackArgs()...)
	if err := browsertest.CheckCommandLine(good, feats, "/t/a.wav"); err != nil {
		t.Fatalf("good command line rejected: %v", err)
	}
	cases := map[string][]string{
		"two disable-features": append(append([]string{}, good...), "--disable-features=Foo"),
		"no disable-features":  filter(good, func(a string) bool { return !strings.HasPrefix(a, "--disable-features=") }),
		"no mdns feature": replace(good, "--disable-features=", "--disable-features="+strings.Join(
			filter(feats, func(f string) bool { return f != "WebRtcHideLocalIpsWithMdns" }), ",")),
		"no resolver rules": filter(good, func(a string) bool { return !strings.HasPrefix(a, "--host-resolver-rules") }),
		"other wav":         replace(good, "--use-file-for-fake-audio-capture=", "--use-file-for-fake-audio-capture=/t/b.wav"),
	}
	for name, cl := range cases {
		if err := browsertest.CheckCommandLine(cl, feats, "/t/a.wav"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func filter(in []string, keep func(string) bool) []string {
	var out []string
	for _, s := range in {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func replace(in []string, prefix, with string) []string {
	out := append([]string{}, in...)
	for i, s := range out {
		if strings.HasPrefix(s, prefix) {
			out[i] = with
		}
	}
	return out
}

// TestSDPRewrite checks nkb.loopbackSDP and nkb.candidateInit on every kind of candidate.
func TestSDPRewrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := browsertest.Launch(t, browsertest.Options{})
	p := b.NewPage(ctx, pageServer(t).URL+"/")

	in := strings.Join([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"m=audio 40000 UDP/TLS/RTP/SAVPF 111",
		"c=IN IP4 192.0.2.2",
		"a=rtcp:9 IN IP4 0.0.0.0",
		"a=candidate:1 1 udp 2122260223 192.0.2.2 40000 typ host generation 0 network-id 1",
		"a=candidate:2 1 udp 2122262783 fd00::2 40001 typ host generation 0",
		"a=candidate:3 1 tcp 1518280447 192.0.2.2 9 typ host tcptype active generation 0",
		"a=candidate:4 1 udp 1686052607 198.51.100.7 40002 typ srflx raddr 192.0.2.2 rport 40000",
		"a=candidate:5 1 udp 2122260223 0b9c8a6e-4e0c-4a59-8a4e-0d7d53a0c0f1.local 40003 typ host generation 0",
		"a=rtpmap:111 opus/48000/2", "",
	}, "\r\n")
	want := strings.Join([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"m=audio 40000 UDP/TLS/RTP/SAVPF 111",
		"c=IN IP4 127.0.0.1",
		"a=rtcp:9 IN IP4 127.0.0.1",
		"a=candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host generation 0 network-id 1",
		"a=candidate:5 1 udp 2122260223 127.0.0.1 40003 typ host generation 0",
		"a=rtpmap:111 opus/48000/2", "",
	}, "\r\n")
	var got string
	if err := p.EvalArg(ctx, `(sdp) => nkb.loopbackSDP(sdp)`, in, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("loopbackSDP:\n got %q\nwant %q", got, want)
	}

	type cand struct {
		Candidate     string `json:"candidate"`
		SdpMid        string `json:"sdpMid"`
		SdpMLineIndex int    `json:"sdpMLineIndex"`
	}
	trickle := []struct {
		in   cand
		want *cand
	}{
		{cand{"candidate:1 1 udp 2122260223 192.0.2.2 40000 typ host generation 0", "0", 0},
			&cand{"candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host generation 0", "0", 0}},
		{cand{"candidate:2 1 udp 2122262783 fd00::2 40001 typ host", "0", 0}, nil},
		{cand{"candidate:3 1 TCP 1518280447 192.0.2.2 9 typ host tcptype active", "0", 0}, nil},
		{cand{"candidate:4 1 udp 1686052607 198.51.100.7 40002 typ srflx raddr 192.0.2.2 rport 40000", "0", 0}, nil},
		{cand{"", "0", 0}, &cand{"", "0", 0}}, // end of candidates
	}
	for _, tc := range trickle {
		var got *cand
		if err := p.EvalArg(ctx, `(c) => nkb.candidateInit(c)`, tc.in, &got); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.want == nil && got != nil:
			t.Errorf("candidateInit(%q) = %+v, want dropped", tc.in.Candidate, *got)
		case tc.want != nil && (got == nil || *got != *tc.want):
			t.Errorf("candidateInit(%q) = %+v, want %+v", tc.in.Candidate, got, *tc.want)
		}
	}
}

// TestAPIClient runs nkb.ApiClient against a scripted control-API server: login with an ack
// first, a server ping and an event answered ok, an error response rejected with its code.
func TestAPIClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	replies := make(chan map[string]any, 10)
	serverErr := make(chan error, 1)
	up := websocket.Upgrader{} // same-origin only (the default check)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(blankPage))
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		serverErr <- scriptedServer(c, replies)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := browsertest.Launch(t, browsertest.Options{})
	p := b.NewPage(ctx, srv.URL+"/")
	var res struct {
		Login struct {
			SessionID string `json:"session_id"`
		} `json:"login"`
		Event   map[string]any `json:"event"`
		ErrCode int            `json:"errCode"`
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api"
	err := p.EvalArg(ctx, `async (url) => {
		const api = new nkb.ApiClient(url);
		await api.open();
		const login = await api.login("alice", "secret");
		const event = await api.waitEvent((e) => e.type === "stop", 5000);
		let errCode = 0;
		try { await api.send("media", "session", "start", {}); } catch (e) { errCode = e.code; }
		api.close();
		return {login, event, errCode};
	}`, wsURL, &res)
	if err != nil {
		t.Fatalf("page: %v\n%s", err, strings.Join(p.Console(), "\n"))
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	if res.Login.SessionID != "s-1" {
		t.Errorf("login result %+v", res.Login)
	}
	if res.Event["obj_id"] != "sess-9" {
		t.Errorf("event %+v", res.Event)
	}
	if res.ErrCode != 1047 {
		t.Errorf("error code %d, want 1047", res.ErrCode)
	}
	close(replies)
	got := map[float64]string{}
	for r := range replies {
		tid, _ := r["tid"].(float64)
		got[tid], _ = r["result"].(string)
	}
	if got[1] != "ok" || got[2] != "ok" {
		t.Errorf("client replies to server requests: %v, want ok for tids 1 and 2", got)
	}
}

// scriptedServer plays one control-API conversation on c.
func scriptedServer(c *websocket.Conn, replies chan<- map[string]any) error {
	read := func() (map[string]any, error) {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var m map[string]any
		err := c.ReadJSON(&m)
		return m, err
	}
	login, err := read()
	if err != nil {
		return err
	}
	if login["class"] != "core" || login["subclass"] != "user" || login["cmd"] != "login" {
		return &protoErr{"want core/user/login", login}
	}
	tid := login["tid"]
	if err := c.WriteJSON(map[string]any{"ack": tid}); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // the subject: a reply after its ack
	if err := c.WriteJSON(map[string]any{"result": "ok", "data": map[string]any{"session_id": "s-1"}, "tid": tid}); err != nil {
		return err
	}
	if err := c.WriteJSON(map[string]any{"class": "core", "cmd": "ping", "data": map[string]any{"time": 5}, "tid": 1}); err != nil {
		return err
	}
	if err := c.WriteJSON(map[string]any{"class": "core", "cmd": "event", "tid": 2, "data": map[string]any{
		"class": "media", "subclass": "session", "type": "stop", "obj_id": "sess-9", "body": map[string]any{"code": 0}}}); err != nil {
		return err
	}
	for {
		m, err := read()
		if err != nil {
			return err
		}
		if _, ok := m["result"]; ok {
			replies <- m
			continue
		}
		if m["cmd"] == "start" {
			return c.WriteJSON(map[string]any{"result": "error", "tid": m["tid"],
				"data": map[string]any{"code": 1047, "error": "Missing field: type"}})
		}
		return &protoErr{"unexpected message", m}
	}
}

type protoErr struct {
	what string
	msg  map[string]any
}

func (e *protoErr) Error() string {
	b, _ := json.Marshal(e.msg)
	return e.what + ": " + string(b)
}

// TestAssets loads the Verto bundle (classic script) and sip.js (ES modules) from Assets.
func TestAssets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := pageServer(t)
	b := browsertest.Launch(t, browsertest.Options{})
	p := b.NewPage(ctx, srv.URL+"/")
	var res struct {
		Verto   string `json:"verto"`
		SIP     string `json:"sip"`
		Version string `json:"version"`
		Helpers bool   `json:"helpers"`
	}
	err := p.Eval(ctx, `(async () => {
		await new Promise((resolve, reject) => {
			const s = document.createElement("script");
			s.src = "/assets/verto.min.js";
			s.onload = resolve;
			s.onerror = () => reject(new Error("verto.min.js did not load"));
			document.head.appendChild(s);
		});
		const sip = await import("/assets/sip.js/index.js");
		const h = await fetch("/assets/rtc-helpers.js").then((r) => r.text());
		return {verto: typeof Verto, sip: typeof sip.UserAgent, version: sip.version || "", helpers: h.includes("window.nkb")};
	})()`, &res)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(p.Console(), "\n"))
	}
	if res.Verto != "function" || res.SIP != "function" || !res.Helpers {
		t.Errorf("assets: %+v", res)
	}
	t.Logf("assets: %+v", res)
}
