package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// ourDelayedSDP is the media's prepared offer for a delayed-offer call: PCMU, PCMA,
// telephone-event 101, and best-effort keys that must not reach the answer.
const ourDelayedSDP = "v=0\r\no=- 1000 1 IN IP4 127.0.0.1\r\ns=nkbridge\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\na=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH\r\na=sendrecv\r\n"

// A trunk with delayed_offer: the INVITE has no SDP, the 200's offer (PCMA first, SIPp's
// telephone-event 96) is answered in the ACK from the media's prepared offer (PCMA under 8,
// telephone-event under 96, our address and port), and the caller of Dial gets the peer's
// offer as the remote SDP.
func TestSIPpOutboundDelayedOffer(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Host: fmt.Sprintf("127.0.0.1:%d", port), DelayedOffer: true}}
	s := startServer(t, cfg, nil)
	r := startSIPpPort(t, "uas_delayed_offer.xml", port)
	rec := newRecorder(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(ourDelayedSDP), Events: rec})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	local, remote := string(c.LocalSDP()), string(c.RemoteSDP())
	if !strings.Contains(local, "m=audio 40000 RTP/AVP 8 96\r\n") || !strings.Contains(local, "a=rtpmap:96 telephone-event/8000") ||
		strings.Contains(local, "a=crypto") || !strings.Contains(local, "c=IN IP4 127.0.0.1") || !strings.Contains(local, "a=sendrecv") {
		t.Fatalf("our answer in the ACK:\n%s", local)
	}
	if !strings.Contains(remote, "RTP/AVP 8 0 96") {
		t.Fatalf("remote SDP (the peer's offer):\n%s", remote)
	}
	r.wait(t)
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
}

// A 200 whose offer we cannot answer: ACK without SDP, BYE, and Dial fails with 488.
func TestSIPpOutboundDelayedOfferUnusable(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Host: fmt.Sprintf("127.0.0.1:%d", port), DelayedOffer: true}}
	s := startServer(t, cfg, nil)
	r := startSIPpPort(t, "uas_delayed_offer_bad.xml", port)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(ourDelayedSDP)})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 488 || !strings.Contains(se.Reason, "no codec in common") {
		t.Fatalf("Dial: %v, want 488 naming the missing codec", err)
	}
	r.wait(t)
	waitCalls(t, s, 0)
}

func TestDelayedAnswer(t *testing.T) {
	head := "v=0\r\no=p 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	for name, tc := range map[string]struct {
		peer string
		want []string // substrings of the answer; nil: refused
	}{
		"pcmu static":   {head + "m=audio 5000 RTP/AVP 0\r\n", []string{"m=audio 40000 RTP/AVP 0\r\n", "a=rtpmap:0 PCMU/8000"}},
		"sendonly":      {head + "m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n", []string{"a=recvonly"}},
		"video refused": {head + "m=video 5002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio 5000 RTP/AVP 8\r\n", []string{"m=video 0 RTP/AVP 96\r\n", "m=audio 40000 RTP/AVP 8\r\n"}},
		"opus dynamic":  {head + "m=audio 5000 RTP/AVP 107\r\na=rtpmap:107 opus/48000/2\r\n", []string{"m=audio 40000 RTP/AVP 107\r\n", "a=rtpmap:107 opus/48000/2"}},
		"no common":     {head + "m=audio 5000 RTP/AVP 18\r\n", nil},
		"no audio":      {head + "m=video 5000 RTP/AVP 96\r\n", nil},
		"savp":          {head + "m=audio 5000 RTP/SAVP 0\r\n", nil},
		"empty":         {"", nil},
		"garbage":       {"hello", nil},
	} {
		ours := strings.Replace(ourDelayedSDP, "0 8 101", "0 8 111 101", 1) + "a=rtpmap:111 opus/48000/2\r\n"
		ans, err := delayedAnswer([]byte(ours), []byte(tc.peer))
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: answered:\n%s", name, ans)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(ans), w) {
				t.Errorf("%s: answer lacks %q:\n%s", name, w, ans)
			}
		}
	}
}

func FuzzDelayedAnswer(f *testing.F) {
	f.Add([]byte("v=0\r\no=p 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 x\r\nm=video 0 x y\r\n"))
	f.Fuzz(func(t *testing.T, peer []byte) {
		ans, err := delayedAnswer([]byte(ourDelayedSDP), peer)
		if err != nil {
			return
		}
		if !strings.Contains(string(ans), "m=audio 40000 RTP/AVP ") || strings.Contains(string(ans), "a=crypto") {
			t.Fatalf("answer:\n%s", ans)
		}
	})
}
