package syncer

// Accessors for operations (the API's verify, the watchers). This file only
// reads the syncer's state; it changes nothing the sync loop relies on.

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/verify"
)

// VerifyReport is the result of a verify started through the API.
type VerifyReport struct {
	Mode        string             `json:"mode"` // changed or full
	Rows        int64              `json:"rows_compared"`
	Differences int64              `json:"differences"`
	Tables      []VerifyTableCount `json:"tables"`
}

// VerifyTableCount is one table's part of a VerifyReport.
type VerifyTableCount struct {
	Table    string   `json:"table"`
	Compared int64    `json:"rows_compared"`
	Changed  int64    `json:"changed"`
	Missing  int64    `json:"missing"`
	Extra    int64    `json:"extra"`
	Samples  []string `json:"samples,omitempty"` // "kind key" of a few differing rows
}

// SourcePool is the source's connection pool (for the watchers).
func (s *Syncer) SourcePool() *pgxpool.Pool { return s.src.Pool }

// peek copies the changed keys without taking them: cutover still sees them.
func (c *changedKeys) peek() (map[*table][]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[*table][]string, len(c.keys))
	for t, keys := range c.keys {
		for k := range keys {
			out[t] = append(out[t], k)
		}
	}
	return out, c.overflow
}

// VerifyChangedRows compares the rows changed since the sync started (or
// since the last cutover check) on both sides. A difference may be a change
// still on its way, so the keys of a table with differences are compared
// again once the target has caught up; what still differs is reported.
func (s *Syncer) VerifyChangedRows(ctx context.Context) (VerifyReport, error) {
	rep := VerifyReport{Mode: "changed"}
	byTable, overflow := s.changed.peek()
	if overflow {
		return rep, failure.New(failure.Usage, "SLUICE-VERIFY-MANYCHANGES", "more rows changed than sluice remembers (%d)", maxChangedKeys).
			WithHint("run a full verify instead")
	}
	again := map[*table][]string{}
	for _, t := range s.tables {
		keys := byTable[t]
		diffs, err := s.compareKeys(ctx, t, keys)
		if err != nil {
			return rep, err
		}
		if len(diffs) > 0 {
			again[t] = keys
		}
	}
	if len(again) > 0 {
		s.waitApplied(ctx, 30*time.Second)
	}
	for _, t := range s.tables {
		tc := VerifyTableCount{Table: t.plan.Source.Name.String(), Compared: int64(len(byTable[t]))}
		if keys, ok := again[t]; ok {
			diffs, err := s.compareKeys(ctx, t, keys)
			if err != nil {
				return rep, err
			}
			for i, d := range diffs {
				switch d.Kind {
				case verify.Missing:
					tc.Missing++
				case verify.Extra:
					tc.Extra++
				default:
					tc.Changed++
				}
				if i < 10 {
					tc.Samples = append(tc.Samples, d.Kind+" "+d.Key)
				}
			}
		}
		rep.Rows += tc.Compared
		rep.Differences += tc.Changed + tc.Missing + tc.Extra
		rep.Tables = append(rep.Tables, tc)
	}
	return rep, nil
}

func (s *Syncer) compareKeys(ctx context.Context, t *table, keys []string) ([]verify.Diff, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	split := make([][]string, len(keys))
	for i, k := range keys {
		split[i] = strings.Split(k, "\x00")
	}
	diffs, err := verify.CompareKeys(ctx, s.src, s.tgt, t.plan, split)
	if err != nil {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-VERIFY-COMPARE", "verify changed rows of %s", t.plan.Source.Name).
			With("table", t.plan.Source.Name.String())
	}
	return diffs, nil
}

// waitApplied waits until the target has applied what the source had
// written when it was called (or limit passes).
func (s *Syncer) waitApplied(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	target := s.status.currentLSN.Load()
	if stream := s.stream.Load(); stream != nil && uint64(stream.Received()) > target {
		target = uint64(stream.Received())
	}
	for time.Now().Before(deadline) {
		if s.status.applied.Load() >= target && s.lag() == 0 {
			// one more batch delay: a change read but not yet committed
			time.Sleep(2 * s.opt.BatchDelay)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// VerifyAll compares every table in full, as sluice verify does. While
// changes stream, a row changed during the compare can show as a
// difference; the report says how many differ.
func (s *Syncer) VerifyAll(ctx context.Context) (VerifyReport, error) {
	rep := VerifyReport{Mode: "full"}
	results, err := verify.Run(ctx, s.src, s.tgt, s.plan, verify.Options{Parallel: 2, ChunkRows: s.opt.ChunkRows, Log: s.log})
	if err != nil {
		return rep, err
	}
	for _, r := range results {
		if r.Err != nil {
			return rep, failure.Wrap(r.Err, failure.Internal, "SLUICE-VERIFY-TABLE", "verify %s", r.Source).With("table", r.Source)
		}
		tc := VerifyTableCount{Table: r.Source, Compared: r.Compared, Changed: r.Changed, Missing: r.Missing, Extra: r.Extra}
		for i, d := range r.Samples {
			if i < 10 {
				tc.Samples = append(tc.Samples, d.Kind+" "+d.Key)
			}
		}
		rep.Rows += r.Compared
		rep.Differences += r.Changed + r.Missing + r.Extra
		rep.Tables = append(rep.Tables, tc)
	}
	return rep, nil
}
