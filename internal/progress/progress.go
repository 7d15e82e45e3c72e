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

// rateWindow is how far back the copy rate (and so the ETA) looks: recent
// enough to fall to zero while the copy is paused or throttled, long enough
// to smooth the chunks' bursts.
const rateWindow = 30 * time.Second

// Table is the progress of one table. Safe for concurrent use.
type Table struct {
	Name     string
	total    atomic.Int64 // estimated rows; 0 when unknown
	done     atomic.Int64
	rejected atomic.Int64
	resumed  int64 // rows already there when this run started
	phase    atomic.Value
	firstRow atomic.Int64 // unix nanos of this run's first row, 0 before: a table may wait long for its turn
	finished atomic.Int64 // unix nanos when its rows were all there (done, failed, streaming), 0 before

	mu      sync.Mutex
	samples []sample // (time, rows) at least a second apart, oldest first, reaching back rateWindow
}

type sample struct {
	at   time.Time
	rows int64
}

// AddRows counts n more rows written.
func (t *Table) AddRows(n int64) {
	t.done.Add(n)
	if t.firstRow.Load() == 0 {
		t.firstRow.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// AddRejected counts n rows sent to the reject file.
func (t *Table) AddRejected(n int64) { t.rejected.Add(n) }

// SetPhase names what the table is doing ("copying", "indexing",
// "streaming", "done" …). Done, failed and streaming end the copy's clock.
func (t *Table) SetPhase(p string) {
	t.phase.Store(p)
	if p == "done" || p == "failed" || p == "streaming" {
		t.finished.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// Snapshot is a point-in-time view of a table's progress.
type Snapshot struct {
	Name     string
	Phase    string
	Rows     int64
	Total    int64
	Rejected int64
	// RowsPerSec: while copying, the rate over the last rateWindow; once
	// copied, the mean from the first row to the last.
	RowsPerSec float64
	ETA        time.Duration // -1 when unknown
}

// Snapshot reads the table's progress now.
func (t *Table) Snapshot() Snapshot { return t.snapshotAt(time.Now()) }

func (t *Table) snapshotAt(now time.Time) Snapshot {
	s := Snapshot{Name: t.Name, Rows: t.done.Load(), Total: t.total.Load(), Rejected: t.rejected.Load(), ETA: -1}
	s.Phase, _ = t.phase.Load().(string)
	first := t.firstRow.Load()
	if first == 0 {
		return s
	}
	if f := t.finished.Load(); f != 0 {
		if el := time.Duration(f - first).Seconds(); el > 0 {
			s.RowsPerSec = float64(s.Rows-t.resumed) / el
		}
		return s
	}
	s.RowsPerSec = t.recentRate(now, time.Unix(0, first), s.Rows)
	if s.RowsPerSec > 0 && s.Total > s.Rows {
		s.ETA = time.Duration(float64(s.Total-s.Rows) / s.RowsPerSec * float64(time.Second))
	}
	return s
}

// recentRate is the rows per second over about the last rateWindow,
// counted from the run's first row at the start.
func (t *Table) recentRate(now, first time.Time, rows int64) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) == 0 {
		t.samples = append(t.samples, sample{first, t.resumed})
	}
	if now.Sub(t.samples[len(t.samples)-1].at) >= time.Second {
		t.samples = append(t.samples, sample{now, rows})
	}
	// keep the newest sample from before the window as its base
	for len(t.samples) > 2 && now.Sub(t.samples[1].at) >= rateWindow {
		t.samples = t.samples[1:]
	}
	base := t.samples[0]
	if el := now.Sub(base.at).Seconds(); el > 0 {
		return float64(rows-base.rows) / el
	}
	return 0
}

// Tracker holds every table of a run.
type Tracker struct {
	mu     sync.Mutex
	tables []*Table
}

// Add starts tracking a table with an estimate of its rows and the rows a
// previous run already copied.
func (tr *Tracker) Add(name string, total, alreadyDone int64) *Table {
	t := &Table{Name: name, resumed: alreadyDone}
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
