package postgres

import "testing"

// A snapshot sees the transactions that began before its xmax and were not
// running, comparing xids modulo 2^32 as PostgreSQL does.
func TestSnapshotSees(t *testing.T) {
	s := Snapshot{Xmax: 100, Running: []uint32{95, 97}}
	for xid, want := range map[uint32]bool{90: true, 95: false, 96: true, 97: false, 99: true, 100: false, 150: false} {
		if got := s.Sees(xid); got != want {
			t.Errorf("xmax 100, running 95 97: Sees(%d) = %v, want %v", xid, got, want)
		}
	}
	wrapped := Snapshot{Xmax: 5} // the 32-bit xid counter wrapped just before
	if !wrapped.Sees(4294967290) || wrapped.Sees(6) {
		t.Error("xmax 5 after a wraparound: must see 4294967290 and not 6")
	}
}
