package pgstream

import "testing"

// TestCommitLogMissedCommit: a chunk read is redone exactly when one of the
// transactions its snapshot saw as running came through the stream before
// the low watermark.
func TestCommitLogMissedCommit(t *testing.T) {
	var c CommitLog
	c.Add(100) // committed before the low watermark
	c.Add(101)
	low := c.Seq() // the low watermark
	c.Add(102)     // committed inside the window
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
		if got := c.MissedCommit(tc.running, low); got != tc.want {
			t.Errorf("%s: missedCommit(%v) = %v, want %v", tc.name, tc.running, got, tc.want)
		}
	}
}

// TestCommitLogForgetsOldest: the log keeps the last CommitLogSize
// transactions; when the high watermark comes so late that the log no longer
// covers enough before the low one, the chunk is read again rather than
// trusted.
func TestCommitLogForgetsOldest(t *testing.T) {
	var c CommitLog
	for x := uint32(1); x <= CommitLogSize+10; x++ {
		c.Add(x)
	}
	if _, ok := c.at[5]; ok {
		t.Errorf("xid 5 still remembered after %d more transactions", CommitLogSize)
	}
	if seq, ok := c.at[CommitLogSize+10]; !ok || seq != CommitLogSize+9 {
		t.Errorf("newest xid: seq %d, %v; want %d", seq, ok, CommitLogSize+9)
	}
	low := c.Seq()
	if c.MissedCommit([]uint32{999_999_999}, low) {
		t.Error("a chunk right after its low watermark is read again for no reason")
	}
	for x := uint32(0); x < CommitLogSize/2+1; x++ {
		c.Add(2_000_000 + x)
	}
	if !c.MissedCommit(nil, low) {
		t.Error("a chunk whose high watermark came after more than half the log is trusted")
	}
}
