package dtmf

import "math"

// In-band DTMF: digits carried as audio tones (for peers that negotiated no telephone-event),
// found with the Goertzel algorithm in 8 kHz 16-bit PCM.
//
// The audio is cut into blocks of InbandBlock samples (12.75 ms). In each block the power at
// the 8 DTMF frequencies is measured; the block holds a digit when
//   - the strongest row and column tones are both above the level floor (about -41 dBFS each),
//   - their twist is within the standard limits (a column up to 4 dB stronger than the row,
//     "reverse twist", or up to 8 dB weaker, "normal twist"),
//   - each is at least 8 dB stronger than every other tone of its group, and
//   - the two tones carry most of the block's energy (speech, music and noise spread theirs).
//
// A digit is reported once it held for two blocks in a row (at least 25.5 ms of tone: tones
// of 38.25 ms or more are always found, tones under 25.5 ms never); it must then be absent for
// two blocks (25.5 ms) before the same digit counts again, so that a tone with one disturbed
// block is not reported twice.

// InbandRate is the PCM sample rate the in-band detector takes.
const InbandRate = 8000

// InbandBlock is the number of samples of one analysis block.
const InbandBlock = 102

var (
	rowHz = [4]float64{697, 770, 852, 941}
	colHz = [4]float64{1209, 1336, 1477, 1633}
	// keypad by row then column
	keypad = [4][4]rune{
		{'1', '2', '3', 'A'},
		{'4', '5', '6', 'B'},
		{'7', '8', '9', 'C'},
		{'*', '0', '#', 'D'},
	}
	goertzelCoef = func() (c [8]float32) {
		for i, f := range append(rowHz[:], colHz[:]...) {
			c[i] = float32(2 * math.Cos(2*math.Pi*f/InbandRate))
		}
		return c
	}()
)

// Detection thresholds (powers as Goertzel outputs over one block).
const (
	// minTonePower: a tone of amplitude a gives about (a·N/2)²; a = 300 (-40.8 dBFS, about
	// -37.6 dBm0 in G.711) is the floor.
	minTonePower = (300 * InbandBlock / 2) * (300 * InbandBlock / 2)
	normalTwist  = 6.31 // 8 dB: the column tone may be this much weaker than the row tone
	reverseTwist = 2.51 // 4 dB: or this much stronger
	relPeak      = 6.31 // 8 dB over the other tones of its group
	toneShare    = 0.65 // share of the block's energy the two tones must carry
	energyScale  = 2.0 / InbandBlock
)

// Inband finds DTMF digits in 8 kHz PCM. The zero value is ready; it is not safe for
// concurrent use.
type Inband struct {
	block   [InbandBlock]float32
	n       int
	prev    rune // the previous block's digit (0: none)
	current rune // the digit reported and still held (0: none)
}

// Push analyses pcm (8 kHz mono, any length; blocks continue across calls) and calls emit for
// each digit found ('0'-'9', '*', '#', 'A'-'D').
func (d *Inband) Push(pcm []int16, emit func(digit rune)) {
	for len(pcm) > 0 {
		k := copy16(d.block[d.n:], pcm)
		d.n += k
		pcm = pcm[k:]
		if d.n < InbandBlock {
			return
		}
		d.n = 0
		d.step(blockDigit(&d.block), emit)
	}
}

// Reset forgets the audio seen so far (after a gap in the stream, a codec change).
func (d *Inband) Reset() { *d = Inband{} }

func (d *Inband) step(c rune, emit func(rune)) {
	if c == d.prev {
		switch {
		case c != 0 && c != d.current:
			d.current = c
			emit(c)
		case c == 0:
			d.current = 0
		}
	}
	d.prev = c
}

func copy16(dst []float32, src []int16) int {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		dst[i] = float32(src[i])
	}
	return n
}

// blockDigit is the digit one block holds, or 0.
func blockDigit(b *[InbandBlock]float32) rune {
	p := goertzel8(b)
	r, rp := strongest(p[0:4])
	c, cp := strongest(p[4:8])
	if rp < minTonePower || cp < minTonePower {
		return 0
	}
	if cp > rp*reverseTwist || rp > cp*normalTwist {
		return 0
	}
	for i := 0; i < 4; i++ {
		if (i != r && p[i]*relPeak > rp) || (i != c && p[4+i]*relPeak > cp) {
			return 0
		}
	}
	var energy float32
	for _, x := range b {
		energy += x * x
	}
	if (rp+cp)*energyScale < toneShare*energy {
		return 0
	}
	return keypad[r][c]
}

// goertzel8 is the power of the 8 DTMF frequencies over a block (Goertzel: coef =
// 2·cos(2πf/rate)), the 8 filters run side by side so that their recurrences overlap.
func goertzel8(b *[InbandBlock]float32) (p [8]float32) {
	c := &goertzelCoef
	var a1, a2, b1, b2, c1, c2, d1, d2, e1, e2, f1, f2, g1, g2, h1, h2 float32
	for _, x := range b {
		a1, a2 = x+c[0]*a1-a2, a1
		b1, b2 = x+c[1]*b1-b2, b1
		c1, c2 = x+c[2]*c1-c2, c1
		d1, d2 = x+c[3]*d1-d2, d1
		e1, e2 = x+c[4]*e1-e2, e1
		f1, f2 = x+c[5]*f1-f2, f1
		g1, g2 = x+c[6]*g1-g2, g1
		h1, h2 = x+c[7]*h1-h2, h1
	}
	pw := func(s1, s2, k float32) float32 { return s1*s1 + s2*s2 - k*s1*s2 }
	return [8]float32{pw(a1, a2, c[0]), pw(b1, b2, c[1]), pw(c1, c2, c[2]), pw(d1, d2, c[3]),
		pw(e1, e2, c[4]), pw(f1, f2, c[5]), pw(g1, g2, c[6]), pw(h1, h2, c[7])}
}

func strongest(p []float32) (int, float32) {
	best := 0
	for i := 1; i < len(p); i++ {
		if p[i] > p[best] {
			best = i
		}
	}
	return best, p[best]
}
