package mixer

import (
	"math"
	"testing"

	"github.com/nkbridge/nkbridge/media/codec"
)

func tone(freq float64, amp float64, n, off int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(off+i)/Rate))
	}
	return out
}

// goertzel is the power of freq in pcm at rate, normalised to the signal length.
func goertzel(pcm []int16, freq float64, rate int) float64 {
	w := 2 * math.Pi * freq / float64(rate)
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s := float64(x) + c*s1 - s2
		s2, s1 = s1, s
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	return p / float64(len(pcm)) / float64(len(pcm))
}

func TestMixSumMinusSelf(t *testing.T) {
	freqs := []float64{500, 800, 1200}
	var in, out [][]int16
	for _, f := range freqs {
		in = append(in, tone(f, 5000, FrameSamples, 0))
		out = append(out, make([]int16, FrameSamples))
	}
	in = append(in, nil) // a silent participant hears everyone
	out = append(out, make([]int16, FrameSamples))
	sum := make([]int32, FrameSamples)
	Mix(in, out, sum)
	for i := range freqs {
		for j, f := range freqs {
			p := goertzel(out[i], f, Rate)
			if i == j && p > 1 {
				t.Errorf("participant %d hears itself (%.0f Hz power %.1f)", i, f, p)
			}
			if i != j && p < 1e5 {
				t.Errorf("participant %d does not hear %.0f Hz (power %.1f)", i, f, p)
			}
		}
	}
	for _, f := range freqs {
		if goertzel(out[3], f, Rate) < 1e5 {
			t.Errorf("silent participant misses %.0f Hz", f)
		}
	}
	for k := range sum {
		if want := int32(in[0][k]) + int32(in[1][k]) + int32(in[2][k]); sum[k] != want {
			t.Fatalf("sum[%d] = %d, want %d", k, sum[k], want)
		}
	}
}

func TestMixClips(t *testing.T) {
	loud := make([]int16, FrameSamples)
	neg := make([]int16, FrameSamples)
	for i := range loud {
		loud[i] = 30000
		neg[i] = -30000
	}
	in := [][]int16{loud, loud, loud, neg, neg, neg}
	out := make([][]int16, len(in))
	for i := range out {
		out[i] = make([]int16, FrameSamples)
	}
	Mix(in[:3], out[:3], make([]int32, FrameSamples))
	for i := 0; i < 3; i++ {
		if out[i][0] != math.MaxInt16 {
			t.Errorf("out %d = %d, want saturation at 32767 (no wrap)", i, out[i][0])
		}
	}
	Mix(in[3:], out[3:], make([]int32, FrameSamples))
	if out[3][0] != math.MinInt16 {
		t.Errorf("negative: %d, want -32768", out[3][0])
	}
}

func TestJitterBufferReorderLossDup(t *testing.T) {
	j := NewJitterBuffer(3, 10)
	push := func(seq uint16) { j.Push(Packet{Seq: seq, TS: uint32(seq) * 960, Payload: []byte{byte(seq)}}) }
	push(65534)
	if _, st := j.Pop(); st != PopEmpty {
		t.Fatal("played before priming")
	}
	push(0) // 65535 is late, 0 wraps
	push(65535)
	push(65535) // duplicate
	if j.Duplicate != 1 {
		t.Errorf("duplicates %d", j.Duplicate)
	}
	push(2) // 1 lost
	var got []uint16
	var sts []int
	for i := 0; i < 5; i++ {
		p, st := j.Pop()
		sts = append(sts, st)
		if st == PopOK {
			got = append(got, p.Seq)
		}
	}
	want := []uint16{65534, 65535, 0, 2}
	if len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("order %v, want %v (statuses %v)", got, want, sts)
	}
	if sts[3] != PopLost || j.Lost != 1 {
		t.Errorf("loss of 1 not reported: %v lost=%d", sts, j.Lost)
	}
	push(1) // too late now
	if j.Late != 1 {
		t.Errorf("late %d", j.Late)
	}
	for i := 0; i < 20; i++ { // overflow keeps the newest
		push(uint16(3 + i))
	}
	if j.Len() != 10 || j.Overflow == 0 {
		t.Errorf("len %d overflow %d", j.Len(), j.Overflow)
	}
}

