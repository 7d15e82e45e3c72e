package pgstream

// CommitLog remembers the order of the transactions the stream delivered
// lately, so a chunk read between watermarks can be checked against its low
// watermark. Not safe for concurrent use: the stream's reader owns it.
//
// Why: PostgreSQL writes a commit record to the WAL a moment before it makes
// the transaction visible. A transaction T can thus come before the low
// watermark in the stream (so its change is applied before the chunk, not
// merged into the window) and still be invisible to the chunk's read, which
// then returns the row as it was before T and would overwrite T's change.
// Such a T is in the read snapshot's list of running transactions; if one of
// those came through the stream before the low watermark, the chunk is read
// again.
type CommitLog struct {
	seq  uint64                // transactions seen so far
	xids [CommitLogSize]uint32 // the last CommitLogSize of them, by seq
	at   map[uint32]uint64     // xid → seq, for the ones in xids
}

// CommitLogSize bounds the memory (about 2 MiB). A chunk whose high
// watermark comes more than half of it after the low one is read again,
// since the log no longer holds enough of what came before the low one.
const CommitLogSize = 1 << 16

// Seq is how many transactions were added: a position to compare against.
func (c *CommitLog) Seq() uint64 { return c.seq }

// Add records the next transaction of the stream (its Begin's xid).
func (c *CommitLog) Add(xid uint32) {
	if c.at == nil {
		c.at = make(map[uint32]uint64, CommitLogSize)
	}
	slot := c.seq % CommitLogSize
	if c.seq >= CommitLogSize {
		if old := c.xids[slot]; c.at[old] == c.seq-CommitLogSize {
			delete(c.at, old)
		}
	}
	c.xids[slot] = xid
	c.at[xid] = c.seq
	c.seq++
}

// MissedCommit reports whether one of running (the read snapshot's running
// transactions) came through the stream before lowSeq, the position of the
// low watermark; or whether the log cannot tell any more.
func (c *CommitLog) MissedCommit(running []uint32, lowSeq uint64) bool {
	if c.seq-lowSeq > CommitLogSize/2 {
		return true
	}
	for _, x := range running {
		if seq, ok := c.at[x]; ok && seq < lowSeq {
			return true
		}
	}
	return false
}
