package logging

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Rotating is a log file rotated by size: when a write would take it past
// MaxSize, FILE becomes FILE.1 (FILE.1 becomes FILE.2 …, the oldest beyond
// MaxBackups is removed) and a new FILE is started. Writes are whole
// records (slog writes each record in one call), so no line is split.
type Rotating struct {
	mu         sync.Mutex
	path       string
	maxSize    int64
	maxBackups int
	f          *os.File
	size       int64
	// detached: the open file was moved to FILE.1 but no new FILE could be
	// opened, so records go to FILE.1. The next rotation only tries to open
	// FILE again; shifting the backups would move the open file on until
	// the oldest slot removed it.
	detached bool
}

// Defaults for OpenRotating.
const (
	DefaultMaxSize    = 100 << 20
	DefaultMaxBackups = 5
)

// OpenRotating opens (appending to) path. maxSize 0 means DefaultMaxSize,
// maxBackups 0 means DefaultMaxBackups.
func OpenRotating(path string, maxSize int64, maxBackups int) (*Rotating, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxBackups <= 0 {
		maxBackups = DefaultMaxBackups
	}
	r := &Rotating{path: path, maxSize: maxSize, maxBackups: maxBackups}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would not fit.
func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, fmt.Errorf("log file %s is closed", r.path)
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxSize {
		if err := r.rotate(); err != nil {
			// keep logging to the old file rather than lose records, and
			// try again after another maxSize, not at every record
			// (the logger is the caller: this record is written by hand, in
			// the file's own JSON form, and to stderr)
			line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "level": "WARN",
				"msg": "cannot rotate the log file; logging on to the old one", "code": "SLUICE-LOG-ROTATE", "path": r.path, "error": Redact(err.Error())})
			line = append(line, '\n')
			os.Stderr.Write(line)
			r.f.Write(line)
			r.size = 0
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts the backups and starts a new file. The old file stays open
// until the new one is: if it cannot be made (a full disk, a directory
// turned read-only), records go on to the old one, now FILE.1, rather than
// nowhere.
func (r *Rotating) rotate() error {
	if !r.detached {
		os.Remove(fmt.Sprintf("%s.%d", r.path, r.maxBackups))
		for i := r.maxBackups - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
		}
		err := os.Rename(r.path, r.path+".1")
		if err != nil && !os.IsNotExist(err) {
			return err // still writing to r.path: nothing moved
		}
		// Moved, or gone already (removed or moved by someone else): either
		// way the open file is no longer FILE.
		r.detached = true
	}
	old := r.f
	if err := r.open(); err != nil {
		return err
	}
	r.detached = false
	return old.Close()
}

// Close closes the file.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Path is the file written to.
func (r *Rotating) Path() string { return r.path }
