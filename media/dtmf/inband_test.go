package dtmf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

const allDigits = "123A456B789C*0#D"

// freqsOf returns a digit's row and column frequencies.
func freqsOf(t testing.TB, d rune) (float64, float64) {
	t.Helper()
	for r := range keypad {
		for c := range keypad[r] {
			if keypad[r][c] == d {
				return rowHz[r], colHz[c]
			}
		}
	}
	t.Fatalf("no digit %q", d)
	return 0, 0
}

// synth is a test signal under construction (8 kHz float samples).
type synth struct {
	s     []float64
	phase float64
}

// tone appends ms of the two tones at amplitudes a1 and a2 (of full scale 32767).
func (y *synth) tone(f1, a1, f2, a2 float64, ms int) {
	n := ms * 8
	for i := 0; i < n; i++ {
		t := (y.phase + float64(i)) / 8000
		y.s = append(y.s, 32767*(a1*math.Sin(2*math.Pi*f1*t)+a2*math.Sin(2*math.Pi*f2*t)))
	}
	y.phase += float64(n)
}

func (y *synth) digit(t testing.TB, d rune, dbfs, twistDB float64, ms int) {
	r, c := freqsOf(t, d)
	a := math.Pow(10, dbfs/20)
	y.tone(r, a, c, a*math.Pow(10, twistDB/20), ms)
}

func (y *synth) silence(ms int) { y.tone(0, 0, 0, 0, ms) }

// noise adds white noise of rms dbfs (seeded).
func (y *synth) noise(dbfs float64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	a := 32767 * math.Pow(10, dbfs/20)
	for i := range y.s {
		y.s[i] += a * rng.NormFloat64()
	}
}

func (y *synth) pcm() []int16 {
	out := make([]int16, len(y.s))
	for i, v := range y.s {
		out[i] = int16(max(-32768, min(32767, math.Round(v))))
	}
	return out
}

// detect runs a detector over pcm in 20 ms frames.
func detect(pcm []int16) string {
	var d Inband
	var b strings.Builder
	for len(pcm) > 0 {
		n := min(160, len(pcm))
		d.Push(pcm[:n], func(r rune) { b.WriteRune(r) })
		pcm = pcm[n:]
	}
	return b.String()
}

// TestInbandAllDigits: every digit, at levels from -3 to -30 dBFS per tone, with twists within
// the limits, in noise 20 dB under the tones, is found exactly once per tone.
func TestInbandAllDigits(t *testing.T) {
	for _, lvl := range []float64{-9, -20, -30} {
		for _, twist := range []float64{-6, 0, 3} {
			var y synth
			y.silence(50)
			for _, d := range allDigits {
				y.digit(t, d, lvl, twist, 60)
				y.silence(60)
			}
			y.noise(lvl-20, uint64(-lvl*10+twist))
			if got := detect(y.pcm()); got != allDigits {
				t.Errorf("level %v dBFS, twist %+v dB: got %q, want %q", lvl, twist, got, allDigits)
			}
		}
	}
	var y synth // loud: -3 dBFS per tone, the sum near full scale
	for _, d := range allDigits {
		y.digit(t, d, -7, 0, 50)
		y.silence(50)
	}
	if got := detect(y.pcm()); got != allDigits {
		t.Errorf("loud: got %q", got)
	}
}

// TestInbandDurations: tones of 40 ms and more are found, tones of 20 ms are not; a long
// tone is one digit, the same digit after a 40 ms pause is another.
func TestInbandDurations(t *testing.T) {
	for _, c := range []struct {
		ms   int
		want string
	}{{20, ""}, {40, "5"}, {50, "5"}, {2000, "5"}} {
		for _, offset := range []int{0, 3, 7, 11} { // the tone's start against the block grid
			var y synth
			y.silence(offset + 20)
			y.digit(t, '5', -15, 0, c.ms)
			y.silence(60)
			if got := detect(y.pcm()); got != c.want {
				t.Errorf("%d ms tone at offset %d ms: got %q, want %q", c.ms, offset, got, c.want)
			}
		}
	}
	var y synth
	for i := 0; i < 3; i++ {
		y.digit(t, '7', -15, 0, 60)
		y.silence(40)
	}
	if got := detect(y.pcm()); got != "777" {
		t.Errorf("7 three times with 40 ms pauses: %q", got)
	}
}

