package media

import (
	"strings"
	"testing"
)

// FuzzWidenAnswer: whatever a peer answers, widening it for pion never panics, leaves an
// answer without an audio section (or one listing every offered format) unchanged, and turns
// a parsable answer into a parsable answer that still lists every payload type it had.
func FuzzWidenAnswer(f *testing.F) {
	fp := "a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\n"
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + fp + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + fp + "m=audio 9 UDP/TLS/RTP/SAVPF 0 126\r\na=rtpmap:126 telephone-event/8000\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n")
	f.Add("v=0\r\nm=audio 0 RTP/AVP\r\n")
	f.Add("garbage")
	offer := &sdpMedia{hasAudio: true, audio: []format{
		{PT: 111, Name: "opus", Rate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
		{PT: 0, Name: "pcmu", Rate: 8000}, {PT: 8, Name: "pcma", Rate: 8000},
		{PT: 110, Name: "telephone-event", Rate: 48000, Fmtp: "0-16"}, {PT: 126, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"},
		{PT: 97, Name: "unsupported", Rate: 8000},
	}}
	f.Fuzz(func(t *testing.T, answer string) {
		if len(answer) > 1<<16 {
			return
		}
		out := widenAnswer(answer, offer)
		before, err := parseWebRTCSDP(answer)
		if err != nil {
			return
		}
		after, err := parseWebRTCSDP(out)
		if err != nil {
			t.Fatalf("widened answer unparsable: %v\n%q", err, out)
		}
		for _, g := range before.audio {
			found := false
			for _, h := range after.audio {
				found = found || h.PT == g.PT
			}
			if !found {
				t.Fatalf("payload type %d lost", g.PT)
			}
		}
		for _, h := range after.audio {
			if h.PT == 97 {
				t.Fatal("an unsupported codec was added")
			}
		}
	})
}
