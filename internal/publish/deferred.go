package publish

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/deferred"
	"github.com/sluice-db/sluice/internal/pgstream"
)

// pubRow is a row as the publisher holds it.
type pubRow struct {
	cols map[string]*string
	key  []string
}

// newDeferredTx holds a transaction's changes to a table whose key is
// DEFERRABLE (see package deferred); at its commit each key it touched is
// published as its end state, an upsert or a delete, so the partitions never
// see a key held by two rows.
func (t *pubTable) newDeferredTx() *deferred.Tx[pubRow] {
	return deferred.New(func(r pubRow) string {
		var b strings.Builder
		for _, name := range t.cols {
			if v := r.cols[name]; v == nil {
				b.WriteString("\x00N")
			} else {
				fmt.Fprintf(&b, "\x00%d:%s", len(*v), *v)
			}
		}
		return b.String()
	})
}

// deferredChange plays a change of a table with a DEFERRABLE key on the
// transaction's images.
func (p *Publisher) deferredChange(t *pubTable, ev pgstream.Event) error {
	d := t.deferred
	if ev.Op == pgstream.Update || ev.Op == pgstream.Delete {
		if ev.Old == nil { // bind stops a relation that is no longer FULL first
			return fmt.Errorf("table %s: a change without its old row (REPLICA IDENTITY FULL is needed for its DEFERRABLE key)", t.rt.Name)
		}
		cols, key, _, err := t.row(ev.Old, nil, false)
		if err != nil {
			return err
		}
		d.Remove(strings.Join(key, "\x00"), pubRow{cols, key})
	}
	if ev.Op == pgstream.Insert || ev.Op == pgstream.Update {
		cols, key, partial, err := t.row(ev.New, ev.Old, true)
		if err != nil {
			return err
		}
		if partial { // FULL streams every old value, so this would be a server bug
			return fmt.Errorf("table %s: an update of a DEFERRABLE-key row left out a value its old row lacks too", t.rt.Name)
		}
		d.Add(strings.Join(key, "\x00"), pubRow{cols, key})
	}
	t.changes.Add(1)
	return nil
}

// beginDeferred forgets what a transaction the stream broke in left behind.
func (p *Publisher) beginDeferred() {
	for _, t := range p.deferredTables {
		t.deferred.Reset()
	}
}

// endDeferred publishes the end state of the transaction's changes to tables
// with a DEFERRABLE key, at its commit.
func (p *Publisher) endDeferred(ctx context.Context, lsn uint64, next func() uint32) error {
	for _, t := range p.deferredTables {
		err := t.deferred.End(func(_ string, r pubRow, exists bool, keyRow pubRow) error {
			if exists {
				return p.emit(ctx, t, OpUpsert, r.cols, r.key, lsn, next)
			}
			return p.emit(ctx, t, OpDelete, keyOnly(t, keyRow.cols), keyRow.key, lsn, next)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
