// Package deferred replays one source transaction on a table whose key is
// DEFERRABLE, for the sync and the publisher alike.
//
// Such a transaction may hand a key value to one row before another gives
// it up (UPDATE … SET id = id + 1), so its changes cannot be reduced key by
// key as they come: the row a later change names by its key is ambiguous.
// With REPLICA IDENTITY FULL every change carries the whole old row, which
// says which of the rows holding a key it touched. The transaction is played
// on the images it wrote; at its commit each key it touched ends with one
// row or none (the constraint holds again), and that end state is what goes
// to the target.
package deferred

// Tx is one transaction's changes to one table; R is a row as its user holds
// it, identity the whole row's value (two rows are the same row when equal).
type Tx[R any] struct {
	identity func(R) string
	images   map[string][]R // rows the transaction wrote, by key
	gone     map[string]bool
	keyRow   map[string]R // a row holding the key (its key columns, for a delete)
	order    []string     // keys in first-touched order
}

// New returns an empty transaction.
func New[R any](identity func(R) string) *Tx[R] {
	return &Tx[R]{identity: identity, images: map[string][]R{}, gone: map[string]bool{}, keyRow: map[string]R{}}
}

func (d *Tx[R]) touch(key string, row R) {
	if _, seen := d.keyRow[key]; !seen {
		d.order = append(d.order, key)
	}
	d.keyRow[key] = row
}

// Add records row written at key (an insert, or an update's new row).
func (d *Tx[R]) Add(key string, row R) {
	d.touch(key, row)
	d.images[key] = append(d.images[key], row)
}

// Remove takes old away from key (a delete, or an update's old row): one of
// the transaction's own images when one is equal, else the row the key held
// before the transaction.
func (d *Tx[R]) Remove(key string, old R) {
	d.touch(key, old)
	id := d.identity(old)
	imgs := d.images[key]
	for i := range imgs {
		if d.identity(imgs[i]) == id {
			d.images[key] = append(imgs[:i:i], imgs[i+1:]...)
			return
		}
	}
	d.gone[key] = true
}

// End hands each touched key's end state to emit, in first-touched order,
// and starts over: row is the key's row at commit when exists, else the
// key's row is to be deleted; keyRow holds the key's columns either way. A
// key the transaction only inserted and deleted again is not handed over.
func (d *Tx[R]) End(emit func(key string, row R, exists bool, keyRow R) error) error {
	defer d.Reset()
	for _, key := range d.order {
		var err error
		switch imgs := d.images[key]; {
		case len(imgs) > 0:
			err = emit(key, imgs[len(imgs)-1], true, d.keyRow[key])
		case d.gone[key]:
			var none R
			err = emit(key, none, false, d.keyRow[key])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Pending reports whether the transaction touched any key yet.
func (d *Tx[R]) Pending() bool { return len(d.order) > 0 }

// Reset forgets a transaction: after its commit, or when its start comes
// again (the stream broke in it and resumed before it).
func (d *Tx[R]) Reset() {
	if len(d.order) == 0 {
		return
	}
	if len(d.order) > 10000 { // a big transaction: let its memory go
		*d = *New(d.identity)
		return
	}
	clear(d.images)
	clear(d.gone)
	clear(d.keyRow)
	d.order = d.order[:0]
}
