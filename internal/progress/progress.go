// Package progress tracks rows per table and shows them: a live table on a
// terminal, a log line every few seconds otherwise.
package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Table is the progress of one table. Safe for concurrent use.
type Table struct {
	Name     string
	total    atomic.Int64 // estimated rows; 0 when unknown
	done     atomic.Int64
	rejected atomic.Int64
	resumed  int64 // rows already there when this run started
	phase    atomic.Value
	started  time.Time
	finished atomic.Int64 // unix nanos when done, 0 before
}

// AddRows counts n more rows written.
func (t *Table) AddRows(n int64) { t.done.Add(n) }

// AddRejected counts n rows sent to the reject file.
func (t *Table) AddRejected(n int64) { t.rejected.Add(n) }

// SetPhase names what the table is doing ("copying", "indexing", "done" …).
func (t *Table) SetPhase(p string) {
	t.phase.Store(p)
	if p == "done" || p == "failed" {
		t.finished.Store(time.Now().UnixNano())
	}
}

// Snapshot is a point-in-time view of a table's progress.
type Snapshot struct {
	Name       string
	Phase      string
	Rows       int64
	Total      int64
	Rejected   int64
	RowsPerSec float64
	ETA        time.Duration // -1 when unknown
}

// Snapshot reads the table's progress now.
func (t *Table) Snapshot() Snapshot {
	s := Snapshot{Name: t.Name, Rows: t.done.Load(), Total: t.total.Load(), Rejected: t.rejected.Load(), ETA: -1}
	s.Phase, _ = t.phase.Load().(string)
	end := time.Now()
	if f := t.finished.Load(); f != 0 {
		end = time.Unix(0, f)
	}
	if el := end.Sub(t.started).Seconds(); el > 0 {
		s.RowsPerSec = float64(s.Rows-t.resumed) / el
	}
	if s.RowsPerSec > 0 && s.Total > s.Rows {
		s.ETA = time.Duration(float64(s.Total-s.Rows) / s.RowsPerSec * float64(time.Second))
	}
	return s
}

// Tracker holds every table of a run.
type Tracker struct {
	mu     sync.Mutex
	tables []*Table
}

// Add starts tracking a table with an estimate of its rows and the rows a
// previous run already copied.
func (tr *Tracker) Add(name string, total, alreadyDone int64) *Table {
	t := &Table{Name: name, resumed: alreadyDone, started: time.Now()}
	t.total.Store(total)
	t.done.Store(alreadyDone)
	t.SetPhase("waiting")
	tr.mu.Lock()
	tr.tables = append(tr.tables, t)
	tr.mu.Unlock()
	return t
}

// Snapshots returns every table's progress.
func (tr *Tracker) Snapshots() []Snapshot {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]Snapshot, len(tr.tables))
	for i, t := range tr.tables {
		out[i] = t.Snapshot()
	}
	return out
}

// Show renders progress until ctx ends: redrawn in place on a terminal, or
// as log lines every interval otherwise.
func (tr *Tracker) Show(ctx context.Context, w io.Writer, terminal bool, log *slog.Logger, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	drawn := 0
	for {
		select {
		case <-ctx.Done():
			if terminal {
				drawn = tr.draw(w, drawn)
			}
			return
		case <-tick.C:
			if terminal {
				drawn = tr.draw(w, drawn)
				continue
			}
			for _, s := range tr.Snapshots() {
				if s.Phase == "done" || s.Phase == "waiting" {
					continue
				}
				log.Info("progress", "table", s.Name, "phase", s.Phase, "rows", s.Rows, "total_estimate", s.Total,
					"rows_per_sec", int64(s.RowsPerSec), "eta", FormatETA(s.ETA))
			}
		}
	}
}

func (tr *Tracker) draw(w io.Writer, previous int) int {
	var b strings.Builder
	if previous > 0 {
		fmt.Fprintf(&b, "\033[%dA", previous)
	}
	snaps := tr.Snapshots()
	for _, s := range snaps {
		pct := ""
		if s.Total > 0 {
			pct = fmt.Sprintf("%5.1f%%", min(100, 100*float64(s.Rows)/float64(s.Total)))
		}
		fmt.Fprintf(&b, "\r\033[K%-28s %-9s %12d rows %6s %10.0f rows/s  ETA %s\n", s.Name, s.Phase, s.Rows, pct, s.RowsPerSec, FormatETA(s.ETA))
	}
	io.WriteString(w, b.String())
	return len(snaps)
}

// FormatETA prints an ETA for people.
func FormatETA(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}