// TestInbandRejects: what is not a digit is not reported: twist beyond the limits, a single
// tone, a steady 1 kHz tone, tones too weak, speech-like harmonic sounds, noise, a tone pair off
// the DTMF frequencies.
func TestInbandRejects(t *testing.T) {
	cases := map[string]func(y *synth){
		"reverse twist 8 dB": func(y *synth) { y.digit(t, '5', -15, 8, 200) },
		"normal twist 12 dB": func(y *synth) { y.digit(t, '5', -12, -12, 200) },
		"row tone alone":     func(y *synth) { y.tone(770, 0.2, 0, 0, 500) },
		"1 kHz steady":       func(y *synth) { y.tone(1000, 0.5, 0, 0, 5000) },
		"1 kHz quiet":        func(y *synth) { y.tone(1000, 0.01, 0, 0, 2000) },
		"too weak":           func(y *synth) { y.digit(t, '5', -45, 0, 200) },
		"off frequencies":    func(y *synth) { y.tone(740, 0.2, 1270, 0.2, 500) },
		"white noise": func(y *synth) {
			y.silence(3000)
			y.noise(-15, 7)
		},
		"vowels": func(y *synth) { // harmonic series with formant-like envelopes, gliding pitch
			for k, f0 := range []float64{110, 140, 190, 230, 120, 175, 210} {
				n := 400 * 8
				start := len(y.s)
				y.silence(400)
				for h := 1; float64(h)*f0 < 3800; h++ {
					f := float64(h) * f0
					env := 0.3*math.Exp(-math.Pow((f-700)/200, 2)) + 0.2*math.Exp(-math.Pow((f-1200-float64(k)*60)/250, 2)) + 0.05
					for i := 0; i < n; i++ {
						tt := float64(i) / 8000
						glide := 1 + 0.05*math.Sin(2*math.Pi*3*tt)
						y.s[start+i] += 32767 * 0.25 * env * math.Sin(2*math.Pi*f*glide*tt+float64(h))
					}
				}
			}
		},
	}
	for name, f := range cases {
		var y synth
		f(&y)
		if got := detect(y.pcm()); got != "" {
			t.Errorf("%s: reported %q", name, got)
		}
	}
}

// TestInbandLevelSweepAndNoise: a digit string in stronger noise (10 dB SNR) and at slowly
// changing levels is still found exactly.
func TestInbandLevelSweepAndNoise(t *testing.T) {
	var y synth
	for i, d := range allDigits {
		y.digit(t, d, -8-float64(i)*1.3, float64(i%5)-2, 70)
		y.silence(70)
	}
	y.noise(-38, 42)
	if got := detect(y.pcm()); got != allDigits {
		t.Errorf("got %q, want %q", got, allDigits)
	}
}

// FuzzInband: any PCM is analysed without panic and yields only digits.
func FuzzInband(f *testing.F) {
	var y synth
	y.digit(f, '9', -10, 0, 60)
	b := make([]byte, 2*len(y.pcm()))
	for i, v := range y.pcm() {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	f.Add(b)
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm := make([]int16, len(b)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
		var d Inband
		for len(pcm) > 0 {
			n := min(1+int(pcm[0]&0xff), len(pcm))
			d.Push(pcm[:n], func(r rune) {
				if !strings.ContainsRune(allDigits, r) {
					t.Fatalf("reported %q", r)
				}
			})
			pcm = pcm[n:]
		}
	})
}

// BenchmarkInband: the detector's cost per 20 ms frame (160 samples) of a digit in noise.
func BenchmarkInband(b *testing.B) {
	var y synth
	for _, d := range allDigits {
		y.digit(b, d, -12, 0, 60)
		y.silence(60)
	}
	y.noise(-40, 3)
	pcm := y.pcm()
	frames := len(pcm) / 160
	var d Inband
	emit := func(rune) {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % frames
		d.Push(pcm[k*160:(k+1)*160], emit)
	}
}
