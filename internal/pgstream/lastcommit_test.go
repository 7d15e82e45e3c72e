package pgstream

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// The stream remembers the commit time of the last transaction it began
// to deliver, so the sync's lag counts one the apply loop has not reached
// (busy building a table's indexes) instead of reading 0 s.
func TestLastCommitReceived(t *testing.T) {
	s := &Stream{relations: map[uint32]*Relation{}}
	if !s.LastCommitReceived().IsZero() {
		t.Fatalf("before any transaction: %v", s.LastCommitReceived())
	}
	commit := time.Date(2026, 12, 7, 10, 0, 0, 123000, time.UTC)
	msg := []byte{'B'}
	msg = binary.BigEndian.AppendUint64(msg, 0x16B3748)
	msg = binary.BigEndian.AppendUint64(msg, uint64(commit.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()))
	msg = binary.BigEndian.AppendUint32(msg, 4242)
	ev, ok, err := s.decode(pglogrepl.XLogData{WALData: msg})
	if err != nil || !ok || ev.Kind != Begin || ev.Xid != 4242 {
		t.Fatalf("decode Begin: %+v %v %v", ev, ok, err)
	}
	if got := s.LastCommitReceived(); !got.Equal(commit) {
		t.Fatalf("LastCommitReceived = %v, want %v", got, commit)
	}
}
