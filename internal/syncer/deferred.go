package syncer

import (
	"fmt"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/deferred"
	"github.com/sluice-db/sluice/internal/pgstream"
)

// newDeferredTx holds a transaction's changes to a table whose key is
// DEFERRABLE (see package deferred).
func newDeferredTx() *deferred.Tx[apply.Row] { return deferred.New(apply.Identity) }

// deferredChange plays a change of a table with a DEFERRABLE key on the
// transaction's images.
func (s *Syncer) deferredChange(t *table, ev pgstream.Event) error {
	d := t.deferred
	if ev.Op == pgstream.Update || ev.Op == pgstream.Delete {
		if ev.Old == nil { // bindRelation stops a relation that is no longer FULL first
			return fmt.Errorf("table %s: a change without its old row (REPLICA IDENTITY FULL is needed for its DEFERRABLE key)", t.plan.Source.Name)
		}
		old, oldKey, err := s.row(t, ev.Old, nil)
		if err != nil {
			return err
		}
		d.Remove(oldKey, old)
	}
	if ev.Op == pgstream.Insert || ev.Op == pgstream.Update {
		row, key, err := s.row(t, ev.New, ev.Old)
		if err != nil {
			return err
		}
		d.Add(key, row)
	}
	s.countChange(t)
	return nil
}

// beginDeferred forgets what a transaction the stream broke in left behind.
func (s *Syncer) beginDeferred() {
	for _, t := range s.deferredTables {
		t.deferred.Reset()
	}
}

// endDeferred writes the end state of the transaction's changes to tables
// with a DEFERRABLE key (at its commit, or before a TRUNCATE in it) as
// Rewrite ops, written as one piece (see apply.Rewrite).
func (s *Syncer) endDeferred(only *table) {
	for _, t := range s.deferredTables {
		if only != nil && t != only {
			continue
		}
		// row is nil for a key to delete: End hands over a zero row then.
		_ = t.deferred.End(func(key string, row apply.Row, _ bool, keyRow apply.Row) error {
			s.addOp(t, apply.Op{Kind: apply.Rewrite, Table: t.apply, Key: key, Row: row, OldKey: keyRow})
			return nil
		})
	}
}
