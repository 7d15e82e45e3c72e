package pgstream

import (
	"testing"

	"github.com/sluice-db/sluice/internal/postgres"
)

// TestMissedCommit: a chunk read is redone exactly when a transaction the
// stream delivered before the low watermark is invisible to the read's
// snapshot: listed as running, or at or past its xmax (a transaction that
// took its xid after every one the snapshot saw completed).
func TestMissedCommit(t *testing.T) {
	var c CommitLog
	c.Add(100) // committed before the low watermark
	c.Add(101)
	mark := c.Mark() // the low watermark
	c.Add(102)       // committed inside the window
	cases := []struct {
		name string
		snap postgres.Snapshot
		want bool
	}{
		{"a transaction before the low watermark still running for the read", postgres.Snapshot{Xmax: 110, Running: []uint32{7, 101}}, true},
		{"a transaction before the low watermark at the read's xmax", postgres.Snapshot{Xmax: 101, Running: nil}, true},
		{"only a transaction inside the window invisible", postgres.Snapshot{Xmax: 102, Running: nil}, false},
		{"running transactions not delivered (still running, aborted, other tables)", postgres.Snapshot{Xmax: 110, Running: []uint32{5, 6, 102}}, false},
		{"everything visible", postgres.Snapshot{Xmax: 200}, false},
	}
	for _, tc := range cases {
		if got := c.MissedCommit(tc.snap, mark); got != tc.want {
			t.Errorf("%s: MissedCommit(%+v) = %v, want %v", tc.name, tc.snap, got, tc.want)
		}
	}
}

// TestCommitLogKeepsTheLatest: the log checks the last RecentCommits
// transactions before a mark, as far as it still holds them while more come.
func TestCommitLogKeepsTheLatest(t *testing.T) {
	var c CommitLog
	for x := uint32(1); x <= RecentCommits+10; x++ {
		c.Add(x)
	}
	mark := c.Mark()
	invisible := func(xid uint32) postgres.Snapshot {
		return postgres.Snapshot{Xmax: 1 << 30, Running: []uint32{xid}}
	}
	if c.MissedCommit(invisible(5), mark) {
		t.Error("xid 5 still checked after RecentCommits more transactions")
	}
	if !c.MissedCommit(invisible(RecentCommits+10), mark) || !c.MissedCommit(invisible(11), mark) {
		t.Error("the newest and the oldest kept xid are not checked")
	}
	for x := uint32(0); x < 100; x++ {
		c.Add(1_000_000 + x) // inside the window: not checked
	}
	if c.MissedCommit(invisible(1_000_050), mark) {
		t.Error("a transaction after the mark counts as missed")
	}
	if !c.MissedCommit(invisible(RecentCommits+10), mark) {
		t.Error("a transaction before the mark is no longer checked after 100 more")
	}
	if c.MissedCommit(invisible(50), mark) || !c.MissedCommit(invisible(200), mark) {
		t.Error("after 100 more, xid 50 (overwritten) is still checked, or xid 200 (still held) is not")
	}
}

// TestMissedCommitAfterTheRingMovedOn: a window that stays open while more
// than RecentCommits transactions come through (a paced read on a busy
// source) still checks the transactions just before its low watermark.
func TestMissedCommitAfterTheRingMovedOn(t *testing.T) {
	var c CommitLog
	for x := uint32(1); x <= 999; x++ {
		c.Add(x)
	}
	c.Add(1000) // committed just before the low watermark, not yet visible
	mark := c.Mark()
	for x := uint32(0); x < RecentCommits+100; x++ {
		c.Add(2000 + x)
	}
	if !c.MissedCommit(postgres.Snapshot{Xmax: 1 << 30, Running: []uint32{1000}}, mark) {
		t.Error("a transaction just before the mark is no longer checked once the ring moved on")
	}
	if c.MissedCommit(postgres.Snapshot{Xmax: 1 << 30, Running: []uint32{2500}}, mark) {
		t.Error("a transaction inside the window counts as missed")
	}
}

// TestInvisibleToIsNotSees: the fast check agrees with Snapshot.Sees,
// across xid wraparound too.
func TestInvisibleToIsNotSees(t *testing.T) {
	for _, snap := range []postgres.Snapshot{
		{Xmax: 500, Running: []uint32{100, 300, 499}},
		{Xmax: 10, Running: []uint32{4294967290, 3}}, // wrapped
		{Xmax: 77},
	} {
		invisible := invisibleTo(snap)
		for _, x := range []uint32{0, 1, 3, 4, 9, 10, 11, 99, 100, 101, 300, 498, 499, 500, 501, 4294967289, 4294967290, 4294967295} {
			if invisible(x) != !snap.Sees(x) {
				t.Errorf("snapshot %+v, xid %d: invisible %v, Sees %v", snap, x, invisible(x), snap.Sees(x))
			}
		}
	}
}
