package audiotest

import "math"

// DTMF returns 8 kHz-style PCM at rate of digits ('0'-'9', '*', '#', 'A'-'D'; others are
// silence) as in-band tones: each tone toneMS long with both frequencies at amplitude amp,
// followed by gapMS of silence.
func DTMF(digits string, rate float64, toneMS, gapMS int, amp float64) []int16 {
	rows := [4]float64{697, 770, 852, 941}
	cols := [4]float64{1209, 1336, 1477, 1633}
	keys := [4]string{"123A", "456B", "789C", "*0#D"}
	var out []int16
	for _, d := range digits {
		fr, fc := 0.0, 0.0
		for r, k := range keys {
			for c, kd := range k {
				if kd == d {
					fr, fc = rows[r], cols[c]
				}
			}
		}
		n := int(rate) * toneMS / 1000
		for i := 0; i < n; i++ {
			t := float64(i) / rate
			v := 0.0
			if fr > 0 {
				v = amp * (math.Sin(2*math.Pi*fr*t) + math.Sin(2*math.Pi*fc*t))
			}
			out = append(out, int16(math.Max(-32768, math.Min(32767, v))))
		}
		out = append(out, make([]int16, int(rate)*gapMS/1000)...)
	}
	return out
}
