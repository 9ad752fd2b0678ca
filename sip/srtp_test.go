package sip

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/sdes"
)

var (
	srtpKey30 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 30))
	srtpKey28 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{6}, 28))
	cryptoAES = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + srtpKey30
)

// srtpAnswerSDP is what a handler answers an SRTP offer with (the media would make it).
const srtpAnswerSDP = "v=0\r\no=- 1000 1 IN IP4 127.0.0.1\r\ns=nkbridge\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH\r\na=sendrecv\r\n"

func srtpTrunkConfig(mode string) Config {
	cfg := trunkConfig()
	cfg.Trunks[0].SRTP = mode
	return cfg
}

// Inbound INVITEs from a trunk with SRTP offers: accepted as the trunk's srtp says (keys
// removed from a best-effort offer when it is off), the handler sees the offer it can answer.
func TestSIPpSRTPInboundAccepted(t *testing.T) {
	sippPath(t)
	for _, tc := range []struct {
		name, mode, profile, c1 string
		keys                    bool // the handler's offer still has the key
	}{
		{"mandatory SAVP", SRTPMandatory, "RTP/SAVP", cryptoAES, true},
		{"mandatory AVP with key", SRTPMandatory, "RTP/AVP", cryptoAES, true},
		{"optional SAVP", SRTPOptional, "RTP/SAVP", cryptoAES, true},
		{"optional plain", SRTPOptional, "RTP/AVP", "a=x-none:1", false}, // c2: no key either
		{"off best effort", SRTPOff, "RTP/AVP", cryptoAES, false},
		{"mandatory GCM after unknown suite", SRTPMandatory, "RTP/SAVP", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + srtpKey30, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(func(c *Call) { _ = c.Answer([]byte(srtpAnswerSDP)) })
			s := startServer(t, srtpTrunkConfig(tc.mode), rec)
			c2 := "a=crypto:2 AEAD_AES_128_GCM inline:" + srtpKey28
			if !strings.HasPrefix(tc.c1, "a=crypto") && tc.profile == "RTP/AVP" {
				c2 = "a=x-none:2"
			}
			r := startSIPp(t, "uac_srtp_call.xml", s.target("udp"), "-s", "echo", "-key", "profile", tc.profile, "-key", "c1", tc.c1, "-key", "c2", c2)
			c := rec.waitCall(t, r)
			r.wait(t)
			if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
				t.Fatalf("end %+v", e)
			}
			offer := string(c.RemoteSDP())
			if got := strings.Contains(offer, "a=crypto:"); got != tc.keys {
				t.Fatalf("handler's offer has keys: %v, want %v:\n%s", got, tc.keys, offer)
			}
		})
	}
}

