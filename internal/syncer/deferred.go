package syncer

import (
	"fmt"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/pgstream"
)

// deferredTx replays one source transaction on a table whose key is
// DEFERRABLE. Such a transaction may hand a key value to one row before
// another gives it up (UPDATE … SET id = id + 1), so changes cannot be
// reduced key by key as they come: the row a later change names by its key
// is ambiguous. With REPLICA IDENTITY FULL every change carries the whole
// old row, which says which of the rows holding a key it touched. The
// transaction is played on the images it wrote; at its commit each key it
// touched ends with one row or none (the constraint holds again), and that
// end state is what goes to the target.
type deferredTx struct {
	images map[string][]apply.Row // rows the transaction wrote, by key
	gone   map[string]bool        // the key's row from before the transaction was removed
	keyRow map[string]apply.Row   // a row holding the key (its key columns, for a delete)
	order  []string               // keys in first-touched order
}

func newDeferredTx() *deferredTx {
	return &deferredTx{images: map[string][]apply.Row{}, gone: map[string]bool{}, keyRow: map[string]apply.Row{}}
}

func (d *deferredTx) touch(key string, row apply.Row) {
	if _, seen := d.keyRow[key]; !seen {
		d.order = append(d.order, key)
	}
	d.keyRow[key] = row
}

func (d *deferredTx) add(key string, row apply.Row) {
	d.touch(key, row)
	d.images[key] = append(d.images[key], row)
}

// remove takes old away from key: one of the transaction's own images when
// one is equal, else the row the key held before the transaction.
func (d *deferredTx) remove(key string, old apply.Row) {
	d.touch(key, old)
	id := apply.Identity(old)
	imgs := d.images[key]
	for i := range imgs {
		if apply.Identity(imgs[i]) == id {
			d.images[key] = append(imgs[:i:i], imgs[i+1:]...)
			return
		}
	}
	d.gone[key] = true
}

// ops returns the transaction's end state as Rewrite ops (written as one
// piece: see apply.Rewrite) and starts over.
func (d *deferredTx) ops(t *table) []apply.Op {
	var out []apply.Op
	for _, key := range d.order {
		switch imgs := d.images[key]; {
		case len(imgs) > 0:
			out = append(out, apply.Op{Kind: apply.Rewrite, Table: t.apply, Key: key, Row: imgs[len(imgs)-1], OldKey: d.keyRow[key]})
		case d.gone[key]:
			out = append(out, apply.Op{Kind: apply.Rewrite, Table: t.apply, Key: key, OldKey: d.keyRow[key]})
		}
	}
	d.reset()
	return out
}

// reset forgets a transaction: after its commit, or when its start comes
// again (the stream broke in it and resumed before it).
func (d *deferredTx) reset() {
	if len(d.order) == 0 {
		return
	}
	if len(d.order) > 10000 { // a big transaction: let its memory go
		*d = *newDeferredTx()
		return
	}
	clear(d.images)
	clear(d.gone)
	clear(d.keyRow)
	d.order = d.order[:0]
}

// deferredChange plays a change of a table with a DEFERRABLE key on the
// transaction's images (see deferredTx).
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
		d.remove(oldKey, old)
	}
	if ev.Op == pgstream.Insert || ev.Op == pgstream.Update {
		row, key, err := s.row(t, ev.New, ev.Old)
		if err != nil {
			return err
		}
		d.add(key, row)
	}
	t.changes.Add(1)
	return nil
}

// beginDeferred forgets what a transaction the stream broke in left behind.
func (s *Syncer) beginDeferred() {
	for _, t := range s.deferredTables {
		t.deferred.reset()
	}
}

// endDeferred writes the end state of the transaction's changes to tables
// with a DEFERRABLE key (at its commit, or before a TRUNCATE in it).
func (s *Syncer) endDeferred(only *table) {
	for _, t := range s.deferredTables {
		if only != nil && t != only {
			continue
		}
		for _, op := range t.deferred.ops(t) {
			s.addOp(t, op)
		}
	}
}