// TestSourcePLC: a G.711 and an Opus source conceal a lost packet (the frame is not silent,
// it carries the tone) and go silent after a long gap.
func TestSourcePLC(t *testing.T) {
	for _, name := range []string{codec.PCMU, codec.Opus} {
		t.Run(name, func(t *testing.T) {
			src, err := NewSource(name, 2, 20)
			if err != nil {
				t.Fatal(err)
			}
			var enc codec.Encoder
			rate := 8000
			if name == codec.Opus {
				rate = Rate
			}
			enc, err = codec.NewEncoder(name, rate)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			pkt := func(i int) Packet {
				n := rate / 50
				pcm := make([]int16, n)
				for k := range pcm {
					pcm[k] = int16(6000 * math.Sin(2*math.Pi*1000*float64(i*n+k)/float64(rate)))
				}
				nb, err := enc.Encode(buf, pcm)
				if err != nil {
					t.Fatal(err)
				}
				return Packet{Seq: uint16(i), TS: uint32(i * n), Payload: append([]byte(nil), buf[:nb]...)}
			}
			out := make([]int16, FrameSamples)
			for i := 0; i < 10; i++ {
				src.Push(pkt(i))
				src.Frame(out)
			}
			// packet 10 is lost
			src.Push(pkt(11))
			src.Push(pkt(12))
			var frames [][]int16
			for i := 0; i < 3; i++ {
				ok := src.Frame(out)
				if !ok {
					t.Fatalf("frame %d silent", i)
				}
				frames = append(frames, append([]int16(nil), out...))
			}
			if src.Concealed == 0 {
				t.Fatal("no concealment for a lost packet")
			}
			for i, f := range frames {
				if p, q := goertzel(f, 1000, Rate), goertzel(f, 2500, Rate); p < 1e4 || p < 10*q {
					t.Errorf("frame %d around the loss lacks the tone (power %.0f, off-tone %.0f)", i, p, q)
				}
			}
			// A long gap: concealment fades, then silence.
			silent := false
			for i := 0; i < 20; i++ {
				if !src.Frame(out) {
					silent = true
				}
			}
			if !silent {
				t.Error("source never went silent without packets")
			}
		})
	}
}

func TestTalkDetector(t *testing.T) {
	var d TalkDetector
	loud := LevelDB(tone(800, 8000, FrameSamples, 0))
	quiet := LevelDB(make([]int16, FrameSamples))
	if loud < -20 || quiet != -100 {
		t.Fatalf("levels %.1f %.1f", loud, quiet)
	}
	changes := 0
	for i := 0; i < 10; i++ {
		if c, on := d.Push(loud); c {
			changes++
			if !on || i != TalkOnFrames-1 {
				t.Errorf("talking at frame %d (%v)", i, on)
			}
		}
	}
	for i := 0; i < 40; i++ {
		if c, on := d.Push(quiet); c {
			changes++
			if on || i != TalkOffFrame-1 {
				t.Errorf("stopped at frame %d (%v)", i, on)
			}
		}
	}
	if changes != 2 {
		t.Errorf("%d changes, want 2", changes)
	}
}

func TestSinkResample(t *testing.T) {
	s, err := NewSink(codec.PCMU)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := s.Encode(buf, tone(1000, 8000, FrameSamples, 0))
	if err != nil || n != 160 || s.Step != 160 {
		t.Fatalf("pcmu frame: %d bytes (%v), step %d", n, err, s.Step)
	}
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = codec.UlawToLinear(buf[i])
	}
	if p1, p2 := goertzel(pcm, 1000, 8000), goertzel(pcm, 2000, 8000); p1 < 100*p2 || p1 < 1e5 {
		t.Errorf("1000 Hz lost in 48k->8k: %.0f vs %.0f", p1, p2)
	}
	if _, err := NewSink("g729"); err == nil {
		t.Error("g729 sink accepted")
	}
}