// Offers refused with 488 for their SRTP, hostile keys included; the reason says why, the
// handler never sees them, and a good call works afterwards.
func TestSIPpSRTPInboundRefused(t *testing.T) {
	sippPath(t)
	rec := newRecorder(func(c *Call) { _ = c.Answer([]byte(srtpAnswerSDP)) })
	s := startServer(t, srtpTrunkConfig(SRTPMandatory), rec)
	off := startServer(t, srtpTrunkConfig(SRTPOff), rec)
	filler := "a=x-none:1"
	for _, tc := range []struct {
		name    string
		srv     *Server
		profile string
		c1, c2  string
		why     string
	}{
		{"plain to mandatory", s, "RTP/AVP", filler, filler, "is mandatory"},
		{"SAVP to off", off, "RTP/SAVP", cryptoAES, filler, "is off"},
		{"SAVP without key", s, "RTP/SAVP", filler, filler, "without a usable"},
		{"unknown suite only", s, "RTP/SAVP", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + srtpKey30, filler, "without a usable"},
		{"key too short", s, "RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + srtpKey28, filler, "want 30"},
		{"GCM key too long", s, "RTP/SAVP", "a=crypto:1 AEAD_AES_128_GCM inline:" + srtpKey30, filler, "want 28"},
		{"bad base64", s, "RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%%%%$$$$", filler, "not base64"},
		{"tag twice", s, "RTP/SAVP", cryptoAES, "a=crypto:1 AEAD_AES_128_GCM inline:" + srtpKey28, "used twice"},
		{"bad tag", s, "RTP/SAVP", "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:" + srtpKey30, filler, "tag"},
		{"bad lifetime", s, "RTP/SAVP", cryptoAES + "|2^999", filler, "lifetime"},
		{"best-effort bad key to off", off, "RTP/AVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AA", filler, "want 30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startSIPp(t, "uac_srtp_refused.xml", tc.srv.target("udp"), "-s", "echo", "-key", "profile", tc.profile,
				"-key", "c1", tc.c1, "-key", "c2", tc.c2)
			r.wait(t)
			r.wantReason(t, tc.why)
		})
	}
	t.Run("17 lines", func(t *testing.T) {
		r := startSIPp(t, "uac_srtp_many.xml", s.target("udp"), "-s", "echo")
		r.wait(t)
		r.wantReason(t, "more than 16")
	})
	select {
	case c := <-rec.calls:
		t.Fatalf("handler got a refused call: %s", c.RemoteSDP())
	default:
	}
	r := startSIPp(t, "uac_srtp_call.xml", s.target("udp"), "-s", "echo", "-key", "profile", "RTP/SAVP", "-key", "c1", cryptoAES, "-key", "c2", filler)
	rec.waitCall(t, r)
	r.wait(t)
	rec.waitEnd(t)
	if s.Calls() != 0 || off.Calls() != 0 {
		t.Fatalf("calls left: %d %d", s.Calls(), off.Calls())
	}
}

// Outbound through a trunk: mandatory sends RTP/SAVP (the media's best-effort keys), optional
// RTP/AVP with them, off without them; an answer without a usable key to a mandatory offer,
// or with a malformed one, is refused (ACK, BYE, 488).
func TestSIPpSRTPOutbound(t *testing.T) {
	sippPath(t)
	offer := testSDP + cryptoAES + "\r\na=crypto:2 AEAD_AES_128_GCM inline:" + srtpKey28 + "\r\n"
	for _, tc := range []struct {
		name, mode, scen, oprof, aprof, c1 string
		keys                               bool // the answer the caller gets has a key
		fail                               string
	}{
		{"mandatory", SRTPMandatory, "uas_srtp_answer.xml", "RTP/SAVP", "RTP/SAVP", cryptoAES, true, ""},
		{"optional answered SRTP", SRTPOptional, "uas_srtp_answer.xml", "RTP/AVP", "RTP/AVP", cryptoAES, true, ""},
		{"optional answered plain", SRTPOptional, "uas_srtp_answer.xml", "RTP/AVP", "RTP/AVP", "a=x-none:1", false, ""},
		{"off", SRTPOff, "uas_srtp_answer.xml", "RTP/AVP", "RTP/AVP", "a=x-none:1", false, ""},
		{"mandatory answered plain", SRTPMandatory, "uas_srtp_bad_answer.xml", "RTP/SAVP", "RTP/AVP", "a=x-none:1", false, "is mandatory"},
		{"mandatory answered bad key", SRTPMandatory, "uas_srtp_bad_answer.xml", "RTP/SAVP", "RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + srtpKey28, false, "want 30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			cfg := testConfig()
			cfg.Trunks = []Trunk{{Name: "carrier", Host: fmt.Sprintf("127.0.0.1:%d", port), SRTP: tc.mode}}
			s := startServer(t, cfg, nil)
			r := startSIPpPort(t, tc.scen, port, "-key", "aprof", tc.aprof, "-key", "c1", tc.c1)
			rec := newRecorder(nil)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(offer), Events: rec})
			if tc.fail != "" {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != 488 || !strings.Contains(se.Reason, tc.fail) {
					t.Fatalf("Dial: %v, want 488 naming %q", err, tc.fail)
				}
				r.wait(t)
				waitCalls(t, s, 0)
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if got := strings.Contains(string(c.RemoteSDP()), "a=crypto:"); got != tc.keys {
				t.Fatalf("answer has keys: %v, want %v:\n%s", got, tc.keys, c.RemoteSDP())
			}
			local := string(c.LocalSDP())
			if (tc.mode == SRTPOff) == strings.Contains(local, "a=crypto:") || !strings.Contains(local, " "+tc.oprof+" ") {
				t.Fatalf("offer sent with srtp %s (want %s):\n%s", tc.mode, tc.oprof, local)
			}
			r.wait(t)
			rec.waitEnd(t)
		})
	}
	t.Run("mandatory without keys in the offer", func(t *testing.T) {
		cfg := testConfig()
		cfg.Trunks = []Trunk{{Name: "carrier", Host: "127.0.0.1:5", SRTP: SRTPMandatory}}
		s := startServer(t, cfg, nil)
		_, err := s.Dial(context.Background(), DialOptions{Target: "sip:bob@127.0.0.1:5", Caller: "alice", Offer: []byte(testSDP)})
		if err == nil || !strings.Contains(err.Error(), "sip.trunks[].srtp is mandatory") {
			t.Fatalf("Dial: %v", err)
		}
	})
}

