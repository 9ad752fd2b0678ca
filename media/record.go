package media

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/codec"
)

// maxRecordBytes bounds one recording (about 18 hours of 8 kHz audio).
const maxRecordBytes = 1 << 30

// recorder writes the audio one side sends into a 16-bit 8 kHz mono WAV file.
type recorder struct {
	mu    sync.Mutex
	path  string
	f     *os.File
	w     *bufio.Writer
	dec   codec.Decoder
	decF  format
	pcm   []int16
	bytes int64
	err   error
}

func newRecorder(path string) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("media: record: %w", err)
	}
	r := &recorder{path: path, f: f, w: bufio.NewWriterSize(f, 32<<10)}
	if _, err := r.w.Write(wavHeader(0)); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func wavHeader(dataLen uint32) []byte {
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataLen)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1)
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], pcmRate)
	binary.LittleEndian.PutUint32(h[28:], pcmRate*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataLen)
	return h
}

func (r *recorder) write(f format, pkt *rtp.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil || r.err != nil || r.bytes >= maxRecordBytes {
		return
	}
	if r.dec == nil || !r.decF.same(f) {
		d, err := codec.NewDecoder(f.Name, pcmRate)
		if err != nil {
			return
		}
		r.dec, r.decF = d, f
	}
	var err error
	r.pcm, err = r.dec.Decode(r.pcm[:0], pkt.Payload)
	if err != nil {
		return
	}
	var b [2]byte
	for _, s := range r.pcm {
		binary.LittleEndian.PutUint16(b[:], uint16(s))
		if _, err := r.w.Write(b[:]); err != nil {
			r.err = err
			return
		}
	}
	r.bytes += int64(2 * len(r.pcm))
}

func (r *recorder) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.w.Flush()
	if err == nil {
		_, err = r.f.WriteAt(wavHeader(uint32(r.bytes)), 0)
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	return err
}
