package synctest

import (
	"strings"
	"testing"
	"time"
)

// TestSchemaChangeStopsSync: a column added to a migrated table while it
// streams stops the sync with a message naming the table and the column
// (exit 4), instead of writing rows the target cannot hold correctly; and
// no row after the change reaches the target.
func TestSchemaChangeStopsSync(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

	p.PG(t, `ALTER TABLE orders ADD COLUMN coupon text`)
	p.PG(t, `INSERT INTO orders (customer, amount, status, coupon) VALUES (7, 1, 'after the change', 'SAVE10')`)
	select {
	case <-proc.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("the sync kept running after a column was added to a migrated table")
	}
	_, code := proc.Exited()
	out := proc.Output()
	if code != 4 {
		t.Errorf("exit %d after a schema change, want 4 (schema problem)\n%s", code, out)
	}
	for _, want := range []string{"SLUICE-SYNC-SCHEMACHANGE", "orders", "coupon"} {
		if !strings.Contains(out, want) {
			t.Errorf("the stop message does not mention %q:\n%s", want, out)
		}
	}
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM orders WHERE status = 'after the change'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a row written after the schema change reached the target")
	}
	s.abort()
}
