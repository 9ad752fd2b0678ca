package cdr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readN(t *testing.T, c *Cursor, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for range n {
		seq, p, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(out), err)
		}
		out = append(out, string(p))
		if err := c.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func rec(i int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, i)) }

func TestSpoolOrderRestartAndTrim(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir, SpoolOptions{SegmentBytes: 100, Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sp.Cursor("a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := sp.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Sync(); err != nil {
		t.Fatal(err)
	}
	got := readN(t, c, 20)
	for i, g := range got {
		if g != string(rec(i)) {
			t.Fatalf("record %d = %s", i, g)
		}
	}
	if p := sp.Pending("a"); p != 30 {
		t.Fatalf("pending %d, want 30", p)
	}
	segsBefore, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
	sp.Close()

	// a restart resumes after the last ack; acknowledged segments were removed
	sp, err = OpenSpool(dir, SpoolOptions{SegmentBytes: 100, Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, _ = sp.Cursor("a")
	got = readN(t, c, 30)
	for i, g := range got {
		if g != string(rec(20+i)) {
			t.Fatalf("after restart, record %d = %s", 20+i, g)
		}
	}
	segsAfter, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
	if len(segsAfter) >= len(segsBefore) || len(segsAfter) > 2 {
		t.Fatalf("segments %d before, %d after everything was acknowledged", len(segsBefore), len(segsAfter))
	}
	// a new record after restart continues the sequence and wakes a waiting reader
	type next struct {
		p   []byte
		err error
	}
	done := make(chan next, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, p, err := c.Next(ctx)
		done <- next{p, err}
	}()
	if _, err := sp.Append(rec(50)); err != nil {
		t.Fatal(err)
	}
	if g := <-done; g.err != nil || string(g.p) != string(rec(50)) {
		t.Fatalf("got %s, %v", g.p, g.err)
	}
}

func TestSpoolTornTailRecovered(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := sp.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	seg := filepath.Join(dir, segName(1))
	st, _ := os.Stat(seg)
	// the last record cut in the middle, as by a crash during write
	if err := os.Truncate(seg, st.Size()-3); err != nil {
		t.Fatal(err)
	}
	sp, err = OpenSpool(dir, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Recovered() == 0 {
		t.Fatal("torn tail not reported")
	}
	if _, err := sp.Append(rec(100)); err != nil {
		t.Fatal(err)
	}
	c, _ := sp.Cursor("x")
	got := readN(t, c, 10)
	for i := range 9 {
		if got[i] != string(rec(i)) {
			t.Fatalf("record %d = %s", i, got[i])
		}
	}
	if got[9] != string(rec(100)) {
		t.Fatalf("record after the cut = %s", got[9])
	}
	sp.Close()

	// garbage (not a frame) appended after good records: cut too
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 4, 1, 2, 3, 4, 'j', 'u', 'n', 'k'})
	f.Close()
	sp, err = OpenSpool(dir, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if sp.Next() != 11 {
		t.Fatalf("next sequence %d, want 11", sp.Next())
	}
}

func TestSpoolFull(t *testing.T) {
	sp, err := OpenSpool(t.TempDir(), SpoolOptions{MaxBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var err2 error
	for i := 0; i < 20 && err2 == nil; i++ {
		_, err2 = sp.Append(rec(i))
	}
	if !errors.Is(err2, ErrSpoolFull) {
		t.Fatalf("err %v, want ErrSpoolFull", err2)
	}
	if sp.Bytes() > 100 {
		t.Fatalf("spool %d bytes past its limit", sp.Bytes())
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte(`{"id":"x"}`)))
	f.Add(appendFrame(appendFrame(nil, []byte("a")), []byte("bc")))
	f.Add([]byte{0, 0, 0, 4, 1, 2, 3, 4, 'j', 'u', 'n', 'k'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		total := 0
		for {
			p, n, err := readFrame(r)
			if errors.Is(err, io.EOF) {
				if total != len(b) {
					t.Fatalf("EOF after %d of %d bytes", total, len(b))
				}
				return
			}
			if err != nil {
				return
			}
			if n != len(p)+frameHeader || total+n > len(b) {
				t.Fatalf("frame of %d bytes, payload %d", n, len(p))
			}
			// a decoded frame re-encodes to the same bytes
			if !bytes.Equal(appendFrame(nil, p), b[total:total+n]) {
				t.Fatal("frame does not round-trip")
			}
			total += n
		}
	})
}

// Segments removed by hand (the ack file kept): records written afterwards are still read.
func TestSpoolAckPastEnd(t *testing.T) {
	dir := t.TempDir()
	sp, _ := OpenSpool(dir, SpoolOptions{})
	c, _ := sp.Cursor("a")
	for i := range 5 {
		sp.Append(rec(i))
	}
	readN(t, c, 5)
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
	for _, s := range segs {
		os.Remove(s)
	}
	sp, err := OpenSpool(dir, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, _ = sp.Cursor("a")
	sp.Append(rec(42))
	if got := readN(t, c, 1); got[0] != string(rec(42)) {
		t.Fatalf("got %v", got)
	}
}
