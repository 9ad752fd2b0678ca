package room

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/mixer"
)

// Parked is a session on hold: what it sends is dropped, it hears silence or a looped
// announcement.
type Parked struct {
	m    *Manager
	p    *participant
	loop []int16
	pos  int
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type dropTap struct{}

func (dropTap) Media(bool, media.Format, *rtp.Header, []byte) {}
func (dropTap) KeyframeRequest()                              {}

// Park holds ep: its media is discarded and it hears loop (PCM at 48 kHz, repeated; nil or
// empty: silence) in its own codec.
func (m *Manager) Park(ep Endpoint, loop []int16) (*Parked, error) {
	audio, _ := ep.CallerFormats()
	sink, pt, err := pickSink(audio, "")
	if err != nil {
		return nil, err
	}
	if err := ep.Attach(dropTap{}); err != nil {
		return nil, err
	}
	pk := &Parked{p: &participant{id: ep.ID(), ep: ep, sink: sink, pt: pt,
		out: make([]int16, mixer.FrameSamples), encBuf: make([]byte, 1500)},
		m: m, loop: loop, stop: make(chan struct{}), done: make(chan struct{})}
	pk.p.seq, pk.p.ts = m.startPos(ep, sink.ClockRate)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go pk.run(&m.wg)
	return pk, nil
}

func (pk *Parked) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(pk.done)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-pk.stop:
			return
		case <-pk.p.ep.Done():
			return
		case <-t.C:
		}
		f := pk.p.out
		clear(f)
		if len(pk.loop) > 0 {
			for i := range f {
				f[i] = pk.loop[pk.pos]
				pk.pos = (pk.pos + 1) % len(pk.loop)
			}
		}
		pk.p.send(f)
	}
}

// Stop ends the parking (the session itself goes on); it waits for the player to end and
// keeps the stream's position for the next writer (Manager.Position).
func (pk *Parked) Stop() {
	pk.once.Do(func() { close(pk.stop) })
	<-pk.done
	if pos, ok := pk.p.position(); ok {
		pk.m.savePos(pk.p.id, pos)
	}
}

// LoadWAV reads a 16-bit PCM WAV file (mono or stereo, any rate) as mono PCM at 48 kHz, for
// Park. Files over 50 MB are refused.
func LoadWAV(path string) ([]int16, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 50<<20+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 50<<20 {
		return nil, errors.New("room: WAV file too large")
	}
	return ParseWAV(data)
}

// ParseWAV decodes a 16-bit PCM WAV (mono or stereo, 8-48 kHz) to mono PCM at 48 kHz.
func ParseWAV(data []byte) ([]int16, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, errors.New("room: not a WAV file")
	}
	var rate, channels, bits int
	var pcm []byte
	for off := 12; off+8 <= len(data); {
		id := string(data[off : off+4])
		n64 := int64(binary.LittleEndian.Uint32(data[off+4:]))
		body := data[off+8:]
		if n64 > int64(len(body)) {
			n64 = int64(len(body))
		}
		n := int(n64)
		switch id {
		case "fmt ":
			if n < 16 {
				return nil, errors.New("room: bad WAV fmt chunk")
			}
			if binary.LittleEndian.Uint16(body) != 1 {
				return nil, errors.New("room: WAV is not PCM")
			}
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
		case "data":
			pcm = body[:n]
		}
		off += 8 + n + n%2
	}
	if bits != 16 || channels < 1 || channels > 2 || rate < 8000 || rate > 48000 || pcm == nil {
		return nil, fmt.Errorf("room: unsupported WAV (want 16-bit PCM, 1-2 channels, 8-48 kHz; got %d bits, %d ch, %d Hz)", bits, channels, rate)
	}
	frames := len(pcm) / (2 * channels)
	if frames == 0 {
		return nil, errors.New("room: WAV has no audio")
	}
	mono := make([]int16, frames)
	for i := range mono {
		mono[i] = int16(binary.LittleEndian.Uint16(pcm[i*2*channels:]))
	}
	if rate == mixer.Rate {
		return mono, nil
	}
	out := make([]int16, frames*mixer.Rate/rate)
	for i := range out {
		pos := float64(i) * float64(rate) / mixer.Rate
		j := int(pos)
		fr := pos - float64(j)
		a := float64(mono[min(j, frames-1)])
		b := float64(mono[min(j+1, frames-1)])
		out[i] = int16(a + (b-a)*fr)
	}
	return out, nil
}
