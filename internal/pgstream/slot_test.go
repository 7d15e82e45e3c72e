package pgstream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A lost slot stops the sync for good, so only what truly means "the
// changes are gone" may count as one.
func TestSlotLost(t *testing.T) {
	wrap := func(e *pgconn.PgError) error { return fmt.Errorf("start replication on slot s: %w", e) }
	cases := []struct {
		err  error
		lost bool
	}{
		{wrap(&pgconn.PgError{Code: "42704", Message: `replication slot "s" does not exist`}), true},
		{wrap(&pgconn.PgError{Code: "55000", Message: `cannot read from logical replication slot "s"`,
			Detail: "This slot has been invalidated because it exceeded the maximum reserved size."}), true},
		{wrap(&pgconn.PgError{Code: "55000", Message: `can no longer get changes from replication slot "s"`}), true},
		{wrap(&pgconn.PgError{Code: "58P01", Message: "requested WAL segment 000000010000000000000003 has already been removed"}), true},
		// a slot of another database: the connection string is wrong, nothing is lost
		{wrap(&pgconn.PgError{Code: "55000", Message: `replication slot "s" was not created in this database`}), false},
		{wrap(&pgconn.PgError{Code: "58P01", Message: `could not open file "pg_replslot/s/xid-123.spill"`}), false},
		{wrap(&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), false},
		{errors.New("replication stream: EOF"), false},
	}
	for _, c := range cases {
		if got := slotLost(c.err); got != c.lost {
			t.Errorf("%v: lost = %v, want %v", c.err, got, c.lost)
		}
	}
}
