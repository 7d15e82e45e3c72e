package syncer

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

// A restart replays from the slot's confirmed position, which can be behind
// what the target stored: transactions that committed before it are skipped,
// the first one after it is applied.
func TestPositionSkipsWhatARestartReplays(t *testing.T) {
	p := position{applied: 0x1000} // stored on the target with the last batch
	if !p.begin(0x0f00) {
		t.Fatal("a transaction committed at 0/F00, before the stored 0/1000, was not skipped: it would be applied twice")
	}
	if p.commit(0x1000) {
		t.Fatal("the commit of a skipped transaction said to apply it")
	}
	if p.unwritten() {
		t.Fatal("a skipped transaction left something to write")
	}
	if p.begin(0x1000) { // its commit record starts where the stored position ends
		t.Fatal("the first transaction after the stored position was skipped: it would be lost")
	}
	if !p.commit(0x1080) || !p.unwritten() {
		t.Fatal("the first transaction after the stored position is not waiting to be written")
	}
	if got := p.written(); got != 0x1080 {
		t.Fatalf("after the write the position is %s; want 0/1080 (the transaction's end)", got)
	}
	if !p.begin(0x1040) {
		t.Fatal("a transaction committed before the written position was not skipped")
	}
}

// A keepalive lets the slot move on while the tables are quiet, but never
// past a transaction still being received or a batch not yet written.
func TestPositionKeepalive(t *testing.T) {
	p := position{applied: 0x1000}
	if lsn, ok := p.keepalive(0x2000, true); !ok || lsn != 0x2000 {
		t.Fatalf("caught up, a keepalive at 0/2000 confirmed (%s, %v); want 0/2000", lsn, ok)
	}
	if _, ok := p.keepalive(0x1800, true); ok {
		t.Fatal("a keepalive behind the applied position moved it back")
	}

	p.begin(0x2100)
	if _, ok := p.keepalive(0x2200, true); ok {
		t.Fatal("a keepalive inside a transaction confirmed past changes not yet received")
	}
	p.commit(0x2180)
	if _, ok := p.keepalive(0x2300, false); ok {
		t.Fatal("a keepalive confirmed past a batch that is not written yet: a crash would lose it")
	}
	if got := p.written(); got != 0x2300 {
		t.Fatalf("writing the batch confirms %s; want 0/2300 (the keepalive after its commit: nothing came between)", got)
	}

	p.begin(0x2400) // a new transaction: the earlier keepalive's end no longer holds
	p.commit(0x2480)
	if got := p.written(); got != 0x2480 {
		t.Fatalf("writing confirms %s; want 0/2480 (the commit's end)", got)
	}
}

// The written position never goes back, whatever order the loop sees things in.
func TestPositionNeverGoesBack(t *testing.T) {
	p := position{applied: 0x5000}
	p.begin(0x4000) // replayed, skipped
	p.commit(0x4100)
	if got := p.written(); got != pglogrepl.LSN(0x5000) {
		t.Fatalf("a write with only replayed transactions moved the position to %s; want it kept at 0/5000", got)
	}
}
