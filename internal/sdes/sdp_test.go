package sdes

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var k30 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 30))

const head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"

func TestCheck(t *testing.T) {
	good := head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:" + k30 + "\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "\r\n" +
		"m=video 0 RTP/AVP 96\r\na=crypto:2 junk\r\n"
	st, err := Check([]byte(good))
	if err != nil || !st.Audio || st.Profile != "RTP/SAVP" || len(st.Crypto) != 1 || st.Crypto[0].Tag != 2 || !st.Secure() {
		t.Fatalf("%+v %v", st, err)
	}
	plain := head + "m=audio 4000 RTP/AVP 0\r\n"
	if st, err := Check([]byte(plain)); err != nil || st.Secure() || !st.Audio {
		t.Fatalf("plain: %+v %v", st, err)
	}
	if st, err := Check([]byte(head)); err != nil || st.Audio {
		t.Fatalf("no audio: %+v %v", st, err)
	}
	for name, sdp := range map[string]string{
		"none":      head + "m=audio 4000 RTP/SAVP 0\r\n",
		"unknown":   head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:" + k30 + "\r\n",
		"short key": head + "m=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
		"base64":    head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***\r\n",
		"dup tag":   head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + k30 + "\r\n",
		"many":      head + "m=audio 4000 RTP/SAVP 0\r\n" + strings.Repeat("a=crypto:1 F8 inline:x\r\n", MaxLines+1),
	} {
		if _, err := Check([]byte(sdp)); !errors.Is(err, ErrBad) && !errors.Is(err, ErrNone) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestStripAndSetProfile(t *testing.T) {
	sdp := head + "m=audio 4000 RTP/AVP 0 101\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "\r\na=sendrecv\r\n"
	s := string(SetProfile([]byte(sdp)))
	if !strings.Contains(s, "m=audio 4000 RTP/SAVP 0 101\r\n") {
		t.Fatalf("SetProfile:\n%s", s)
	}
	if string(SetProfile([]byte(s))) != s {
		t.Fatal("SetProfile not idempotent")
	}
	p := string(Strip([]byte(sdp)))
	if strings.Contains(p, "crypto") || !strings.Contains(p, "a=sendrecv\r\n") || !strings.HasPrefix(p, head) {
		t.Fatalf("Strip:\n%s", p)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^20|1:4\r\n"))
	f.Add([]byte(head + "m=audio 4000 RTP/AVP 0\r\na=crypto:1 AEAD_AES_128_GCM inline:" + k30 + "\r\n"))
	f.Add([]byte("m=audio 1 RTP/SAVP\na=crypto:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Check(b)
		if err != nil {
			if !errors.Is(err, ErrBad) && !errors.Is(err, ErrNone) {
				t.Fatalf("error kind %v", err)
			}
			return
		}
		for _, c := range st.Crypto {
			if _, _, _, err := c.Profile(); err != nil {
				t.Fatalf("unusable key accepted: %v", err)
			}
		}
		if st2, err := Check(Strip(b)); err == nil && len(st2.Crypto) != 0 {
			t.Fatal("keys left after Strip")
		}
		_ = SetProfile(b)
	})
}
