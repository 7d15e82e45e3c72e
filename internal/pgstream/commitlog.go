package pgstream

import (
	"context"
	"time"
)

// CommitLog remembers the last transactions the stream delivered, so a
// chunk read between watermarks can be checked against its low watermark.
// Not safe for concurrent use: the stream's reader owns it.
//
// Why: PostgreSQL writes a commit record to the WAL a moment before it makes
// the transaction visible. A transaction T can thus come before the low
// watermark in the stream (so its change is applied before the chunk, not
// merged into the window) and still be invisible to the chunk's read, which
// then returns the row as it was before T and would overwrite T's change.
// Such a T is in the read snapshot's list of running transactions, and it
// came through the stream just before the low watermark: a window keeps the
// transactions delivered before its low watermark (Recent), and if one of
// the read's running transactions is among them, the chunk is read again.
type CommitLog struct {
	n    uint64
	xids [RecentCommits]uint32 // ring: the last RecentCommits xids
}

// RecentCommits is how many transactions before a low watermark are kept
// with its window. The race spans the moment between a commit's WAL record
// and its visibility, far fewer transactions than this.
const RecentCommits = 4096

// Add records the next transaction of the stream (its Begin's xid).
func (c *CommitLog) Add(xid uint32) {
	c.xids[c.n%RecentCommits] = xid
	c.n++
}

// Recent returns a copy of the xids of the last RecentCommits transactions
// (fewer at the start), in no particular order.
func (c *CommitLog) Recent() []uint32 {
	return append([]uint32(nil), c.xids[:min(c.n, RecentCommits)]...)
}

// MissedCommit reports whether one of running (the transactions a chunk
// read's snapshot saw as running) is among before (Recent at the chunk's
// low watermark): the read missed a commit the stream delivered before it.
func MissedCommit(running, before []uint32) bool {
	if len(running) == 0 {
		return false
	}
	set := make(map[uint32]struct{}, len(running))
	for _, x := range running {
		set[x] = struct{}{}
	}
	for _, x := range before {
		if _, ok := set[x]; ok {
			return true
		}
	}
	return false
}

// RereadPause waits before reading a chunk again for the attempt-th time
// (from 1): the racing commit becomes visible within moments, and one held
// longer (a synchronous standby's wait) is not polled hard. It reports
// false if ctx ended first.
func RereadPause(ctx context.Context, attempt int) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(min(time.Duration(attempt)*50*time.Millisecond, time.Second)):
		return true
	}
}
