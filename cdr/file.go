package cdr

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FileOptions configures the JSON-lines file of call records.
type FileOptions struct {
	Path     string        // "" = no file
	MaxBytes int64         // rotate before the file would pass this size; 0 = never by size
	MaxAge   time.Duration // rotate a file that was opened this long ago; 0 = never by age
	MaxFiles int           // rotated files kept (oldest removed); 0 = all
	Fsync    bool          // fsync after every batch of records
	Now      func() time.Time
}

// fileSink writes one record a line. A rotated file is renamed <path>.<UTC time>
// (rotatedLayout) and a new one is started.
type fileSink struct {
	o      FileOptions
	f      *os.File
	w      *bufio.Writer
	size   int64
	opened time.Time
}

func openFileSink(o FileOptions) (*fileSink, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	fs := &fileSink{o: o}
	if err := fs.open(); err != nil {
		return nil, err
	}
	// a file left from an earlier run is rotated by age on its last write time
	if st, err := fs.f.Stat(); err == nil && st.Size() > 0 {
		fs.opened = st.ModTime()
	}
	return fs, nil
}

func (fs *fileSink) open() error {
	if err := os.MkdirAll(filepath.Dir(fs.o.Path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(fs.o.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	fs.f, fs.w, fs.size, fs.opened = f, bufio.NewWriterSize(f, 64<<10), st.Size(), fs.o.Now()
	return nil
}

// write appends one record (a JSON object) and a newline, rotating first when due.
func (fs *fileSink) write(b []byte) error {
	n := int64(len(b)) + 1
	if fs.size > 0 && ((fs.o.MaxBytes > 0 && fs.size+n > fs.o.MaxBytes) ||
		(fs.o.MaxAge > 0 && fs.o.Now().Sub(fs.opened) >= fs.o.MaxAge)) {
		if err := fs.rotate(); err != nil {
			return err
		}
	}
	if _, err := fs.w.Write(b); err != nil {
		return err
	}
	if err := fs.w.WriteByte('\n'); err != nil {
		return err
	}
	fs.size += n
	return nil
}

func (fs *fileSink) flush() error {
	if err := fs.w.Flush(); err != nil {
		return err
	}
	if fs.o.Fsync {
		return fs.f.Sync()
	}
	return nil
}

func (fs *fileSink) rotate() error {
	if err := fs.flush(); err != nil {
		return err
	}
	if err := fs.f.Close(); err != nil {
		return err
	}
	t := fs.o.Now().UTC()
	name := fs.o.Path + "." + t.Format(rotatedLayout)
	for {
		if _, err := os.Lstat(name); os.IsNotExist(err) {
			break
		}
		t = t.Add(time.Nanosecond)
		name = fs.o.Path + "." + t.Format(rotatedLayout)
	}
	if err := os.Rename(fs.o.Path, name); err != nil {
		return err
	}
	fs.prune()
	return fs.open()
}

// rotatedLayout names rotated files; their names sort by time.
const rotatedLayout = "20060102T150405.000000000Z"

// prune removes the oldest rotated files beyond MaxFiles.
func (fs *fileSink) prune() {
	if fs.o.MaxFiles <= 0 {
		return
	}
	old, _ := filepath.Glob(fs.o.Path + ".*")
	var rotated []string
	for _, p := range old {
		if _, err := time.Parse(rotatedLayout, strings.TrimPrefix(p, fs.o.Path+".")); err == nil {
			rotated = append(rotated, p)
		}
	}
	sort.Strings(rotated)
	for len(rotated) > fs.o.MaxFiles {
		_ = os.Remove(rotated[0])
		rotated = rotated[1:]
	}
}

func (fs *fileSink) close() error {
	err := fs.flush()
	if cerr := fs.f.Close(); err == nil {
		err = cerr
	}
	return err
}
