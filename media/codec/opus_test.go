package codec

import (
	"errors"
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
)

// encodeTone encodes a tone at freq Hz as 20 ms frames at rate with channels channels (the
// same sine on every channel) and returns the packets and the PCM that went in (mono).
func encodeTone(t testing.TB, freq float64, rate, channels, frames int) [][]byte {
	t.Helper()
	enc, err := NewOpusEncoder(rate, channels)
	if err != nil {
		t.Fatal(err)
	}
	frame := rate / 50
	mono := audiotest.Tone(freq, float64(rate), frame*frames, 8000)
	var pkts [][]byte
	pcm := make([]int16, frame*channels)
	for f := 0; f < frames; f++ {
		for i := 0; i < frame; i++ {
			for c := 0; c < channels; c++ {
				pcm[i*channels+c] = mono[f*frame+i]
			}
		}
		buf := make([]byte, 1500)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n <= 0 || n > len(buf) {
			t.Fatalf("frame %d: packet length %d", f, n)
		}
		pkts = append(pkts, buf[:n])
	}
	return pkts
}

// TestOpusBindingToneRoundTrip: a tone encoded and decoded through the binding (48 kHz and
// 16 kHz, mono and stereo) comes out as the same tone, at about the same level.
func TestOpusBindingToneRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		rate, channels int
		freq           float64
	}{{48000, 1, 440}, {48000, 2, 1000}, {16000, 1, 700}} {
		pkts := encodeTone(t, tc.freq, tc.rate, tc.channels, 50)
		dec, err := NewOpusDecoder(tc.rate, tc.channels)
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, OpusMaxFrame*tc.channels)
		var left []int16
		for _, p := range pkts {
			n, err := dec.Decode(p, pcm)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.rate/50 {
				t.Fatalf("%+v: decoded %d samples per channel, want %d", tc, n, tc.rate/50)
			}
			for i := 0; i < n; i++ {
				left = append(left, pcm[i*tc.channels])
			}
		}
		body := left[len(left)/5:]
		f, ratio := audiotest.Dominant(body, float64(tc.rate), tc.freq, tc.freq*0.6, tc.freq*1.5, 300)
		if f != tc.freq || ratio < 20 {
			t.Errorf("%+v: dominant %v Hz (ratio %.1f), want %v", tc, f, ratio, tc.freq)
		}
		// A sine of peak 8000 has an RMS of about 5657.
		if rms := audiotest.RMS(body); rms < 4000 || rms > 7500 {
			t.Errorf("%+v: RMS %.0f, want about 5657", tc, rms)
		}
		// Concealment continues the signal for a lost packet.
		if err := dec.DecodePLC(pcm[:tc.rate/50*tc.channels]); err != nil {
			t.Errorf("%+v: PLC: %v", tc, err)
		}
	}
}

// TestOpusEncoderSettings: the bit rate cap and FEC are accepted and the cap shrinks packets.
func TestOpusEncoderSettings(t *testing.T) {
	size := func(bps int) int {
		enc, err := NewOpusEncoder(48000, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.SetInBandFEC(true); err != nil {
			t.Fatal(err)
		}
		if bps > 0 {
			if err := enc.SetBitrate(bps); err != nil {
				t.Fatal(err)
			}
		}
		tone := audiotest.Tone(440, 48000, 960*25, 8000)
		total := 0
		buf := make([]byte, 1500)
		for i := 0; i+960 <= len(tone); i += 960 {
			n, err := enc.Encode(tone[i:i+960], buf)
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
		return total
	}
	if low, high := size(8000), size(64000); low >= high {
		t.Errorf("8 kb/s gave %d bytes, 64 kb/s %d", low, high)
	}
	enc, _ := NewOpusEncoder(48000, 1)
	var oe OpusError
	if err := enc.SetBitrate(-5); !errors.As(err, &oe) {
		t.Errorf("bit rate -5: %v, want an OpusError", err)
	}
}

// TestOpusBadInput: bad arguments and garbage packets give errors, never a crash.
func TestOpusBadInput(t *testing.T) {
	for _, a := range [][2]int{{44100, 1}, {0, 1}, {-8000, 1}, {48000, 0}, {48000, 3}, {48000, -1}} {
		if _, err := NewOpusDecoder(a[0], a[1]); err == nil {
			t.Errorf("decoder %v accepted", a)
		}
		if _, err := NewOpusEncoder(a[0], a[1]); err == nil {
			t.Errorf("encoder %v accepted", a)
		}
	}
	dec, err := NewOpusDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, OpusMaxFrame)
	if _, err := dec.Decode(nil, pcm); err == nil {
		t.Error("empty packet decoded")
	}
	good := encodeTone(t, 440, 48000, 1, 1)[0]
	if _, err := dec.Decode(good, nil); err == nil {
		t.Error("decoded into no buffer")
	}
	if _, err := dec.Decode(good, pcm[:100]); err == nil {
		t.Error("a 960-sample packet decoded into 100 samples")
	}
	if err := dec.DecodePLC(nil); err == nil {
		t.Error("PLC into no buffer")
	}
	// A code-3 packet announcing 48 frames of 120 ms cannot be valid.
	if _, err := dec.Decode([]byte{0xFF, 0xFF, 0x01, 0x02}, pcm); err == nil {
		t.Error("invalid packet decoded")
	}
	enc, err := NewOpusEncoder(48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for _, n := range []int{0, 1, 100, 959 * 2} {
		if _, err := enc.Encode(make([]int16, n), buf); err == nil {
			t.Errorf("encoded %d stereo samples", n)
		}
	}
	if _, err := enc.Encode(make([]int16, 1920), nil); err == nil {
		t.Error("encoded into no buffer")
	}
	// The decoder still works after all that.
	if n, err := dec.Decode(good, pcm); err != nil || n != 960 {
		t.Errorf("after bad input: %d, %v", n, err)
	}
}

// FuzzOpusDecode: any packet into any buffer size gives samples within the buffer or an
// error, never a crash.
func FuzzOpusDecode(f *testing.F) {
	for _, p := range encodeTone(f, 440, 48000, 1, 3) {
		f.Add(p, uint16(960))
	}
	f.Add([]byte{0xFF, 0xFF, 0x01}, uint16(5760))
	f.Add([]byte{0x00}, uint16(1))
	f.Add([]byte{}, uint16(0))
	dec, err := NewOpusDecoder(48000, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte, size uint16) {
		pcm := make([]int16, int(size)%(OpusMaxFrame+1))
		n, err := dec.Decode(payload, pcm)
		if err == nil && (n < 0 || n > len(pcm)) {
			t.Fatalf("decoded %d samples into %d", n, len(pcm))
		}
		if len(pcm) > 0 {
			_ = dec.DecodePLC(pcm)
		}
	})
}

// FuzzOpusEncode: any PCM of any length into any buffer size gives a packet within the
// buffer or an error, never a crash.
func FuzzOpusEncode(f *testing.F) {
	f.Add(make([]byte, 1920), uint16(1500))
	f.Add(make([]byte, 200), uint16(1500))
	f.Add([]byte{0xFF, 0x7F, 0x00, 0x80}, uint16(1))
	enc, err := NewOpusEncoder(48000, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, size uint16) {
		pcm := make([]int16, len(raw)/2)
		for i := range pcm {
			pcm[i] = int16(raw[2*i]) | int16(raw[2*i+1])<<8
		}
		out := make([]byte, int(size)%1501)
		n, err := enc.Encode(pcm, out)
		if err == nil && (n < 0 || n > len(out)) {
			t.Fatalf("packet of %d bytes in a %d-byte buffer", n, len(out))
		}
	})
}
