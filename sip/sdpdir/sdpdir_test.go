package sdpdir

import (
	"strings"
	"testing"
)

const base = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"

func TestParse(t *testing.T) {
	cases := []struct {
		sdp  string
		dir  Direction
		hold bool
		null bool
	}{
		{base, SendRecv, false, false},
		{base + "a=sendonly\r\n", SendOnly, true, false},
		{base + "a=inactive\r\n", Inactive, true, false},
		{base + "a=recvonly\r\n", RecvOnly, false, false},
		{strings.Replace(base, "t=0 0", "t=0 0\r\na=sendonly", 1), SendOnly, true, false},
		{strings.Replace(base, "t=0 0", "t=0 0\r\na=sendonly", 1) + "a=sendrecv\r\n", SendRecv, false, false},
		{strings.Replace(base, "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0", 1), SendRecv, true, true},
		{base + "c=IN IP4 0.0.0.0\r\n", SendRecv, true, true},
		{base + "m=video 5000 RTP/AVP 96\r\na=inactive\r\n", SendRecv, false, false},
		{strings.ReplaceAll(base, "\r\n", "\n") + "a=sendonly\n", SendOnly, true, false},
	}
	for i, c := range cases {
		info, err := Parse([]byte(c.sdp))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if info.Direction != c.dir || info.OnHold() != c.hold || info.NullAddr != c.null || !info.HasAudio || info.Port != 4000 {
			t.Errorf("%d: got %+v", i, info)
		}
	}
	if _, err := Parse([]byte("hello")); err == nil {
		t.Error("non-SDP accepted")
	}
}

func TestAnswerAndSet(t *testing.T) {
	for offer, want := range map[Direction]Direction{SendRecv: SendRecv, SendOnly: RecvOnly, RecvOnly: SendOnly, Inactive: Inactive} {
		if got := Answer(offer); got != want {
			t.Errorf("Answer(%s)=%s want %s", offer, got, want)
		}
	}
	if d := AnswerFor(Info{Direction: SendRecv, NullAddr: true}); d != RecvOnly {
		t.Errorf("c=0.0.0.0 hold answered %s", d)
	}
	out, err := Set([]byte(strings.Replace(base, "t=0 0", "t=0 0\r\na=sendrecv", 1)+"a=sendrecv\r\n"), RecvOnly)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), "a=") != 2 || !strings.HasSuffix(string(out), "a=recvonly\r\n") {
		t.Fatalf("Set: %q", out)
	}
	info, _ := Parse(out)
	if info.Direction != RecvOnly {
		t.Fatalf("reparse %s", info.Direction)
	}
	b := BumpVersion([]byte(base))
	if !strings.Contains(string(b), "o=- 1 2 IN IP4") {
		t.Fatalf("bump: %q", b)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "a=sendonly\r\n"))
	f.Add([]byte("v=0\nc=IN IP4\nm=audio\na=inactive"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Parse(b)
		if err != nil {
			return
		}
		switch info.Direction {
		case SendRecv, SendOnly, RecvOnly, Inactive:
		default:
			t.Fatalf("bad direction %q", info.Direction)
		}
		out, err := Set(b, Answer(info.Direction))
		if err != nil {
			t.Fatalf("Set failed on parseable body: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Set output unparseable: %v", err)
		}
		if info.HasAudio && again.Direction != Answer(info.Direction) {
			t.Fatalf("direction not applied: %s vs %s", again.Direction, Answer(info.Direction))
		}
	})
}