// wantReason checks that SIPp received a 488 whose reason contains why.
func (r *sippRun) wantReason(t *testing.T, why string) {
	t.Helper()
	msgs, _ := os.ReadFile(filepath.Join(r.dir, "msg.log"))
	for _, l := range strings.Split(string(msgs), "\n") {
		if strings.HasPrefix(l, "SIP/2.0 488 ") && strings.Contains(l, why) {
			t.Logf("%s", strings.TrimSpace(l))
			return
		}
	}
	t.Fatalf("no 488 naming %q in:\n%s", why, msgs)
}

func TestSRTPConfigValidated(t *testing.T) {
	cfg := trunkConfig()
	cfg.Trunks[0].SRTP = "always"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `srtp "always"`) {
		t.Fatalf("trunk: %v", err)
	}
	cfg = testConfig()
	cfg.Users[0].SRTP = "yes"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `srtp "yes"`) {
		t.Fatalf("user: %v", err)
	}
}

// Re-INVITEs of an SRTP call: one with a hostile key is refused (488) without reaching the
// handler and the call goes on; one with a new key (the peer rekeys) reaches it and is
// answered.
func TestSIPpSRTPReinvite(t *testing.T) {
	sippPath(t)
	rec := newRecorder(func(c *Call) { _ = c.Answer([]byte(srtpAnswerSDP)) })
	s := startServer(t, srtpTrunkConfig(SRTPMandatory), rec)
	rekey := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 30))
	r := startSIPp(t, "uac_srtp_reinvite.xml", s.target("udp"), "-s", "echo", "-key", "profile", "RTP/SAVP",
		"-key", "c1", cryptoAES, "-key", "c2", "a=x-none:1",
		"-key", "bad", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+srtpKey28, "-key", "rekey", rekey)
	c := rec.waitCall(t, r)
	r.wait(t)
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reoffers) != 1 || !strings.Contains(string(rec.reoffers[0].SDP), rekey) {
		t.Fatalf("re-offers reaching the handler: %d, want only the rekey", len(rec.reoffers))
	}
	if !strings.Contains(string(c.RemoteSDP()), rekey) {
		t.Fatalf("remote SDP after the rekey:\n%s", c.RemoteSDP())
	}
}

// Any SDP through the SRTP policy of each mode: no panic, refusals are 488 reasons, what
// mandatory accepts has a usable key and what off passes on has none.
func FuzzSRTPPolicy(f *testing.F) {
	f.Add([]byte(srtpAnswerSDP))
	f.Add([]byte(testSDP + cryptoAES + "\r\n"))
	f.Add([]byte("m=audio 1 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + srtpKey28 + "\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mode := range []string{SRTPOff, SRTPOptional, SRTPMandatory} {
			p := srtpPolicy{mode: mode, setting: "sip.trunks[].srtp"}
			out, err := p.peerSDP(b)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "Not Acceptable Here (") {
					t.Fatalf("%s: refusal %q", mode, err)
				}
			} else if st, _ := sdes.Check(b); st.Audio && mode == SRTPOff && bytes.Contains(out, []byte("\na=crypto:")) {
				t.Fatalf("off passed keys on:\n%s", out)
			}
			_, _ = p.ourOffer(b)
		}
	})
}
