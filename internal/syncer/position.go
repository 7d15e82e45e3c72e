package syncer

import "github.com/jackc/pglogrepl"

// position follows the stream's transactions against what the target holds,
// and decides the two things exactly-once rests on: which transactions a
// restart replays that are already applied (skipped), and how far the slot
// may be confirmed. The loop feeds it every Begin, Commit and Keepalive.
type position struct {
	applied    pglogrepl.LSN // durable on the target and confirmed to the source
	lastCommit pglogrepl.LSN // end of the last received transaction to apply
	quietEnd   pglogrepl.LSN // WAL end of a keepalive received since the last Begin: everything before it was sent
	inTx       bool          // between a Begin and its Commit
	skipTx     bool          // the transaction being received is already applied
}

// begin starts a transaction whose commit record is at final, and reports
// whether it is to be skipped. After a restart the source replays from the
// slot's confirmed position, which can lag what the target stored: a
// transaction that committed before applied is already on the target.
func (p *position) begin(final pglogrepl.LSN) (skip bool) {
	p.inTx, p.quietEnd = true, 0
	p.skipTx = final < p.applied
	return p.skipTx
}

// commit ends the transaction at end (the end of its commit record), and
// reports whether its changes are to be applied.
func (p *position) commit(end pglogrepl.LSN) (apply bool) {
	p.inTx = false
	if p.skipTx {
		return false
	}
	p.lastCommit = end
	return true
}

// unwritten reports received transactions not yet written to the target.
func (p *position) unwritten() bool { return p.lastCommit > p.applied }

// written records that everything received is durable on the target and
// returns the position to confirm: the last commit, or a later keepalive's
// WAL end (nothing was sent between the two). It never goes back.
func (p *position) written() pglogrepl.LSN {
	p.applied = max(p.applied, p.lastCommit, p.quietEnd)
	return p.applied
}

// keepalive notes the source's WAL end outside a transaction. With nothing
// waiting to be written, everything up to it is applied, so it returns that
// position to confirm (ok), letting the slot release WAL while the tables
// are quiet. With a batch waiting, the batch's write confirms that far.
func (p *position) keepalive(walEnd pglogrepl.LSN, batchEmpty bool) (confirm pglogrepl.LSN, ok bool) {
	if p.inTx {
		return 0, false
	}
	p.quietEnd = walEnd
	if !batchEmpty || p.unwritten() || walEnd <= p.applied {
		return 0, false
	}
	p.applied = walEnd
	return walEnd, true
}
