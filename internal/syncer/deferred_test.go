package syncer

import (
	"testing"

	"github.com/sluice-db/sluice/internal/apply"
)

// The stream broke inside a transaction and resumed before it: its Begin
// again makes every DEFERRABLE-key table forget the broken attempt.
func TestBeginForgetsABrokenDeferredAttempt(t *testing.T) {
	tbl := &table{deferred: newDeferredTx()}
	s := &Syncer{tables: []*table{tbl}, deferredTables: []*table{tbl}}
	tbl.deferred.Add("5", apply.Row{{Data: []byte("5")}})
	s.beginDeferred()
	if tbl.deferred.Pending() {
		t.Fatal("a change of the broken attempt is still pending after the transaction began again")
	}
}
