package browsertest_test

import (
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

const sdpHead = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func section(kind, port string, lines ...string) string {
	s := "m=" + kind + " " + port + " UDP/TLS/RTP/SAVPF 96\r\n"
	for _, l := range lines {
		s += "a=" + l + "\r\n"
	}
	return s
}

// The checker the browser tests rely on must catch what issue 14.1 was about.
func TestCheckSources(t *testing.T) {
	audio := section("audio", "9", "mid:0", "msid:s a", "ssrc:1 cname:x", "sendrecv")
	for _, c := range []struct {
		name, sdp string
		bad       bool
	}{
		{"sourced audio, inactive video", sdpHead + audio + section("video", "9", "mid:1", "inactive"), false},
		{"recvonly video", sdpHead + audio + section("video", "9", "mid:1", "recvonly"), false},
		{"rejected video", sdpHead + audio + section("video", "0", "mid:1", "sendonly"), false},
		{"sourced video in the same stream", sdpHead + audio + section("video", "9", "mid:1", "msid:s v", "ssrc:2 cname:x", "sendonly"), false},
		{"sendonly video without msid", sdpHead + audio + section("video", "9", "mid:1", "sendonly"), true},
		{"sendrecv by default", sdpHead + audio + section("video", "9", "mid:1"), true},
		{"session-level sendonly", sdpHead + "a=sendonly\r\n" + audio + section("video", "9", "mid:1"), true},
		{"msid without ssrc", sdpHead + audio + section("video", "9", "mid:1", "msid:s v", "sendonly"), true},
		{"another stream", sdpHead + audio + section("video", "9", "mid:1", "msid:t v", "ssrc:2 cname:x", "sendonly"), true},
	} {
		err := browsertest.CheckSources(c.sdp)
		if (err != nil) != c.bad {
			t.Errorf("%s: CheckSources = %v, want an error %v", c.name, err, c.bad)
		}
	}
	s := sdpHead + "a=recvonly\r\n" + audio + section("video", "0")
	if d := browsertest.Direction(s, "audio"); d != "sendrecv" {
		t.Errorf("audio %q (media attribute over session attribute)", d)
	}
	if d := browsertest.Direction(s, "video"); d != "rejected" {
		t.Errorf("video %q, want rejected", d)
	}
	if d := browsertest.Direction(sdpHead+"a=recvonly\r\n"+section("video", "9"), "video"); d != "recvonly" {
		t.Errorf("video %q, want the session's recvonly", d)
	}
	if d := browsertest.Direction(sdpHead+audio, "video"); d != "" {
		t.Errorf("no video section: %q", d)
	}
}

func FuzzSections(f *testing.F) {
	f.Add(sdpHead + section("audio", "9", "msid:s a", "ssrc:1 cname:x") + section("video", "0", "sendonly"))
	f.Add("m=\nm=video\na=msid:\na=sendonly\n")
	f.Add("a=inactive\r\nm=audio 1\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		secs := browsertest.Sections(sdp)
		want := 0
		for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
			if strings.HasPrefix(l, "m=") {
				want++
			}
		}
		if len(secs) != want {
			t.Fatalf("%d sections for %d m= lines", len(secs), want)
		}
		for _, s := range secs {
			switch s.Direction {
			case "sendrecv", "sendonly", "recvonly", "inactive":
			default:
				t.Fatalf("direction %q", s.Direction)
			}
		}
		_ = browsertest.CheckSources(sdp)
	})
}
