package cdr

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The spool is a directory of append-only segment files and one ack file per consumer:
//
//	seg-00000000000000000001.log   records 1, 2, ... (the name is the first record's sequence)
//	seg-00000000000000000742.log   records 742, ...
//	ack-<consumer>                 the sequence of the consumer's next record (all below it done)
//
// A record is a frame: 4 bytes payload length, 4 bytes CRC-32C of the payload (both big
// endian), the payload. Opening a spool checks the last segment and cuts a torn or corrupt
// tail (a crash in the middle of a write) at the last whole frame; every earlier record
// stays. Ack files are replaced atomically (write, fsync, rename). A segment is removed when
// every consumer is past its last record.

const frameHeader = 8

// maxFrame bounds a payload (a record is a few KiB).
const maxFrame = 1 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Errors of the spool.
var (
	ErrSpoolFull   = errors.New("cdr: spool full")
	ErrSpoolClosed = errors.New("cdr: spool closed")
	errTorn        = errors.New("cdr: torn or corrupt frame")
)

// appendFrame appends payload's frame to dst.
func appendFrame(dst, payload []byte) []byte {
	var h [frameHeader]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:8], crc32.Checksum(payload, crcTable))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// readFrame reads one frame from r (io.EOF at a clean end, errTorn on a partial or corrupt
// one).
func readFrame(r io.Reader) ([]byte, int, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		return nil, 0, errTorn
	}
	size := binary.BigEndian.Uint32(h[0:4])
	if size > maxFrame {
		return nil, 0, errTorn
	}
	p := make([]byte, size)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, 0, errTorn
	}
	if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(h[4:8]) {
		return nil, 0, errTorn
	}
	return p, frameHeader + int(size), nil
}

// SpoolOptions configures a spool.
type SpoolOptions struct {
	MaxBytes     int64 // Append refuses (ErrSpoolFull) beyond this many bytes on disk; 0: no limit
	SegmentBytes int64 // a segment is closed past this size (default 4 MiB)
	// Fsync: Sync and ack writes call fsync. Without it the records survive a crash of
	// the process (they are in the kernel's page cache) but not one of the machine.
	Fsync bool
}

type segment struct {
	base uint64 // sequence of its first record
	n    uint64 // records in it
	size int64
}

// Spool is a durable queue of records with independent consumers (Cursor), each reading
// every record in order and acknowledging it. Its methods are safe for concurrent use.
type Spool struct {
	dir  string
	opts SpoolOptions

	mu        sync.Mutex
	segs      []segment // oldest first; the last one is open for writing
	w         *os.File
	bytes     int64
	cursors   map[string]*Cursor
	notify    chan struct{} // closed and replaced on every append
	closed    bool
	recovered int64 // bytes cut from a torn tail at open
}

func segName(base uint64) string { return fmt.Sprintf("seg-%020d.log", base) }

// OpenSpool opens (creating it if needed) the spool in dir and recovers a torn tail.
func OpenSpool(dir string, o SpoolOptions) (*Spool, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 4 << 20
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, opts: o, cursors: map[string]*Cursor{}, notify: make(chan struct{})}
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "seg-"), ".log"), 10, 64)
		if err != nil || base == 0 {
			continue
		}
		s.segs = append(s.segs, segment{base: base})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].base < s.segs[j].base })
	for i := range s.segs {
		if err := s.scan(&s.segs[i], i == len(s.segs)-1); err != nil {
			return nil, err
		}
		s.bytes += s.segs[i].size
	}
	if len(s.segs) == 0 {
		s.segs = []segment{{base: 1}}
	}
	last := s.segs[len(s.segs)-1]
	s.w, err = os.OpenFile(filepath.Join(dir, segName(last.base)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// scan counts a segment's whole frames; in the last one, a torn tail is cut off.
func (s *Spool) scan(seg *segment, last bool) error {
	path := filepath.Join(s.dir, segName(seg.base))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		_, n, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			st, _ := f.Stat()
			if last && st != nil {
				s.recovered += st.Size() - off
				if err := os.Truncate(path, off); err != nil {
					return err
				}
			}
			break
		}
		off += int64(n)
		seg.n++
	}
	seg.size = off
	return nil
}

// Recovered is the number of bytes of a torn tail cut off at open.
func (s *Spool) Recovered() int64 { return s.recovered }