func BenchmarkMixPerParticipant(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		b.Run(itoa(n), func(b *testing.B) {
			in := make([][]int16, n)
			out := make([][]int16, n)
			for i := range in {
				in[i] = tone(300+float64(i)*50, 3000, FrameSamples, 0)
				out[i] = make([]int16, FrameSamples)
			}
			sum := make([]int32, FrameSamples)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Mix(in, out, sum)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/participant-frame")
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestJitterBufferDrains: a burst far above the target is played down to it (latency bound).
func TestJitterBufferDrains(t *testing.T) {
	j := NewJitterBuffer(3, 30)
	for i := 0; i < 20; i++ {
		j.Push(Packet{Seq: uint16(i), Payload: []byte{1}})
	}
	for i := 0; i < 10; i++ {
		if _, st := j.Pop(); st != PopOK {
			t.Fatalf("pop %d: status %d", i, st)
		}
	}
	if j.Len() > 2*3+2 || j.Drained == 0 {
		t.Errorf("after the burst %d queued, %d drained", j.Len(), j.Drained)
	}
}

// BenchmarkMixerTick is one full 20 ms mixer tick for n participants: jitter buffer, decode
// (Opus at 48 kHz or PCMU upsampled), mix-minus, encode per participant. ns/participant-frame
// divided into 20 ms gives the share of one core a participant costs.
func BenchmarkMixerTick(b *testing.B) {
	for _, name := range []string{codec.Opus, codec.PCMU} {
		for _, n := range []int{3, 10, 30} {
			b.Run(name+"/participants="+itoa(n), func(b *testing.B) { benchTick(b, name, n) })
		}
	}
}

func benchTick(b *testing.B, name string, n int) {
	rate := 8000
	if name == codec.Opus {
		rate = Rate
	}
	enc, err := codec.NewEncoder(name, rate)
	if err != nil {
		b.Fatal(err)
	}
	// Pre-encoded 1 s of tone per participant, looped.
	frames := make([][][]byte, n)
	buf := make([]byte, 1500)
	for i := range frames {
		for k := 0; k < 50; k++ {
			pcm := make([]int16, rate/50)
			for j := range pcm {
				pcm[j] = int16(4000 * math.Sin(2*math.Pi*(300+50*float64(i))*float64(k*len(pcm)+j)/float64(rate)))
			}
			nb, err := enc.Encode(buf, pcm)
			if err != nil {
				b.Fatal(err)
			}
			frames[i] = append(frames[i], append([]byte(nil), buf[:nb]...))
		}
	}
	srcs := make([]*Source, n)
	sinks := make([]*Sink, n)
	in := make([][]int16, n)
	out := make([][]int16, n)
	pcm := make([][]int16, n)
	for i := range srcs {
		if srcs[i], err = NewSource(name, 1, 10); err != nil {
			b.Fatal(err)
		}
		if sinks[i], err = NewSink(name); err != nil {
			b.Fatal(err)
		}
		pcm[i] = make([]int16, FrameSamples)
		out[i] = make([]int16, FrameSamples)
	}
	sum := make([]int32, FrameSamples)
	b.ResetTimer()
	for t := 0; t < b.N; t++ {
		for i, s := range srcs {
			s.Push(Packet{Seq: uint16(t), TS: uint32(t * 960), Payload: frames[i][t%50]})
			if s.Frame(pcm[i]) {
				in[i] = pcm[i]
			} else {
				in[i] = nil
			}
		}
		Mix(in, out, sum)
		for i, s := range sinks {
			if _, err := s.Encode(buf, out[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
	b.ReportMetric(per, "ns/participant-frame")
	b.ReportMetric(20e6/per, "participants/core")
}
