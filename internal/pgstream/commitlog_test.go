package pgstream

import "testing"

// TestMissedCommit: a chunk read is redone exactly when one of the
// transactions its snapshot saw as running came through the stream before
// the low watermark.
func TestMissedCommit(t *testing.T) {
	var c CommitLog
	c.Add(100) // committed before the low watermark
	c.Add(101)
	before := c.Recent() // the low watermark
	c.Add(102)           // committed inside the window
	cases := []struct {
		name    string
		running []uint32
		want    bool
	}{
		{"running transaction committed before the low watermark", []uint32{7, 101}, true},
		{"running transaction committed inside the window", []uint32{102}, false},
		{"running transactions not seen (still running, aborted, other tables)", []uint32{5, 6}, false},
		{"nothing running", nil, false},
	}
	for _, tc := range cases {
		if got := MissedCommit(tc.running, before); got != tc.want {
			t.Errorf("%s: MissedCommit(%v) = %v, want %v", tc.name, tc.running, got, tc.want)
		}
	}
}

// TestCommitLogKeepsTheLatest: the log keeps the last RecentCommits
// transactions, and what a window took at its low watermark does not change
// as more come.
func TestCommitLogKeepsTheLatest(t *testing.T) {
	var c CommitLog
	for x := uint32(1); x <= RecentCommits+10; x++ {
		c.Add(x)
	}
	before := c.Recent()
	if len(before) != RecentCommits {
		t.Fatalf("Recent: %d xids, want %d", len(before), RecentCommits)
	}
	if MissedCommit([]uint32{5}, before) {
		t.Error("xid 5 still remembered after RecentCommits more transactions")
	}
	if !MissedCommit([]uint32{RecentCommits + 10}, before) || !MissedCommit([]uint32{11}, before) {
		t.Error("the newest and the oldest kept xid are not found")
	}
	for x := uint32(0); x < 2*RecentCommits; x++ {
		c.Add(1_000_000 + x)
	}
	if !MissedCommit([]uint32{RecentCommits + 10}, before) {
		t.Error("a window's copy changed as the log moved on")
	}
}
