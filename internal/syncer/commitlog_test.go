package syncer

import "testing"

// TestCommitLogMissedCommit: a chunk read is redone exactly when one of the
// transactions its snapshot saw as running came through the stream before
// the low watermark.
func TestCommitLogMissedCommit(t *testing.T) {
	var c commitLog
	c.add(100) // committed before the low watermark
	c.add(101)
	low := c.seq // the low watermark
	c.add(102)   // committed inside the window
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
		if got := c.missedCommit(tc.running, low); got != tc.want {
			t.Errorf("%s: missedCommit(%v) = %v, want %v", tc.name, tc.running, got, tc.want)
		}
	}
}

// TestCommitLogForgetsOldest: the log keeps the last commitLogSize
// transactions; when the high watermark comes so late that the log no longer
// covers enough before the low one, the chunk is read again rather than
// trusted.
func TestCommitLogForgetsOldest(t *testing.T) {
	var c commitLog
	for x := uint32(1); x <= commitLogSize+10; x++ {
		c.add(x)
	}
	if _, ok := c.at[5]; ok {
		t.Errorf("xid 5 still remembered after %d more transactions", commitLogSize)
	}
	if seq, ok := c.at[commitLogSize+10]; !ok || seq != commitLogSize+9 {
		t.Errorf("newest xid: seq %d, %v; want %d", seq, ok, commitLogSize+9)
	}
	low := c.seq
	if c.missedCommit([]uint32{999_999_999}, low) {
		t.Error("a chunk right after its low watermark is read again for no reason")
	}
	for x := uint32(0); x < commitLogSize/2+1; x++ {
		c.add(2_000_000 + x)
	}
	if !c.missedCommit(nil, low) {
		t.Error("a chunk whose high watermark came after more than half the log is trusted")
	}
}