// Bytes is the size of the spool's segments.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Append writes records (one frame each) and returns the sequence of the first. It does not
// fsync: call Sync once for a batch.
func (s *Spool) Append(payloads ...[]byte) (uint64, error) {
	var buf []byte
	for _, p := range payloads {
		if len(p) > maxFrame {
			return 0, fmt.Errorf("cdr: record of %d bytes is too big", len(p))
		}
		buf = appendFrame(buf, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrSpoolClosed
	}
	if s.opts.MaxBytes > 0 && s.bytes+int64(len(buf)) > s.opts.MaxBytes {
		return 0, ErrSpoolFull
	}
	cur := &s.segs[len(s.segs)-1]
	if cur.size >= s.opts.SegmentBytes && cur.n > 0 {
		if err := s.rollLocked(); err != nil {
			return 0, err
		}
		cur = &s.segs[len(s.segs)-1]
	}
	if _, err := s.w.Write(buf); err != nil {
		// a partial write leaves a torn frame: cut it so the next record is readable
		_ = s.w.Truncate(cur.size)
		return 0, err
	}
	first := cur.base + cur.n
	cur.n += uint64(len(payloads))
	cur.size += int64(len(buf))
	s.bytes += int64(len(buf))
	close(s.notify)
	s.notify = make(chan struct{})
	return first, nil
}

func (s *Spool) rollLocked() error {
	cur := s.segs[len(s.segs)-1]
	if s.opts.Fsync {
		if err := s.w.Sync(); err != nil {
			return err
		}
	}
	base := cur.base + cur.n
	w, err := os.OpenFile(filepath.Join(s.dir, segName(base)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_ = s.w.Close()
	s.w = w
	s.segs = append(s.segs, segment{base: base})
	if s.opts.Fsync {
		syncDir(s.dir)
	}
	return nil
}

// Sync makes the appended records durable (fsync) when the spool's Fsync option is on.
func (s *Spool) Sync() error {
	if !s.opts.Fsync {
		return nil
	}
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	return w.Sync()
}

// Next is the sequence the next appended record gets.
func (s *Spool) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.segs[len(s.segs)-1]
	return cur.base + cur.n
}

// Close closes the spool; cursors' Next return ErrSpoolClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.notify)
	for _, c := range s.cursors {
		c.closeFile()
	}
	return s.w.Close()
}

// Cursor returns consumer name's cursor (name: [a-z0-9_-], its ack file ack-<name>), at
// its first record not acknowledged.
func (s *Spool) Cursor(name string) (*Cursor, error) {
	for _, ch := range name {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return nil, fmt.Errorf("cdr: bad consumer name %q", name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cursors[name]; ok {
		return c, nil
	}
	c := &Cursor{s: s, name: name, next: s.segs[0].base}
	b, err := os.ReadFile(filepath.Join(s.dir, "ack-"+name))
	if err == nil {
		if n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); perr == nil && n > c.next {
			c.next = n
		}
	}
	// an ack past the end (segments lost: removed by hand, or cut after a machine crash
	// without fsync) would skip the records written from now on
	if last := s.segs[len(s.segs)-1]; c.next > last.base+last.n {
		c.next = last.base + last.n
	}
	c.acked = c.next
	s.cursors[name] = c
	return c, nil
}

// Pending is the number of records not yet acknowledged by consumer name (0 if unknown).
func (s *Spool) Pending(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cursors[name]
	if !ok {
		return 0
	}
	cur := s.segs[len(s.segs)-1]
	end := cur.base + cur.n
	if c.acked >= end {
		return 0
	}
	return end - c.acked
}

// Cursor reads a spool's records in order for one consumer. It is used by one goroutine.
type Cursor struct {
	s    *Spool
	name string

	// guarded by s.mu
	acked uint64 // all records below are acknowledged

	// the consumer goroutine's
	next  uint64 // sequence of the record Next returns
	f     *os.File
	fbase uint64
	fseq  uint64 // sequence at the file offset foff
	foff  int64
}

func (c *Cursor) closeFile() {
	if c.f != nil {
		_ = c.f.Close()
		c.f = nil
	}
}

// Available reports whether Next has a record to return without waiting.
func (c *Cursor) Available() bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.segs[len(s.segs)-1]
	return c.next < cur.base+cur.n
}

// Next returns the next record (its sequence and payload), waiting for one until ctx ends.
func (c *Cursor) Next(ctx context.Context) (uint64, []byte, error) {
	for {
		s := c.s
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, nil, ErrSpoolClosed
		}
		// the segment holding c.next, and how many of its records are written
		var seg *segment
		for i := len(s.segs) - 1; i >= 0; i-- {
			if s.segs[i].base <= c.next {
				seg = &s.segs[i]
				break
			}
		}
		if seg == nil { // removed under us (cannot happen for a live consumer): skip ahead
			c.next = s.segs[0].base
			s.mu.Unlock()
			continue
		}
		base, end := seg.base, seg.base+seg.n
		lastSeg := seg == &s.segs[len(s.segs)-1]
		wait := s.notify
		s.mu.Unlock()

		if c.next >= end {
			if !lastSeg { // past this segment: on to the next one
				c.next = end
				c.closeFile()
				continue
			}
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-wait:
			}
			continue
		}
		if c.f == nil || c.fbase != base || c.fseq > c.next {
			c.closeFile()
			f, err := os.Open(filepath.Join(s.dir, segName(base)))
			if err != nil {
				return 0, nil, err
			}
			c.f, c.fbase, c.fseq, c.foff = f, base, base, 0
		}
		for c.fseq <= c.next {
			p, n, err := readFrame(io.NewSectionReader(c.f, c.foff, frameHeader+maxFrame))
			if err != nil {
				// a frame counted as written is unreadable: the segment is damaged after
				// open (disk trouble); skip the rest of it rather than stall forever
				c.closeFile()
				c.next = end
				break
			}
			c.fseq++
			c.foff += int64(n)
			if c.fseq-1 == c.next {
				c.next++
				return c.fseq - 1, p, nil
			}
		}
	}
}

// Ack records that every record below seq+1 is done: it is written to the ack file and
// segments every consumer is past are removed.
func (c *Cursor) Ack(seq uint64) error {
	s := c.s
	tmp := filepath.Join(s.dir, "ack-"+c.name+".tmp")
	if err := writeFileSync(tmp, []byte(strconv.FormatUint(seq+1, 10)+"\n"), s.opts.Fsync); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "ack-"+c.name)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq+1 > c.acked {
		c.acked = seq + 1
	}
	s.trimLocked()
	return nil
}

// trimLocked removes segments before the oldest consumer's position (never the last).
func (s *Spool) trimLocked() {
	if len(s.cursors) == 0 {
		return
	}
	min := ^uint64(0)
	for _, c := range s.cursors {
		if c.acked < min {
			min = c.acked
		}
	}
	for len(s.segs) > 1 && s.segs[1].base <= min {
		_ = os.Remove(filepath.Join(s.dir, segName(s.segs[0].base)))
		s.bytes -= s.segs[0].size
		s.segs = s.segs[1:]
	}
}

func writeFileSync(path string, b []byte, fsync bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if fsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
