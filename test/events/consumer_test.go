package events

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestConsumerDeletedStopsTheSync: when the durable consumer is deleted
// under a running sync (by hand, or by a second sync with the same name),
// events no longer arrive. The sync must say so and exit 3, not carry on
// copying and later stop with exit 0 as if it were done. sluice abort then
// clears the target of sluice's tables, so the sync can start over.
func TestConsumerDeletedStopsTheSync(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	s.emit(t, like(1, 1, "2024-05-01T10:00:00Z", "a", 1))

	consumer := "deleted_" + strings.ReplaceAll(s.EP.Stream, "-", "_")
	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--consumer", consumer, "--config", cfg}, p.Args()...)
	run := start(t, args...)
	run.waitFor(t, "caught up", 60*time.Second, caughtUp)

	if err := s.JS.DeleteConsumer(context.Background(), s.EP.Stream, consumer); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t, 60*time.Second); code != 3 {
		t.Fatalf("sluice sync exited %d after its consumer was deleted; want 3:\n%s", code, run.out)
	}
	if !strings.Contains(run.out.String(), "SLUICE-NATS-CONSUMER") {
		t.Errorf("the exit does not name SLUICE-NATS-CONSUMER:\n%s", run.out)
	}

	// finish has no slot to drop for an events sync, and says to abort
	// instead (it said "nothing to finish" and left the bookkeeping)
	r := testenv.MustRun(t, 2, append([]string{"finish"}, p.Args()...)...)
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "SLUICE-FINISH-NOCUTOVER") || !strings.Contains(out, "sluice abort") {
		t.Errorf("finish after an events sync:\n%s", out)
	}

	// Starting over: abort leaves none of sluice's tables, the event
	// versions included (a new copy would skip every key they name).
	testenv.MustRun(t, 0, append([]string{"abort"}, p.Args()...)...)
	if n := count(t, p.Target, `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = DATABASE() AND table_name LIKE '\\_sluice\\_%'`); n != 0 {
		t.Errorf("after sluice abort the target still has %d of sluice's tables", n)
	}
}
