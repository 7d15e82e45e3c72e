package mysql

import (
	"errors"
	"fmt"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
)

func TestErrorClasses(t *testing.T) {
	wrap := func(n uint16) error {
		return fmt.Errorf("target: write to t: %w", &gomysql.MySQLError{Number: n, Message: "x"})
	}
	cases := []struct {
		err                                 error
		data, dup, transient, orderConflict bool
	}{
		{wrap(1062), true, true, false, true},
		{wrap(1406), true, false, false, false},
		{wrap(1365), true, true, false, true}, // the upsert guard: a unique value held by another row
		{wrap(1048), true, false, false, false},
		{wrap(1452), true, false, false, true},
		{wrap(1213), false, false, true, true},
		{wrap(1205), false, false, true, false},
		{wrap(2013), false, false, false, false}, // lost connection: not the data's fault
		{errors.New("driver: bad connection"), false, false, false, false},
	}
	for _, c := range cases {
		if IsDataError(c.err) != c.data || IsDuplicate(c.err) != c.dup || IsTransient(c.err) != c.transient || IsOrderConflict(c.err) != c.orderConflict {
			t.Errorf("%v: data %v dup %v transient %v order %v; want %v %v %v %v", c.err,
				IsDataError(c.err), IsDuplicate(c.err), IsTransient(c.err), IsOrderConflict(c.err),
				c.data, c.dup, c.transient, c.orderConflict)
		}
	}
}

func TestStatementRefused(t *testing.T) {
	refused := func(n uint16) bool {
		return IsStatementRefused(fmt.Errorf("target: write: %w", &gomysql.MySQLError{Number: n}))
	}
	for _, n := range []uint16{1146, 1054, 1142, 1364} { // no table, no column, no privilege, no default
		if !refused(n) {
			t.Errorf("error %d is not seen as a refused statement: the sync would retry it forever", n)
		}
	}
	for _, n := range []uint16{1213, 1205, 1290, 1927, 1062, 1406} { // passing states, and data errors (classified apart)
		if refused(n) {
			t.Errorf("error %d is seen as a refused statement", n)
		}
	}
	if IsStatementRefused(errors.New("driver: bad connection")) {
		t.Error("a lost connection is seen as a refused statement")
	}
}
