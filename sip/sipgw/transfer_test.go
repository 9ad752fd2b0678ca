package sipgw

import "testing"

func TestContinueOrigin(t *testing.T) {
	prev := []byte("v=0\r\no=nkbridge 1234 7 IN IP4 127.0.0.1\r\ns=-\r\n")
	next := []byte("v=0\r\no=- 999 1 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n")
	got := string(ContinueOrigin(prev, next))
	want := "v=0\r\no=nkbridge 1234 8 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := string(ContinueOrigin(nil, next)); got != string(next) {
		t.Fatalf("without a previous origin: %q", got)
	}
	if got := string(ContinueOrigin([]byte("o=x y\r\n"), next)); got != string(next) {
		t.Fatalf("with a short previous origin: %q", got)
	}
}

// LegCount is how many dialogs g tracks as call places (transfer.go), for leak checks.
var LegCount = (*Gateway).legCount

func (g *Gateway) legCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.legs)
}
