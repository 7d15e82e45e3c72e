package events

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestOneEventsSyncPerTargetTable: the version checks trust what one process
// keeps in memory, so a second events sync writing the same target table is
// refused whatever its consumer name (it was let in under another name). A
// consumer name is only claimed within its database: a migration to another
// database on the same server may use the same one (it was refused).
func TestOneEventsSyncPerTargetTable(t *testing.T) {
	a := testenv.NewPair(t)
	s1, s2 := newStream(t), newStream(t)
	cfg := writeConfig(t, likesConfig)
	a.PG(t, likesDDL)
	a.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	// b: the same source migrated to a second database on the same server
	b := *a
	b.TargetURL = a.TargetURL + "_b"
	a.My(t, "DROP DATABASE IF EXISTS `"+a.Name+"_b`")
	a.My(t, "CREATE DATABASE `"+a.Name+"_b` CHARACTER SET utf8mb4")
	t.Cleanup(func() { a.My(t, "DROP DATABASE IF EXISTS `"+a.Name+"_b`") })

	sync := func(p *testenv.Pair, s *stream, consumer string) *proc {
		return start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--consumer", consumer, "--config", cfg}, p.Args()...)...)
	}
	first := sync(a, s1, "shared")
	first.waitFor(t, "caught up", 60*time.Second, caughtUp)

	other := sync(&b, s2, "shared")
	other.waitFor(t, "caught up", 60*time.Second, caughtUp)

	second := sync(a, s1, "another")
	if code := second.wait(t, 60*time.Second); code != 2 {
		t.Fatalf("a second events sync to the same target table exited %d; want 2:\n%s", code, second.out)
	}
	if out := second.out.String(); !strings.Contains(out, "SLUICE-EVENTS-BUSY") || !strings.Contains(out, "post_likes") {
		t.Errorf("the refusal does not name SLUICE-EVENTS-BUSY and the table post_likes:\n%s", out)
	}
	if !first.running() || !other.running() {
		t.Fatalf("the running syncs stopped:\n%s\n%s", first.out, other.out)
	}
	first.stop(t)
	other.stop(t)
}

// TestLostLockStopsTheSync: the named lock dies with its session (a target
// restart, a KILL). The sync then stops with a code that says so instead of
// writing on beside a second sync that may have taken the lock; started
// again, it resumes.
func TestLostLockStopsTheSync(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)
	first := start(t, args...)
	first.waitFor(t, "caught up", 60*time.Second, caughtUp)

	// The lock on the target table, named as sluice names it.
	sum := sha256.Sum256([]byte(p.Name + "\x00table\x00post_likes"))
	var holder sql.NullInt64
	if err := p.Target.QueryRow("SELECT IS_USED_LOCK(?)", "sluice_events:"+hex.EncodeToString(sum[:20])).Scan(&holder); err != nil || !holder.Valid {
		t.Fatalf("no session holds the events lock of post_likes (%v)", err)
	}
	p.My(t, fmt.Sprintf("KILL %d", holder.Int64))
	if code := first.wait(t, 30*time.Second); code != 3 {
		t.Fatalf("the sync whose lock was killed exited %d; want 3:\n%s", code, first.out)
	}
	if out := first.out.String(); !strings.Contains(out, "SLUICE-TARGET-LOCK-LOST") {
		t.Fatalf("the sync did not say SLUICE-TARGET-LOCK-LOST:\n%s", out)
	}

	again := start(t, args...)
	again.waitFor(t, "caught up", 60*time.Second, caughtUp)
	again.stop(t)
}
