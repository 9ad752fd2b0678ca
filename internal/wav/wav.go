// Package wav writes 16-bit mono PCM WAV files: the header (Header) and a bounded file writer
// (Writer) used by the media engine's and the rooms' recordings and by test audio.
package wav

import (
	"bufio"
	"encoding/binary"
	"os"
)

// HeaderLen is the length of the header Header returns.
const HeaderLen = 44

// Header returns the RIFF/WAVE header of a 16-bit mono PCM file of dataLen bytes at rate Hz.
func Header(rate int, dataLen uint32) []byte {
	h := make([]byte, HeaderLen)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataLen)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataLen)
	return h
}

// Writer writes 16-bit mono PCM into a new WAV file, buffered; Close writes the final
// header. It is not safe for concurrent use.
type Writer struct {
	f    *os.File
	w    *bufio.Writer
	rate int
	n    int64 // data bytes written
	max  int64
	err  error
}

// Create creates path (it must not exist; mode 0640) for PCM at rate Hz. Samples beyond
// maxBytes of data are dropped.
func Create(path string, rate int, maxBytes int64) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, w: bufio.NewWriterSize(f, 32<<10), rate: rate, max: maxBytes}
	if _, err := w.w.Write(Header(rate, 0)); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Write appends pcm, unless that would pass the size bound or an earlier write failed.
func (w *Writer) Write(pcm []int16) {
	if w.err != nil || w.n+int64(2*len(pcm)) > w.max {
		return
	}
	var b [2]byte
	for _, v := range pcm {
		binary.LittleEndian.PutUint16(b[:], uint16(v))
		if _, err := w.w.Write(b[:]); err != nil {
			w.err = err
			return
		}
	}
	w.n += int64(2 * len(pcm))
}

// Full reports whether the size bound is reached (or a write failed): nothing more is kept.
func (w *Writer) Full() bool { return w.err != nil || w.n >= w.max }

// Close flushes, writes the header with the final length and closes the file.
func (w *Writer) Close() error {
	err := w.w.Flush()
	if err == nil {
		_, err = w.f.WriteAt(Header(w.rate, uint32(w.n)), 0)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
