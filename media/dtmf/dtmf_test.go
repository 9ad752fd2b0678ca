package dtmf

import "testing"

func TestRoundTripAndDetect(t *testing.T) {
	ev := Event{Code: 11, End: true, Volume: 10, Duration: 1280}
	got, err := Parse(ev.Marshal())
	if err != nil || got != ev {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := Parse([]byte{1, 2}); err == nil {
		t.Fatal("short payload accepted")
	}
	pk, err := Generate('5', 100, 20, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if len(pk) != 4+3 || !pk[0].Marker || pk[1].Marker {
		t.Fatalf("packets: %+v", pk)
	}
	last, _ := Parse(pk[len(pk)-1].Payload)
	if !last.End || last.Duration != 800 || last.Code != 5 {
		t.Fatalf("end packet %+v", last)
	}
	var d Detector
	var digits []rune
	for _, ts := range []uint32{1000, 5000} {
		for _, p := range pk {
			if r, ok := d.Push(ts, p.Payload); ok {
				digits = append(digits, r)
			}
		}
	}
	if string(digits) != "55" {
		t.Fatalf("detected %q", string(digits))
	}
	for _, r := range "0123456789*#ABCD" {
		c, err := CodeOf(r)
		if err != nil || Digit(c) != r {
			t.Fatalf("%c: %d %v", r, c, err)
		}
	}
	if _, err := CodeOf('x'); err == nil {
		t.Fatal("x accepted")
	}
	if _, err := Generate('1', 10, 20, 8000); err == nil {
		t.Fatal("too short accepted")
	}
}
