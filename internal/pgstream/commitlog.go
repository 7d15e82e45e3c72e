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

// Mark is where the log stood at a window's low watermark, with a copy of
// the last transactions before it: what the ring may overwrite while the
// window stays open (a read paced by --max-rows-per-sec on a busy source).
type Mark struct {
	n    uint64
	last []uint32
}

// markCopy is how many of the latest xids a Mark copies.
const markCopy = 4096

// Mark is where the log stands: taken at a window's low watermark.
func (c *CommitLog) Mark() Mark {
	m := Mark{n: c.n, last: make([]uint32, 0, min(c.n, markCopy))}
	for i := c.n - min(c.n, markCopy); i < c.n; i++ {
		m.last = append(m.last, c.xids[i%RecentCommits])
	}
	return m
}

// MissedCommit reports whether one of the transactions delivered before
// mark (the last RecentCommits of them, as far as the log still holds
// them, and always the last markCopy) is invisible to snap, the snapshot
// of a read that began after the low watermark: the read missed a commit
// the stream delivered before it. Xids at or past the snapshot's xmax are
// invisible too (they are not in its list of running transactions).
func (c *CommitLog) MissedCommit(snap postgres.Snapshot, mark Mark) bool {
	invisible := invisibleTo(snap)
	for _, x := range mark.last {
		if invisible(x) {
			return true
		}
	}
	lo := mark.n - min(mark.n, RecentCommits)
	if c.n > RecentCommits {
		lo = max(lo, c.n-RecentCommits) // older ones are overwritten
	}
	for i := lo; i < mark.n-uint64(len(mark.last)); i++ { // the copy holds the rest
		if invisible(c.xids[i%RecentCommits]) {
			return true
		}
	}
	return false
}

// invisibleTo is !snap.Sees, fast for the many xids older than every
// running one (a set lookup only for the few that are not).
func invisibleTo(snap postgres.Snapshot) func(uint32) bool {
	if len(snap.Running) == 0 {
		return func(x uint32) bool { return int32(x-snap.Xmax) >= 0 }
	}
	oldest := snap.Running[0]
	running := make(map[uint32]struct{}, len(snap.Running))
	for _, x := range snap.Running {
		running[x] = struct{}{}
		if int32(x-oldest) < 0 {
			oldest = x
		}
	}
	return func(x uint32) bool {
		if int32(x-snap.Xmax) >= 0 {
			return true
		}
		if int32(x-oldest) < 0 {
			return false
		}
		_, ok := running[x]
		return ok
	}
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
