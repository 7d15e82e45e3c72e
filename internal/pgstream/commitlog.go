package pgstream

import (
	"context"
	"time"

	"github.com/sluice-db/sluice/internal/postgres"
)

// CommitLog remembers the last transactions the stream delivered, so a
// chunk read between watermarks can be checked against its low watermark.
// Not safe for concurrent use: the goroutine that reads the stream in
// order owns it.
//
// Why: PostgreSQL writes a commit record to the WAL a moment before it makes
// the transaction visible (longer when the commit waits for a synchronous
// standby). A transaction T can thus come before the low watermark in the
// stream (so its change is applied before the chunk, not merged into the
// window) and still be invisible to the chunk's read, which then returns
// the row as it was before T and would overwrite T's change. The read's
// snapshot is taken after the low watermark committed, so every
// transaction delivered before it is either visible to the snapshot or was
// such a T: a window marks where the log stood at its low watermark, and
// if one of the transactions before the mark is invisible to the read, the
// chunk is read again.
type CommitLog struct {
	n    uint64
	xids [RecentCommits]uint32 // ring: the last RecentCommits xids
}

// RecentCommits is how many transactions before a low watermark are
// checked. The race spans the moment between a commit's WAL record and its
// visibility, or a synchronous standby's wait, during which the other
// sessions' commits come through: 65,536 covers seconds of a busy server.
const RecentCommits = 1 << 16

// Add records the next transaction of the stream (its Begin's xid).
func (c *CommitLog) Add(xid uint32) {
	c.xids[c.n%RecentCommits] = xid
	c.n++
}

// Mark is where the log stands: taken at a window's low watermark.
func (c *CommitLog) Mark() uint64 { return c.n }

// MissedCommit reports whether one of the transactions delivered before
// mark (the last RecentCommits of them, as far as the log still holds
// them) is invisible to snap, the snapshot of a read that began after the
// low watermark: the read missed a commit the stream delivered before it.
// Xids at or past the snapshot's xmax are invisible too (they are not in
// its list of running transactions).
func (c *CommitLog) MissedCommit(snap postgres.Snapshot, mark uint64) bool {
	lo := mark - min(mark, RecentCommits)
	if c.n > RecentCommits {
		lo = max(lo, c.n-RecentCommits) // older ones are overwritten
	}
	for i := lo; i < mark; i++ {
		if !snap.Sees(c.xids[i%RecentCommits]) {
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
