package synctest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestAutoCutoverWaitsOutAnIdleTransaction: with --cutover=auto, a session
// idle in transaction holding the table (it would hold the fence past any
// lock timeout) must not make sluice request the fence again and again,
// each time stalling every writer for --lock-timeout: the attempt is
// skipped, saying which process holds the table, and retried with a
// growing pause; once the transaction ends the cutover goes through.
func TestAutoCutoverWaitsOutAnIdleTransaction(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	ctx := context.Background()
	// Holds the table like a forgotten BEGIN; … (LOCK assigns no
	// transaction id, so the slot's creation does not wait for it).
	blocker := connect(t, p.SourceURL)
	pgExec(t, blocker, `BEGIN`)
	pgExec(t, blocker, `LOCK TABLE orders IN ROW EXCLUSIVE MODE`)
	blockerPID := pgInt(t, blocker, `SELECT pg_backend_pid()`)
	// Older than --lock-timeout before sluice can first try: a younger
	// transaction may end within the lock timeout, so sluice does request
	// the fence past it (by design), and a copy done in under a second
	// made that first attempt stall the writer (the test failed so on a
	// fast run).
	time.Sleep(1500 * time.Millisecond)

	s := newSync(t, p.SourceURL, p.TargetURL, "--cutover=auto", "--lock-timeout", "1s")
	s.start()
	// The application writes on; no insert may wait on a fence request.
	writer := connect(t, p.SourceURL)
	var worst atomic.Int64
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan error, 1)
	go func() {
		for wctx.Err() == nil {
			began := time.Now()
			_, err := writer.Exec(wctx, `INSERT INTO orders (customer, amount) VALUES (1, 1)`)
			if err != nil && wctx.Err() == nil {
				writerDone <- err
				return
			}
			if d := int64(time.Since(began)); d > worst.Load() {
				worst.Store(d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		writerDone <- nil
	}()
	s.wait(60*time.Second, "the copy done", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
	worst.Store(0)
	time.Sleep(15 * time.Second) // attempts before the fix: one every 5 s after a 1 s stall
	stopWriter()
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if w := time.Duration(worst.Load()); w > 500*time.Millisecond {
		t.Errorf("an insert waited %s while the idle transaction held the table; want no fence requested\n%s", w, testenv.Tail(s.current().Output(), 30))
	}
	out := s.current().Output()
	if !strings.Contains(out, "SLUICE-CUTOVER-BLOCKED") || !strings.Contains(out, fmt.Sprintf("process %d", blockerPID)) || !strings.Contains(out, "next_attempt") {
		t.Errorf("the log does not name the blocked attempt, process %d and the next attempt:\n%s", blockerPID, testenv.Tail(out, 20))
	}
	if st, err := s.status(); err == nil && st.Phase == "cut over" {
		t.Fatalf("cut over while a transaction held the table")
	}

	pgExec(t, blocker, `COMMIT`)
	s.wait(90*time.Second, "the automatic cutover once the transaction ended", func(st testenv.SyncStatus) bool { return st.Phase == "cut over" })
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	s.finish()
}
